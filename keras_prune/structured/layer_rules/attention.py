"""The rule of MultiHeadAttention: heads, projections, output channels.

A MultiHeadAttention reads its query, key and value channels (the rows of
its projection kernels), produces new output channels (its output
projection) and owns a group of its own: its attention heads, removed whole.
Projection kernels are `(features, heads, dim)` with `(heads, dim)` biases;
the output kernel is `(heads, dim, ..., features)`. Its variables are told
apart by the last two parts of their path (`"query"/"kernel"`, ...,
`"attention_output"/"bias"`), names fixed by the layer.
"""

import math

import numpy as np
from keras import layers as L

from keras_prune.structured.layer_rules.base import ATTENTION
from keras_prune.structured.layer_rules.base import ATTENTION_INPUTS
from keras_prune.structured.layer_rules.base import LayerRule
from keras_prune.structured.layer_rules.base import NotCounted
from keras_prune.structured.layer_rules.base import numpy
from keras_prune.structured.layer_rules.base import product
from keras_prune.structured.layer_rules.base import register

# The input each projection reads.
_READS = {"query": "query", "gate": "query", "key": "key", "value": "value"}


@register(L.MultiHeadAttention)
class MultiHeadAttention(LayerRule):
    """Followed for the Keras class itself (a subclass may change how
    heads are computed)."""

    role = ATTENTION
    exact = True

    def weight_key(self, layer, variable):
        return tuple(variable.path.split("/")[-2:])

    def axes(self, layer, role):
        if role == "heads":
            axes = {(s, "kernel"): (1, 1) for s in ATTENTION_INPUTS}
            axes.update({(s, "bias"): (0, 1) for s in ATTENTION_INPUTS})
            axes[("attention_output", "kernel")] = (0, 1)
            return axes
        if role in ATTENTION_INPUTS:
            return {(role, "kernel"): (0, 1)}
        if role == "out":
            return {("attention_output", "kernel"): (-1, 1),
                    ("attention_output", "bias"): (0, 1)}
        return {}

    def channel_kernel(self, layer, role):
        if role == "heads":
            return head_kernel(layer)
        if role == "out":
            kernel = numpy(layer.output_dense.kernel, np.float64)
            return kernel.reshape(-1, kernel.shape[-1])
        return None

    def slice_weights(self, layer, cut):
        values = []
        for w in layer.weights:
            (sublayer, name), value = self.weight_key(layer, w), numpy(w)
            if sublayer == "attention_output":
                if name == "kernel":
                    value = value.take(cut.heads, axis=0)
                value = value.take(cut.outputs, axis=-1)
            elif name == "kernel":
                value = value.take(cut.reads[_READS[sublayer]], axis=0)
                value = value.take(cut.heads, axis=1)
            else:
                value = value.take(cut.heads, axis=0)
            values.append(value)
        return values

    def zeroed_weights(self, layer, role, rows):
        """Nothing read from `rows`: the rows of the projections reading
        input `role`, or (role `"heads"`) the heads' slices of the output
        kernel, the only path out of a head."""
        values = []
        for w in layer.weights:
            (sublayer, name), value = (self.weight_key(layer, w),
                                       numpy(w).copy())
            if name == "kernel":
                if role == "heads" and sublayer == "attention_output":
                    value[rows] = 0
                elif _READS.get(sublayer) == role:
                    value[rows] = 0
            values.append(value)
        return values

    def new_config(self, layer, cut):
        config = layer.get_config()
        config["num_heads"] = len(cut.heads)
        shape = config["output_shape"]
        if shape:
            config["output_shape"] = tuple(shape[:-1]) + (len(cut.outputs),)
        elif len(cut.outputs) != len(cut.reads["query"]):
            # Without output_shape the output would take the query's width.
            config["output_shape"] = (len(cut.outputs),)
        return config

    def macs(self, layer, input_shapes, output_shapes, arguments):
        return _attention_macs(layer, arguments or {}, output_shapes[0]), (
            "projections + query x key positions x heads x "
            "(key_dim + value_dim)")

    def params(self, layer, input_shape, output_shape, arguments):
        try:
            d = _dims(layer, arguments or {}, output_shape)
        except NotCounted:
            return None
        bias = bool(layer.get_config().get("use_bias", True))
        heads, key_dim, value_dim = d["heads"], d["key_dim"], d["value_dim"]
        out = math.prod(d["out"])
        params = ((d["query"][-1] + bias) * heads * key_dim
                  + (d["key"][-1] + bias) * heads * key_dim
                  + (d["value"][-1] + bias) * heads * value_dim
                  + heads * value_dim * out + bias * out)
        if layer.get_config().get("use_gate"):
            params += (d["query"][-1] + bias) * heads * value_dim
        return params


def head_kernel(layer):
    """A MultiHeadAttention's kernels as (rows, heads): every weight of a
    head (query, key, value, gate and output kernel slices) in its column.
    """
    columns = []
    for w in layer.weights:
        sublayer, name = w.path.split("/")[-2:]
        if name != "kernel":
            continue
        kernel = numpy(w, np.float64)
        if sublayer != "attention_output":
            kernel = np.moveaxis(kernel, 1, 0)
        columns.append(kernel.reshape(kernel.shape[0], -1))
    return np.concatenate(columns, axis=1).T


def _dims(layer, arguments, output_shape):
    """Sizes of a call: `arguments` holds the `query`, `value` (and `key`)
    shapes and may override `heads`."""
    query = arguments.get("query")
    value = arguments.get("value")
    if query is None or value is None:
        raise NotCounted("not counted: the query/value shapes of the call "
                         "are unknown")
    key = arguments.get("key") or value
    return {
        "query": query, "key": key, "value": value,
        "heads": arguments.get("heads", layer.num_heads),
        "key_dim": layer.key_dim,
        "value_dim": layer.value_dim or layer.key_dim,
        "out": output_shape[len(query) - 1:],
    }


def _attention_macs(layer, arguments, output_shape):
    d = _dims(layer, arguments, output_shape)
    query, key, value = d["query"], d["key"], d["value"]
    heads, key_dim, value_dim = d["heads"], d["key_dim"], d["value_dim"]
    t_q = product(query[1:-1], "query")
    t_k = product(key[1:-1], "key")
    t_v = product(value[1:-1], "value")
    out = product(d["out"], "output")
    macs = (t_q * query[-1] * heads * key_dim
            + t_k * key[-1] * heads * key_dim
            + t_v * value[-1] * heads * value_dim
            + t_q * heads * value_dim * out)
    if layer.get_config().get("use_gate"):
        macs += t_q * query[-1] * heads * value_dim
    rank = len(query)
    axes = layer.get_config().get("attention_axes")
    if axes is None:
        axes = range(1, rank - 1)
    axes = sorted({a % rank for a in (
        [axes] if isinstance(axes, int) else axes)})
    others = [n for a, n in enumerate(query[1:-1], 1) if a not in axes]
    q_positions = product([query[a] for a in axes], "query")
    k_positions = product([key[a] for a in axes], "key")
    return macs + (product(others, "query") * q_positions * k_positions
                   * heads * (key_dim + value_dim))
