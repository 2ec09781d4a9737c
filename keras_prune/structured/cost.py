"""Parameters and multiply-accumulates (MACs) of a model, layer by layer.

`model_cost(model)` walks a Functional or Sequential model (nested ones
included) call by call and counts, for one forward pass of ONE sample
(batch 1):

- params: every weight of every layer, trainable or not (the number
  `model.count_params()` gives), each layer once however often it is called;
- MACs: the multiply-accumulates of the layer's kernels (the dot products),
  for each call:

  | layer | MACs |
  |---|---|
  | Conv1D/2D/3D | output positions x kernel taps x in/groups x filters |
  | Conv*Transpose | input positions x kernel taps x in x filters (what the transposed convolution computes, before `"same"` crops the border) |
  | DepthwiseConv1D/2D | output positions x kernel taps x in x depth_multiplier |
  | SeparableConv1D/2D | the depthwise part + output positions x in*depth_multiplier x filters |
  | Dense | positions (the input's middle axes) x in x units |
  | EinsumDense | the product of the sizes of all the equation's letters |
  | MultiHeadAttention | its query, key, value (gate) and output projections + query positions x key positions x heads x (key_dim + value_dim) |

  Elementwise work is not a multiply-accumulate and counts 0 (said so in the
  table's note): bias adds, activations, BatchNormalization and other
  normalizations (BN folds into the previous kernel at inference), pooling,
  merges (Add, Multiply, ...), softmax, reshapes, padding, dropout, lookups
  (Embedding). Layers without a rule (recurrent layers, Lambda, custom
  layers, plain operations) and layers whose input size is unknown (`None`
  beyond the batch axis) are NOT silently 0: their MACs are `None`, they
  are listed in `ModelCost.uncounted` with the reason, and the total `macs`
  leaves them out.

Formulas of the parameters of the layers structured pruning changes
(`layer_params`) let a `PruningPlan` be costed before any surgery.
"""

import dataclasses
import math

import keras

from keras_prune.structured.graph import _check_model
from keras_prune.structured.graph import _is_graph_model
from keras_prune.structured.graph import _nodes_in_order

L = keras.layers

_CONV = (L.Conv1D, L.Conv2D, L.Conv3D)
_TRANSPOSE = (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)
_DEPTHWISE = (L.DepthwiseConv1D, L.DepthwiseConv2D)
_SEPARABLE = (L.SeparableConv1D, L.SeparableConv2D)
_NORMALIZATION = (
    L.BatchNormalization, L.LayerNormalization, L.GroupNormalization,
    L.UnitNormalization, L.RMSNormalization, L.Normalization,
)
# No multiply-accumulate: elementwise, data movement, lookups.
_ZERO_MACS = (
    L.Activation, L.ReLU, L.LeakyReLU, L.ELU, L.PReLU, L.Softmax,
    L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D,
    L.GaussianNoise, L.GaussianDropout, L.AlphaDropout,
    L.ActivityRegularization, L.Identity, L.Masking, L.Rescaling,
    L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D, L.AveragePooling1D,
    L.AveragePooling2D, L.AveragePooling3D, L.GlobalAveragePooling1D,
    L.GlobalAveragePooling2D, L.GlobalAveragePooling3D,
    L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D,
    L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D, L.Cropping1D,
    L.Cropping2D, L.Cropping3D, L.UpSampling1D, L.UpSampling2D,
    L.UpSampling3D, L.Resizing, L.Add, L.Subtract, L.Multiply, L.Average,
    L.Maximum, L.Minimum, L.Concatenate, L.Flatten, L.Reshape, L.Permute,
    L.RepeatVector, L.Embedding, L.InputLayer,
)


class _Unknown(Exception):
    """A layer's MACs cannot be counted; the message says why."""


@dataclasses.dataclass(frozen=True)
class LayerCost:
    """What one layer costs.

    Attributes:
        path: the layer's path in the model (`"outer/inner"` when nested).
        layer_class: the layer's class name.
        params: its weights (all of them, trainable or not).
        macs: multiply-accumulates of all its calls for one sample, or None
            when they are not counted (`note` says why).
        calls: how many times the model calls it.
        note: how the MACs were counted, or why not.
    """

    path: str
    layer_class: str
    params: int
    macs: object
    calls: int
    note: str


class ModelCost:
    """Parameters and MACs of a model, in total and per layer.

    Attributes:
        model_name: the model's name.
        params: all weights of the model (== `model.count_params()`).
        macs: multiply-accumulates of one forward pass of one sample,
            summed over the counted layers.
        per_layer: list of `LayerCost`, in call order.
        uncounted: the `LayerCost`s whose MACs are None (not in `macs`).
    """

    def __init__(self, model_name, per_layer):
        self.model_name = model_name
        self.per_layer = list(per_layer)
        self.params = sum(c.params for c in self.per_layer)
        self.macs = sum(c.macs for c in self.per_layer if c.macs is not None)
        self.uncounted = [c for c in self.per_layer if c.macs is None]

    def layer(self, path):
        """The `LayerCost` of the layer at `path` (or with that name)."""
        for c in self.per_layer:
            if path in (c.path, c.path.rsplit("/", 1)[-1]):
                return c
        raise ValueError(
            f"No layer {path!r} in the cost of model {self.model_name!r}; "
            f"its layers are: {', '.join(c.path for c in self.per_layer)}."
        )

    def to_dict(self):
        return {
            "model_name": self.model_name,
            "params": self.params,
            "macs": self.macs,
            "per_layer": [dataclasses.asdict(c) for c in self.per_layer],
        }

    def summary(self, zeros=False):
        """A text table, one row per layer (layers costing nothing are left
        out unless `zeros`), then the totals and the uncounted layers."""
        rows = [("layer", "class", "params", "MACs", "note")]
        for c in self.per_layer:
            if not zeros and c.params == 0 and c.macs == 0:
                continue
            macs = "?" if c.macs is None else f"{c.macs:,}"
            rows.append((c.path, c.layer_class, f"{c.params:,}", macs,
                         c.note))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = [
            "  ".join([r[0].ljust(widths[0]), r[1].ljust(widths[1]),
                       r[2].rjust(widths[2]), r[3].rjust(widths[3]), r[4]])
            .rstrip()
            for r in rows
        ]
        lines.append(
            f"total: {self.params:,} params, {self.macs:,} MACs per sample"
        )
        if self.uncounted:
            names = ", ".join(c.path for c in self.uncounted)
            lines.append(
                f"MACs not counted (not in the total): {names}; see the note."
            )
        return "\n".join(lines)

    def __str__(self):
        return self.summary()

    def __repr__(self):
        return (f"ModelCost({self.model_name!r}, params={self.params}, "
                f"macs={self.macs}, uncounted={len(self.uncounted)})")


def model_cost(model):
    """Parameters and MACs (one sample) of a Functional or Sequential model.

    Args:
        model: a built Functional or Sequential model (not modified);
            nested models are counted layer by layer.

    Returns:
        A `ModelCost`: `.params`, `.macs`, `.per_layer`, `.uncounted`,
        `.summary()`.

    Example:

    ```python
    cost = model_cost(model)
    print(cost.params, cost.macs)
    print(cost.summary())
    ```
    """
    per_layer = []
    seen = set()
    for path, (layer, calls) in layer_calls(model).items():
        macs, note = 0, ""
        for input_shapes, output_shapes, arguments in calls:
            if not isinstance(layer, L.Layer):
                macs, note = None, ("a plain operation: no MAC rule, not "
                                    "counted")
                break
            try:
                call, note = call_macs(layer, input_shapes, output_shapes,
                                       arguments)
            except _Unknown as e:
                macs, note = None, str(e)
                break
            macs += call
        params = 0
        if id(layer) not in seen:
            seen.add(id(layer))
            if isinstance(layer, L.Layer) and layer.built:
                params = int(layer.count_params())
        per_layer.append(LayerCost(path, type(layer).__name__, params, macs,
                                   len(calls), note))
    return ModelCost(model.name, per_layer)


def layer_calls(model):
    """dict layer path -> `(layer, [(input shapes, output shapes,
    arguments)])`, one entry per call, in call order (nested models
    walked through; plain operations included)."""
    _check_model(model)
    found = {}
    _walk(model, "", found)
    return found


def _walk(model, prefix, found):
    for node in _nodes_in_order(model):
        op = node.operation
        if _is_graph_model(op):
            _walk(op, prefix + op.name + "/", found)
            continue
        call = (_shapes(node.input_tensors), _shapes(node.output_tensors),
                _arguments(node))
        found.setdefault(prefix + op.name, (op, []))[1].append(call)


def _shapes(tensors):
    return [tuple(t.shape) for t in tensors]


def _arguments(node):
    """MultiHeadAttention's query, value and key shapes."""
    args = node.arguments.args
    kwargs = node.arguments.kwargs
    names = ("query", "value", "key")
    found = dict(zip(names, args))
    found.update({k: v for k, v in kwargs.items() if k in names})
    return {k: tuple(v.shape) for k, v in found.items()
            if hasattr(v, "shape")}


def _prod(dims, what):
    if any(d is None for d in dims):
        raise _Unknown(
            f"not counted: the {what} has an unknown size {tuple(dims)}; "
            "give the model a fully known input shape (batch aside)"
        )
    return math.prod(int(d) for d in dims)


def call_macs(layer, input_shapes, output_shapes, arguments=None):
    """MACs of one call of `layer` for one sample, and how they were counted.

    Args:
        layer: a Keras layer.
        input_shapes / output_shapes: lists of the call's tensor shapes (the
            batch axis first; its size is ignored).
        arguments: for MultiHeadAttention, dict with the `query`, `value`
            (and `key`) shapes, and optionally `heads` (default: the
            layer's `num_heads`).

    Returns:
        `(macs, note)`.

    Raises:
        `_Unknown` when the layer has no rule or a size is unknown.
    """
    inp = input_shapes[0] if input_shapes else None
    out = output_shapes[0] if output_shapes else None
    if isinstance(layer, _CONV):
        k = math.prod(layer.kernel_size)
        c_in = _prod(inp[-1:], "input channels") // layer.groups
        macs = _prod(out[1:-1], "output") * k * c_in * out[-1]
        return macs, "output positions x taps x in/groups x filters"
    if isinstance(layer, _TRANSPOSE):
        k = math.prod(layer.kernel_size)
        macs = _prod(inp[1:], "input") * k * out[-1]
        return macs, "input positions x taps x in x filters"
    if isinstance(layer, _DEPTHWISE):
        k = math.prod(layer.kernel_size)
        macs = _prod(out[1:], "output") * k
        return macs, "output positions x taps x in x depth_multiplier"
    if isinstance(layer, _SEPARABLE):
        k = math.prod(layer.kernel_size)
        c_in = _prod(inp[-1:], "input channels")
        middle = c_in * layer.depth_multiplier
        positions = _prod(out[1:-1], "output")
        macs = positions * (k * middle + middle * out[-1])
        return macs, "depthwise taps + pointwise, per output position"
    if isinstance(layer, L.Dense):
        macs = _prod(inp[1:], "input") * out[-1]
        return macs, "positions x in x units"
    if isinstance(layer, L.EinsumDense):
        return (_einsum_macs(layer.equation, inp, _kernel_shape(layer)),
                "einsum: product of all letter sizes")
    if isinstance(layer, L.MultiHeadAttention):
        return _attention_macs(layer, arguments or {}, out), (
            "projections + query x key positions x heads x "
            "(key_dim + value_dim)")
    if isinstance(layer, _NORMALIZATION):
        return 0, "0: normalization (elementwise; BN folds into the kernel)"
    if isinstance(layer, _ZERO_MACS):
        return 0, "0: no multiply-accumulate"
    raise _Unknown(f"not counted: no MAC rule for {type(layer).__name__}")


def _kernel_shape(layer):
    return tuple(layer.kernel.shape)


def _einsum_macs(equation, input_shape, kernel_shape):
    """Multiply-accumulates of `einsum(equation, x, kernel)` for batch 1."""
    left = equation.split("->")[0]
    x_letters, k_letters = left.split(",")
    shape = (1,) + tuple(input_shape[1:])
    sizes = {}
    extra = 1
    if "..." in x_letters:
        head, tail = x_letters.split("...")
        middle = shape[len(head):len(shape) - len(tail)]
        extra = _prod(middle, "input")
        x_letters = head + tail
        shape = shape[:len(head)] + shape[len(shape) - len(tail):]
    for letter, size in zip(x_letters, shape):
        sizes[letter] = size
    for letter, size in zip(k_letters, kernel_shape):
        sizes.setdefault(letter, size)
    return extra * _prod(list(sizes.values()), "input")


def _attention_dims(layer, arguments, output_shape):
    """Sizes of a MultiHeadAttention call: `arguments` holds the `query`,
    `value` (and `key`) shapes and may override `heads`."""
    query = arguments.get("query")
    value = arguments.get("value")
    if query is None or value is None:
        raise _Unknown("not counted: the query/value shapes of the call "
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
    d = _attention_dims(layer, arguments, output_shape)
    query, key, value = d["query"], d["key"], d["value"]
    heads, key_dim, value_dim = d["heads"], d["key_dim"], d["value_dim"]
    t_q = _prod(query[1:-1], "query")
    t_k = _prod(key[1:-1], "key")
    t_v = _prod(value[1:-1], "value")
    out = _prod(d["out"], "output")
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
    q_positions = _prod([query[a] for a in axes], "query")
    k_positions = _prod([key[a] for a in axes], "key")
    return macs + (_prod(others, "query") * q_positions * k_positions
                   * heads * (key_dim + value_dim))


def attention_params(layer, arguments, output_shape):
    """Parameters of a MultiHeadAttention for these input/output/head
    sizes (`arguments` as for `call_macs`)."""
    d = _attention_dims(layer, arguments, output_shape)
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


def layer_params(layer, input_shape, output_shape, arguments=None):
    """Parameters of `layer` rebuilt for these channel counts, or None.

    Only the layers structured pruning resizes have a formula: convs,
    transposed, depthwise and separable convs, Dense, BatchNormalization and
    LayerNormalization on the last axis, MultiHeadAttention (with
    `arguments` as for `call_macs`). `input_shape`/`output_shape` are one
    call's shapes (the last axis holds the channels).
    """
    if isinstance(layer, L.MultiHeadAttention):
        try:
            return attention_params(layer, arguments or {}, output_shape)
        except _Unknown:
            return None
    bias = bool(getattr(layer, "use_bias", False))
    c_in, c_out = input_shape[-1], output_shape[-1]
    if isinstance(layer, _CONV):
        k = math.prod(layer.kernel_size)
        return k * (c_in // layer.groups) * c_out + bias * c_out
    if isinstance(layer, _TRANSPOSE):
        return math.prod(layer.kernel_size) * c_in * c_out + bias * c_out
    if isinstance(layer, _DEPTHWISE):
        middle = c_in * layer.depth_multiplier
        return math.prod(layer.kernel_size) * middle + bias * middle
    if isinstance(layer, _SEPARABLE):
        middle = c_in * layer.depth_multiplier
        return (math.prod(layer.kernel_size) * middle + middle * c_out
                + bias * c_out)
    if isinstance(layer, L.Dense):
        return c_in * c_out + bias * c_out
    if isinstance(layer, L.BatchNormalization):
        return c_in * (2 + bool(layer.center) + bool(layer.scale))
    if isinstance(layer, L.LayerNormalization):
        axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [
            layer.axis]
        if [a % len(input_shape) for a in axes] != [len(input_shape) - 1]:
            return None
        return c_in * (bool(layer.center) + bool(layer.scale))
    return None
