"""Which variables of which layers are prunable, and why the others are not.

Prunable variables are selected by *variable name* per layer class, with the
class found by `isinstance` so that subclasses of built-in layers
(`class MyDense(keras.layers.Dense)`) are prunable too. Never by `ndim` (GRU's
bias is 2-D) nor by attribute (Dense keeps its kernel in `_kernel`).
"""

import keras

from keras_prune.core.walk import all_layers

L = keras.layers

# Layer class -> names of its prunable variables (searched through the layer's
# own weights and those of its sub-layers, e.g. MultiHeadAttention's
# EinsumDense projections or an RNN's cell). The first matching class wins:
# `register_rule` puts new rules first, so a rule for a subclass beats its
# parent's.
_RULES = [
    (L.Dense, ("kernel",)),
    (L.EinsumDense, ("kernel",)),
    ((L.Conv1D, L.Conv2D, L.Conv3D), ("kernel",)),
    ((L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose), ("kernel",)),
    ((L.SeparableConv1D, L.SeparableConv2D), ("pointwise_kernel",)),
    ((L.DepthwiseConv1D, L.DepthwiseConv2D), ()),
    # A tied table is also the output projection: pruning it prunes the
    # logits too (LLM pruning leaves both dense); untied, the input table.
    (L.ReversibleEmbedding, lambda layer: (
        () if layer.tie_weights else ("embeddings",))),
    (L.Embedding, ("embeddings",)),
    (L.MultiHeadAttention, ("kernel",)),
    (L.RNN, ("kernel", "recurrent_kernel")),
]

# Variables that are only pruned when the user opts in with
# `prune_depthwise=True`: a depthwise filter has a handful of weights per
# channel, so removing any of them costs much more accuracy than a kernel's.
# DepthwiseConv's depthwise filter is named `kernel` in Keras 3.
_OPT_IN = [
    ((L.SeparableConv1D, L.SeparableConv2D), ("depthwise_kernel",)),
    ((L.DepthwiseConv1D, L.DepthwiseConv2D), ("kernel",)),
]

# Containers whose prunable variables are those of the layers they hold.
_DELEGATES = (
    (L.Bidirectional, lambda layer: [layer.forward_layer, layer.backward_layer]),
    (L.TimeDistributed, lambda layer: [layer.layer]),
)

_NORMALIZATION = (
    L.BatchNormalization,
    L.LayerNormalization,
    L.GroupNormalization,
    L.UnitNormalization,
    L.RMSNormalization,
)

_REASONS = {
    "bias": "bias: a few values per output, pruning them saves nothing and "
    "shifts activations",
    "gamma": "normalization scale (gamma): one value per channel, not a "
    "connection weight",
    "beta": "normalization offset (beta): one value per channel, not a "
    "connection weight",
    "statistic": "normalization statistic (running mean/variance/count), "
    "not a trainable connection weight",
    "depthwise": "depthwise kernel: pruned only with prune_depthwise=True",
    "tied": "tied token embedding: the same table is the output projection "
    "(ReversibleEmbedding(tie_weights=True)), which pruning would cut too; "
    "left dense (registry.register_rule(ReversibleEmbedding, "
    "('embeddings',)) prunes it)",
    "no_rule": "no pruning rule for layer class {cls}; implement "
    "get_prunable_weights() (keras_prune.PrunableLayer) to prune it",
    "not_selected": "not a prunable variable of {cls} (prunable: {names})",
}


def register_rule(layer_class, names, opt_in=()):
    """Makes a layer class (and its subclasses) prunable by variable name.

    For classes you do not own (a library's custom layer); for your own, a
    `get_prunable_weights()` method does the same (`PrunableLayer`).

    Args:
        layer_class: a `keras.layers.Layer` subclass.
        names: names of its prunable variables (its own or its sub-layers',
            e.g. `("kernel",)` for a block holding Dense layers).
        opt_in: names pruned only with `prune_depthwise=True`.

    Example:

    ```python
    keras_prune.core.registry.register_rule(MyProjection, ("kernel",))
    ```
    """
    if not (isinstance(layer_class, type)
            and issubclass(layer_class, keras.layers.Layer)):
        raise ValueError(
            f"layer_class must be a keras Layer subclass, got {layer_class!r}."
        )
    names, opt_in = tuple(names), tuple(opt_in)
    if not all(isinstance(n, str) and n for n in names + opt_in):
        raise ValueError(
            f"names and opt_in must be variable names (strings), got "
            f"{names!r} and {opt_in!r}."
        )
    _RULES.insert(0, (layer_class, names))
    if opt_in:
        _OPT_IN.insert(0, (layer_class, opt_in))


class PrunableLayer:
    """Protocol for custom layers that know which of their weights to prune.

    Any layer with a `get_prunable_weights()` method is prunable; subclassing
    `PrunableLayer` (as in tfmot) only documents the intent.

    Example:

    ```python
    class Scale(keras.layers.Layer, keras_prune.PrunableLayer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=input_shape[-1:])

        def call(self, x):
            return x * self.w

        def get_prunable_weights(self):
            return [self.w]
    ```
    """

    def get_prunable_weights(self):
        """Returns the list of variables of this layer to prune."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement get_prunable_weights()."
        )


class PruningPolicy:
    """Decides which layers of a model are pruned.

    Subclass and override `allow_pruning(layer)`; optionally
    `ensure_model_supports_pruning(model)` to reject a model up front with a
    clear error.
    """

    def allow_pruning(self, layer):
        """Returns True if `layer` may be wrapped for pruning."""
        return True

    def ensure_model_supports_pruning(self, model):
        """Raises ValueError if the policy cannot apply to `model`."""


def _match(layer, rules):
    for classes, value in rules:
        if isinstance(layer, classes):
            return value
    return None


def _names(layer, rules):
    """The variable names a rule gives `layer` (a rule may decide by the
    layer's settings), or None without a rule."""
    names = _match(layer, rules)
    return names(layer) if callable(names) else names


def _named_weights(layer, names):
    if not names:
        return []
    found, seen = [], set()
    for variable in layer.weights:
        if variable.name in names and id(variable) not in seen:
            seen.add(id(variable))
            found.append(variable)
    return found


def has_rule(layer):
    """Whether keras_prune knows how to prune `layer`'s class."""
    return (
        hasattr(layer, "get_prunable_weights")
        or _match(layer, _RULES) is not None
        or _match(layer, _DELEGATES) is not None
    )


def names_weights(layer, prune_depthwise=False):
    """Whether a rule names weights of `layer` to prune, decided from its
    class and settings alone (an unbuilt layer has no variables yet)."""
    if hasattr(layer, "get_prunable_weights"):
        return True
    if _match(layer, _DELEGATES) is not None:
        return True
    names = tuple(_names(layer, _RULES) or ())
    if prune_depthwise:
        names += tuple(_names(layer, _OPT_IN) or ())
    return bool(names)


def prunable_weights(layer, prune_depthwise=False):
    """Returns the variables of `layer` that pruning masks.

    Args:
        layer: a built `keras.layers.Layer`.
        prune_depthwise: also prune depthwise kernels (DepthwiseConv,
            SeparableConv's depthwise part).

    Returns:
        A list of `keras.Variable`, empty when nothing in `layer` is prunable.
    """
    if hasattr(layer, "get_prunable_weights"):
        return list(layer.get_prunable_weights())
    delegate = _match(layer, _DELEGATES)
    if delegate is not None:
        found = []
        for inner in delegate(layer):
            found.extend(prunable_weights(inner, prune_depthwise))
        return found
    names = tuple(_names(layer, _RULES) or ())
    if prune_depthwise:
        names += tuple(_names(layer, _OPT_IN) or ())
    return _named_weights(layer, names)


def explain(layer, variable, prune_depthwise=False):
    """Why `variable` of `layer` is or is not prunable.

    Returns:
        `(prunable, reason)`; `reason` is "" for prunable variables.
    """
    if any(v is variable for v in prunable_weights(layer, prune_depthwise)):
        return True, ""
    if not prune_depthwise and any(
        v is variable for v in prunable_weights(layer, prune_depthwise=True)
    ):
        return False, _REASONS["depthwise"]
    name = variable.name
    if isinstance(layer, L.ReversibleEmbedding) and layer.tie_weights and (
        name == "embeddings"
    ):
        return False, _REASONS["tied"]
    if name == "bias" or name.endswith("_bias"):
        return False, _REASONS["bias"]
    if isinstance(layer, _NORMALIZATION) or _is_normalization_stat(layer):
        if name in ("gamma", "scale"):
            return False, _REASONS["gamma"]
        if name in ("beta", "center"):
            return False, _REASONS["beta"]
        return False, _REASONS["statistic"]
    if not has_rule(layer):
        return False, _REASONS["no_rule"].format(cls=type(layer).__name__)
    names = sorted({v.name for v in prunable_weights(layer, prune_depthwise)})
    return False, _REASONS["not_selected"].format(
        cls=type(layer).__name__, names=", ".join(names) or "none"
    )


def _is_normalization_stat(layer):
    return isinstance(layer, L.Normalization)


def _owner(layer, variable):
    """The innermost layer (of `layer` and its sub-layers) owning `variable`."""
    for sub in reversed(all_layers(layer)):
        own = sub._trainable_variables + sub._non_trainable_variables
        if any(v is variable for v in own):
            return sub
    return layer


def input_axis(layer, variable):
    """The axis of `variable` that meets the layer's input, or None.

    N:M sparsity groups consecutive weights along it: `(in, out)` Dense and
    RNN kernels -> 0; Conv kernels `(..., in, out)` -> -2 (the input
    channels); Conv*Transpose kernels `(..., out, in)` -> -1; EinsumDense ->
    the kernel axis contracted with the input (the last one when several
    are). None for Embedding tables and depthwise kernels, which have no
    input dimension to group.
    """
    owner = _owner(layer, variable)
    if isinstance(owner, (L.Embedding, L.DepthwiseConv1D, L.DepthwiseConv2D)):
        return None
    if isinstance(owner, (L.SeparableConv1D, L.SeparableConv2D)) and (
        variable.name == "depthwise_kernel"
    ):
        return None
    if len(variable.shape) < 2:
        return None
    if isinstance(
        owner, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)
    ):
        return len(variable.shape) - 1
    if isinstance(owner, L.EinsumDense):
        inputs, rest = owner.equation.split(",")
        kernel, output = rest.split("->")
        contracted = [
            i for i, c in enumerate(kernel) if c in inputs and c not in output
        ]
        return contracted[-1] if contracted else None
    return len(variable.shape) - 2


def input_axes(layer, variable):
    """Every axis of `variable` that meets the layer's input: a row of the
    weight (one output) is the weights along these axes (scope "row").

    `input_axis` for Dense, Conv and RNN kernels; for EinsumDense every
    kernel axis contracted with the input ("bquh,uhm->bqm": u and h); for
    a Conv kernel `(..., in, out)` the kernel positions too. None where
    `input_axis` is None.
    """
    axis = input_axis(layer, variable)
    if axis is None:
        return None
    owner = _owner(layer, variable)
    if isinstance(owner, L.EinsumDense):
        inputs, rest = owner.equation.split(",")
        kernel, output = rest.split("->")
        return tuple(
            i for i, c in enumerate(kernel) if c in inputs and c not in output
        )
    if isinstance(owner, L.Dense) or len(variable.shape) == 2:
        return (axis,)
    rank = len(variable.shape)
    return tuple(i for i in range(rank) if i != rank - 1 - (axis == rank - 1))


class PruneForLatencyOnXNNPack(PruningPolicy):
    """Prunes only what XNNPack's sparse inference speeds up.

    As tfmot's policy of the same name: XNNPack (TFLite's CPU delegate) has
    fast sparse kernels for 1x1 convolutions only, so only Conv2D layers with
    a 1x1 kernel, stride 1, no dilation and one group are pruned; every
    other layer stays dense. `ensure_model_supports_pruning` rejects a model
    without such a layer (the policy would prune nothing).

    Example:

    ```python
    pruned = keras_prune.prune_low_magnitude(
        model, pruning_policy=keras_prune.PruneForLatencyOnXNNPack())
    ```
    """

    def allow_pruning(self, layer):
        return isinstance(layer, L.Conv2D) and (
            tuple(layer.kernel_size) == (1, 1)
            and tuple(layer.strides) == (1, 1)
            and tuple(layer.dilation_rate) == (1, 1)
            and layer.groups == 1
        )

    def ensure_model_supports_pruning(self, model):
        found = [
            layer.name
            for layer in all_layers(model)[1:]
            if self.allow_pruning(layer)
        ]
        if not found:
            raise ValueError(
                f"PruneForLatencyOnXNNPack prunes only 1x1 Conv2D layers "
                f"(stride 1, no dilation, groups=1), and model {model.name!r} "
                "has none: nothing would be pruned. Use no pruning_policy to "
                "prune every prunable layer."
            )
