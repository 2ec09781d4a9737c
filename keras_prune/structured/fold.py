"""Fold inference BatchNormalization into the layer before it.

At inference a BatchNormalization is an affine map per channel,
`y = gamma * (x - mean) / sqrt(variance + epsilon) + beta = s * x + t`.
When `x` is the output of a linear layer (Conv, Dense, DepthwiseConv,
SeparableConv, no activation) that nothing else reads, the map can be moved
into that layer's kernel (each output channel times `s`) and bias
(`s * bias + t`), and the BatchNormalization removed: one layer fewer to run,
the same outputs. `fold_batchnorm(model)` builds that model and says which
BatchNormalization went where and why the others stay.

The fold is computed in float64 with NumPy, then cast to the variables'
dtype. The folded model no longer has those BatchNormalization layers, so
their statistics cannot update: calling it with `training=True` computes
what inference computes (for the folded parts), and fine-tuning it trains
the folded kernels and biases. Fold once training is done.
"""

import keras
import numpy as np
from keras import layers as L

from keras_prune.structured import layer_copy
from keras_prune.structured.layer_rules import exact_rule
from keras_prune.structured.layer_rules import numpy as _np
from keras_prune.structured.nodes import is_graph_model
from keras_prune.structured.nodes import nodes_in_order

# What the cloning puts in place of a folded BatchNormalization: calling it
# returns its input.
_SKIP = object()


class BatchNormFolding:
    """What `fold_batchnorm` made.

    Attributes:
        model: the new Functional model (the input model is not modified and
            shares no variable with it).
        folded: dict BatchNormalization path -> path of the layer it was
            folded into (`"outer/inner"` inside a nested model).
        not_folded: dict BatchNormalization path -> why it is still there.
    """

    def __init__(self, model, folded, not_folded):
        self.model = model
        self.folded = dict(folded)
        self.not_folded = dict(not_folded)

    def to_dict(self):
        return {"model": self.model.name, "folded": dict(self.folded),
                "not_folded": dict(self.not_folded)}

    def summary(self):
        """One line per BatchNormalization, then the counts."""
        rows = [("batchnorm", "folded into / kept because")]
        rows += [(bn, "-> " + into) for bn, into in self.folded.items()]
        rows += [(bn, "kept: " + why) for bn, why in self.not_folded.items()]
        width = max(len(r[0]) for r in rows)
        lines = [f"{a:<{width}}  {b}" for a, b in rows]
        lines.append(f"{len(self.folded)} folded, {len(self.not_folded)} "
                     f"kept ({self.model.name!r}).")
        return "\n".join(lines)

    def __repr__(self):
        return (f"BatchNormFolding(model={self.model.name!r}, "
                f"folded={len(self.folded)}, "
                f"not_folded={len(self.not_folded)})")


def _check(model):
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"fold_batchnorm: model must be a Functional or Sequential "
            f"keras.Model, got {type(model).__name__} ({model!r:.80}). Pass "
            "the Keras model itself (a saved file: "
            "keras.saving.load_model(path) first; a layer: "
            "keras.Sequential([keras.Input(shape), layer]))."
        )
    if not is_graph_model(model):
        raise ValueError(
            f"fold_batchnorm: {type(model).__name__} is a subclassed "
            "keras.Model, whose layer graph cannot be read. Build it with "
            "the Functional API (keras.Model(inputs, outputs)) or as a "
            "keras.Sequential."
        )
    if not model.built or not model.inputs:
        raise ValueError(
            f"fold_batchnorm: model {model.name!r} is not built. Give it an "
            "Input (keras.Sequential([keras.Input(shape), ...])) or call it "
            "once before folding."
        )


def _why_not(bn, node, producers, readers, outputs, calls):
    """None if `bn` at `node` folds into the layer making its input (returned
    in `producers`), else the reason."""
    if type(bn) is not L.BatchNormalization:
        return (f"it is a {type(bn).__name__}, a subclass of "
                "BatchNormalization (its call may differ)")
    if calls[id(bn)] > 1:
        return f"it is called {calls[id(bn)]} times"
    if node.arguments.kwargs.get("training") is not None:
        return (f"it is called with training={node.arguments.kwargs['training']}"
                " in the graph")
    if len(node.input_tensors) != 1:
        return "it is called with more than one tensor (a mask)"
    (x,) = node.input_tensors
    if bn.axis % len(x.shape) != len(x.shape) - 1:
        return f"it normalizes axis {bn.axis}, not the last (channel) axis"
    if id(x) not in producers:
        return "its input is a model input"
    layer = producers[id(x)]
    what = f"its input comes from {type(layer).__name__} {layer.name!r}"
    if is_graph_model(layer):
        return (f"{what}, a nested model (folding across a model boundary "
                "is not done)")
    # The exact classes: a subclass may compute something else.
    rule = exact_rule(layer)
    if rule is None or rule.fold_axis is None:
        return f"{what}, not a Conv, Dense, DepthwiseConv or SeparableConv"
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        return f"{what}, which is channels_first"
    if layer.activation is not keras.activations.linear:
        name = keras.activations.serialize(layer.activation)
        return f"{what}, which has activation {name!r} (not linear)"
    if layer.quantization_mode is not None:
        return f"{what}, which is quantized ({layer.quantization_mode})"
    if getattr(layer, "lora_enabled", False):
        return f"{what}, which has LoRA enabled"
    if calls[id(layer)] > 1:
        return f"{what}, which is called {calls[id(layer)]} times"
    if id(x) in outputs:
        return f"{what}, whose output is also a model output"
    if readers[id(x)] > 1:
        return (f"{what}, whose output {readers[id(x)]} layers read (a "
                "fold would change what the others get)")
    return None


def _folded_weights(layer, bn):
    """The producer's weights (name -> float64 array) with `bn` folded in."""
    c = bn.moving_mean.shape[0]
    gamma = _np(bn.gamma) if bn.scale else np.ones(c)
    beta = _np(bn.beta) if bn.center else np.zeros(c)
    mean, variance = _np(bn.moving_mean), _np(bn.moving_variance)
    s = gamma.astype(np.float64) / np.sqrt(
        variance.astype(np.float64) + bn.epsilon)
    t = beta.astype(np.float64) - mean.astype(np.float64) * s
    name, axis = exact_rule(layer).fold_axis
    values = {w.name: _np(w).astype(np.float64) for w in layer.weights}
    kernel = values[name]
    shape = [1] * kernel.ndim
    if isinstance(axis, tuple):
        shape[-2:] = kernel.shape[-2:]
    else:
        shape[axis] = c
    values[name] = kernel * s.reshape(shape)
    values["bias"] = values.get("bias", np.zeros(c)) * s + t
    return values


def _fold(model, prefix, folded, not_folded):
    """The folded copy of `model` (Functional or Sequential)."""
    if isinstance(model, keras.Sequential):
        # Its graph, as a Functional over the same layers (nothing is called).
        model = keras.Model(model.inputs, model.outputs, name=model.name)
    nodes = list(nodes_in_order(model))
    producers, readers, calls = {}, {}, {}
    for node in nodes:
        calls[id(node.operation)] = calls.get(id(node.operation), 0) + 1
        for t in node.output_tensors:
            producers[id(t)] = node.operation
        for t in node.input_tensors:
            readers[id(t)] = readers.get(id(t), 0) + 1
    outputs = {id(t) for t in model.outputs}

    into = {}  # id(producer) -> the BatchNormalization folded into it
    for node in nodes:
        bn = node.operation
        if not isinstance(bn, L.BatchNormalization):
            continue
        why = _why_not(bn, node, producers, readers, outputs, calls)
        if why is None:
            layer = producers[id(node.input_tensors[0])]
            into[id(layer)] = bn
            folded[prefix + bn.name] = prefix + layer.name
        else:
            not_folded[prefix + bn.name] = why
    skipped = {id(bn) for bn in into.values()}

    named, positional, initialized = [], [], []

    def clone(layer):
        if id(layer) in skipped:
            return _SKIP
        if is_graph_model(layer):
            return _fold(layer, prefix + layer.name + "/", folded, not_folded)
        if not isinstance(layer, L.Layer):  # a plain operation (x * 2.0)
            return layer.__class__.from_config(layer.get_config())
        names = [w.name for w in layer.weights]
        if len(set(names)) < len(names):
            # Variables sharing a name (sublayers' kernels): by position.
            new = layer_copy.from_config(layer, layer.get_config())
            positional.append((new, [_np(w) for w in layer.weights]))
            return new
        if id(layer) in into:
            values = _folded_weights(layer, into[id(layer)])
            config = dict(layer.get_config(), use_bias=True)
        else:
            values = {w.name: _np(w) for w in layer.weights}
            config = layer.get_config()
        # Variables created with their values: random initializers would
        # compile once per shape on JAX only to be overwritten.
        new = layer_copy.from_config(layer, config)
        initialized.append(layer_copy.initialize_with(new, values.items()))
        named.append((new, values))
        return new

    def call(layer, *args, **kwargs):
        if layer is _SKIP:
            return args[0] if args else kwargs["inputs"]
        return layer(*args, **kwargs)

    new_model = keras.models.clone_model(
        model, clone_function=clone, call_function=call)
    for done in initialized:
        layer_copy.restore(done)
    for new, values in named:
        for w in new.weights:
            w.assign(keras.ops.cast(values[w.name], w.dtype))
    for new, values in positional:
        new.set_weights(values)
    return new_model


def fold_batchnorm(model):
    """A copy of `model` with inference BatchNormalization folded away.

    Every `BatchNormalization` whose input is the output of a Conv1D/2D/3D,
    Conv*Transpose, Dense, DepthwiseConv1D/2D or SeparableConv1D/2D (its
    pointwise kernel) is removed and folded into that layer's kernel and
    bias (created if the layer had none: the new layer has `use_bias=True`),
    when: the BatchNormalization normalizes the last (channel) axis and is
    called once, without a fixed `training=` argument; the layer before it
    is channels_last, linear (no activation), not quantized, called once,
    and its output is read by that BatchNormalization only (not by another
    layer, not a model output). Every other layer is copied with its config
    and weights. Nested Functional/Sequential models are folded inside;
    a pair split across a model boundary is left and reported.

    At inference (`predict`, `training=False`) the folded model computes
    the same outputs (to float rounding). Its folded BatchNormalizations no
    longer exist: with `training=True` they neither normalize by the batch
    nor update statistics, which is the point of folding; fold after
    training.

    Args:
        model: a built Functional or Sequential Keras model (not modified).

    Returns:
        A `BatchNormFolding`: `.model` (a new Functional model sharing no
        variable with `model`; a Sequential becomes a Functional over the
        same layers), `.folded` (BatchNormalization path -> the layer it
        went into), `.not_folded` (path -> reason it stays) and
        `.summary()`.

    Example:

    ```python
    result = fold_batchnorm(model)
    print(result.summary())
    fast = result.model                    # fewer layers, same predictions
    ```
    """
    _check(model)
    folded, not_folded = {}, {}
    new_model = _fold(model, "", folded, not_folded)
    return BatchNormFolding(new_model, folded, not_folded)
