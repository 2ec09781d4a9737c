"""Surgery: a new, smaller model with the plan's channels removed.

`apply_plan(model, plan)` clones the model with `keras.models.clone_model`,
creating every producer with fewer `filters`/`units` from its config, and
then copies the weights sliced to the kept channels. The input model is not
modified. `verify(model, plan, x)` checks the result against the original
whose consumers ignore the removed channels.

A MultiHeadAttention is created with fewer `num_heads` (and an explicit
`output_shape` when its output channels no longer match its query's); its
query, key, value (and gate) kernels lose the removed heads and the removed
input rows, its output kernel the removed heads and output channels.
"""

import keras
import numpy as np

from keras_prune.structured.graph import ATTENTION_INPUTS
from keras_prune.structured.graph import PRODUCERS
from keras_prune.structured.graph import channel_groups
from keras_prune.structured.graph import _is_graph_model

L = keras.layers
_TRANSPOSE = (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)
_SEPARABLE = (L.SeparableConv1D, L.SeparableConv2D)
_DEPTHWISE = (L.DepthwiseConv1D, L.DepthwiseConv2D)
_NORMALIZATION = (L.BatchNormalization, L.LayerNormalization)


def _np(variable):
    return np.asarray(keras.ops.convert_to_numpy(variable))


def _expand(rows, multiplier):
    """Channel indices -> rows of a pointwise kernel after a depthwise one."""
    return [c * multiplier + j for c in rows for j in range(multiplier)]


def sliced_weights(layer, in_keep, out_keep):
    """The layer's weights (in `layer.weights` order) cut to the kept
    input features `in_keep` and output channels `out_keep`."""
    values = []
    for w in layer.weights:
        name, value = w.name, _np(w)
        if isinstance(layer, _TRANSPOSE) and name == "kernel":
            value = value.take(out_keep, axis=-2).take(in_keep, axis=-1)
        elif isinstance(layer, _SEPARABLE) and name == "depthwise_kernel":
            value = value.take(in_keep, axis=-2)
        elif isinstance(layer, _SEPARABLE) and name == "pointwise_kernel":
            rows = _expand(in_keep, layer.depth_multiplier)
            value = value.take(rows, axis=-2).take(out_keep, axis=-1)
        elif isinstance(layer, _DEPTHWISE) and name == "kernel":
            value = value.take(in_keep, axis=-2)
        elif isinstance(layer, L.Dense) and name == "kernel":
            value = value.take(in_keep, axis=0).take(out_keep, axis=1)
        elif isinstance(layer, PRODUCERS) and name == "kernel":
            value = value.take(in_keep, axis=-2).take(out_keep, axis=-1)
        elif isinstance(layer, PRODUCERS) and name == "bias":
            value = value.take(out_keep, axis=0)
        elif isinstance(layer, _DEPTHWISE + _NORMALIZATION):
            value = value.take(in_keep, axis=0)
        values.append(value)
    return values


# The input each projection of a MultiHeadAttention reads.
_READS = {"query": "query", "gate": "query", "key": "key", "value": "value"}


def _sublayer(weight):
    """`("query", "kernel")` for a MultiHeadAttention variable: the last two
    parts of its path (the sublayer names are fixed by the layer)."""
    return tuple(weight.path.split("/")[-2:])


def attention_weights(layer, reads, heads, out_keep):
    """A MultiHeadAttention's weights cut to the kept heads, input features
    (`reads`: dict query/key/value -> kept features) and output channels.

    Projection kernels are `(features, heads, dim)` with `(heads, dim)`
    biases; the output kernel is `(heads, dim, ..., features)`.
    """
    values = []
    for w in layer.weights:
        (sublayer, name), value = _sublayer(w), _np(w)
        if sublayer == "attention_output":
            if name == "kernel":
                value = value.take(heads, axis=0)
            value = value.take(out_keep, axis=-1)
        elif name == "kernel":
            value = value.take(reads[_READS[sublayer]], axis=0)
            value = value.take(heads, axis=1)
        else:
            value = value.take(heads, axis=0)
        values.append(value)
    return values


def _attention_config(layer, reads, heads, out_keep):
    config = layer.get_config()
    config["num_heads"] = len(heads)
    shape = config["output_shape"]
    if shape:
        config["output_shape"] = tuple(shape[:-1]) + (len(out_keep),)
    elif len(out_keep) != len(reads["query"]):
        # Without output_shape the output would take the query's width.
        config["output_shape"] = (len(out_keep),)
    return config


def _new_config(layer, out_keep):
    config = layer.get_config()
    if isinstance(layer, L.Dense):
        config["units"] = len(out_keep)
    elif isinstance(layer, PRODUCERS):
        config["filters"] = len(out_keep)
    elif isinstance(layer, L.Reshape):
        config["target_shape"] = tuple(config["target_shape"][:-1]) + (
            len(out_keep),)
    return config


# Initializer attribute of each variable (DepthwiseConv's is "kernel").
_INITIALIZERS = {
    "kernel": ("kernel_initializer", "depthwise_initializer"),
    "bias": ("bias_initializer",),
    "depthwise_kernel": ("depthwise_initializer",),
    "pointwise_kernel": ("pointwise_initializer",),
    "gamma": ("gamma_initializer",),
    "beta": ("beta_initializer",),
    "moving_mean": ("moving_mean_initializer",),
    "moving_variance": ("moving_variance_initializer",),
}


class _Value(keras.initializers.Initializer):
    """Creates a variable with a known value.

    New shapes would otherwise run the random initializers once each (on
    JAX one compilation per shape: seconds for a MobileNet), only for
    `set_weights` to overwrite them.
    """

    def __init__(self, value):
        self.value = value

    def __call__(self, shape, dtype=None):
        return keras.ops.cast(self.value.reshape(shape), dtype)


def _initialize_with(new, layer, values):
    """Point `new`'s initializers at `values`; returns how to undo it."""
    restore = []
    for w, value in zip(layer.weights, values):
        for attr in _INITIALIZERS.get(w.name, ()):
            if hasattr(new, attr):
                restore.append((attr, getattr(new, attr)))
                setattr(new, attr, _Value(value))
                break
    return restore


def _from_config(layer, config):
    if isinstance(layer, L.Lambda):
        # A fresh Lambda around the same Python function: from_config would
        # round-trip its bytecode, which loses the function's globals.
        return L.Lambda(
            layer.function,
            output_shape=layer._output_shape,
            mask=layer.mask,
            arguments=layer.arguments,
            name=layer.name,
            dtype=layer.dtype_policy,
        )
    return layer.__class__.from_config(config)


def _rebuild(model, graph, keep):
    """Clone `model` with the channels of `keep` (group id -> kept list)."""
    path_of = {id(layer): path for path, layer in graph.layers.items()}
    pairs = []
    restores = []

    def clone(layer):
        path = path_of.get(id(layer))
        if path is None:
            return _from_config(layer, layer.get_config())
        if _is_graph_model(layer):
            return _clone_nested(layer, path)
        out_keep = graph.kept(graph.output_maps[path], keep)
        if path in graph.attention:
            maps = graph.attention[path]
            reads = {k: graph.kept(maps[k], keep) for k in ATTENTION_INPUTS}
            heads = keep[graph.group(maps["heads"]).id]
            new = _from_config(
                layer, _attention_config(layer, reads, heads, out_keep))
            values = attention_weights(layer, reads, heads, out_keep)
            pairs.append((path, new, values))
            return new
        new = _from_config(layer, _new_config(layer, out_keep))
        values = None
        if layer.weights:
            in_keep = []
            if path in graph.input_maps:
                in_keep = graph.kept(graph.input_maps[path], keep)
            values = sliced_weights(layer, in_keep, out_keep)
            restores.append((new, _initialize_with(new, layer, values)))
        pairs.append((path, new, values))
        return new

    def _clone_nested(inner, path):
        inputs = []
        for t, channel_map in zip(inner.inputs, graph.model_inputs[path]):
            n = len(graph.kept(channel_map, keep))
            inputs.append(keras.Input(batch_shape=tuple(t.shape[:-1]) + (n,),
                                      dtype=t.dtype))
        if isinstance(inner, keras.Sequential):
            return keras.Sequential(
                inputs[:1] + [clone(layer) for layer in inner.layers],
                name=inner.name,
            )
        return keras.models.clone_model(
            inner,
            input_tensors=keras.tree.pack_sequence_as(inner.input, inputs),
            clone_function=clone,
        )

    new_model = keras.models.clone_model(model, clone_function=clone)
    for new, restore in restores:
        for attr, initializer in restore:
            setattr(new, attr, initializer)
    for path, new, values in pairs:
        if values is not None:
            new.set_weights(values)
    return new_model, {path: new for path, new, _ in pairs}


def apply_plan(model, plan):
    """A new, smaller model with the plan's removed channels cut out.

    Args:
        model: the Functional or Sequential model the plan was made for
            (not modified).
        plan: a `PruningPlan` (possibly edited or loaded from JSON).

    Returns:
        A new Keras model of the same class with sliced weights; it shares
        no variable with `model` and saves/loads as a plain Keras model.

    Example:

    ```python
    plan = plan_pruning(model, ratio=0.5)
    small = apply_plan(model, plan)
    print(verify(model, plan, x, small))  # max abs difference, ~1e-7
    ```
    """
    graph = channel_groups(model)
    plan.check_model(graph)
    new_model, _ = _rebuild(model, graph, plan.kept())
    return new_model


def zeroed_reference(model, plan):
    """A copy of `model` whose consumers ignore the removed channels.

    Every layer that reads a group's channels (a kernel's input slice) gets
    zeros for the removed ones, so they no longer reach anything; the
    channels stay, so the result has the original's shapes.
    """
    graph = channel_groups(model)
    plan.check_model(graph)
    everything = {g.id: list(range(g.size)) for g in graph.groups}
    copy, layers = _rebuild(model, graph, everything)
    for g in plan.groups:
        removed = [c for c, k in enumerate(g["keep"]) if not k]
        if not removed:
            continue
        for path, role, offset, width, tile in g["members"]:
            layer = layers[path]
            rows = [p * width + offset + c
                    for p in range(tile) for c in removed]
            if role in ATTENTION_INPUTS + ("heads",):
                layer.set_weights(_zero_attention(layer, role, rows))
            if role != "in":
                continue
            values = []
            for w in layer.weights:
                value = _np(w).copy()
                if isinstance(layer, _TRANSPOSE) and w.name == "kernel":
                    value[..., rows] = 0
                elif isinstance(layer, _SEPARABLE) and (
                        w.name == "pointwise_kernel"):
                    value[..., _expand(rows, layer.depth_multiplier), :] = 0
                elif isinstance(layer, L.Dense) and w.name == "kernel":
                    value[rows] = 0
                elif w.name == "kernel":
                    value[..., rows, :] = 0
                values.append(value)
            layer.set_weights(values)
    return copy


def _zero_attention(layer, role, rows):
    """A MultiHeadAttention's weights with nothing read from `rows`: the
    rows of the projections reading input `role`, or (role `"heads"`) the
    heads' slices of the output kernel, the only path out of a head."""
    values = []
    for w in layer.weights:
        (sublayer, name), value = _sublayer(w), _np(w).copy()
        if name == "kernel":
            if role == "heads" and sublayer == "attention_output":
                value[rows] = 0
            elif _READS.get(sublayer) == role:
                value[rows] = 0
        values.append(value)
    return values


def verify(model, plan, x, pruned=None):
    """Max abs difference between the pruned model and the zeroed original.

    Args:
        model: the original model (not modified).
        plan: the `PruningPlan` applied to it.
        x: one batch of inputs (what `model.predict_on_batch` takes).
        pruned: the result of `apply_plan(model, plan)`; built if None.

    Returns:
        A float; ~1e-6 or less means the surgery removed exactly the planned
        channels and nothing else.
    """
    if pruned is None:
        pruned = apply_plan(model, plan)
    reference = zeroed_reference(model, plan)
    expected = keras.tree.flatten(reference.predict_on_batch(x))
    got = keras.tree.flatten(pruned.predict_on_batch(x))
    return float(max(
        np.max(np.abs(_np(a).astype(np.float64) - _np(b).astype(np.float64)))
        for a, b in zip(expected, got)
    ))
