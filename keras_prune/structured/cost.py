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
(`layer_params`) let a `PruningPlan` be costed before any surgery. Every
formula is its layer class's rule (`layer_rules`).
"""

import dataclasses

from keras import layers as L

from keras_prune.structured.layer_rules import NotCounted
from keras_prune.structured.layer_rules import exact_rule
from keras_prune.structured.layer_rules import rule_for
from keras_prune.structured.nodes import layer_calls


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
    return cost_of_calls(model.name, layer_calls(model))


def cost_of_calls(model_name, calls):
    """The `ModelCost` of a model from its `layer_calls` (what a
    `ChannelGraph` records as `calls`).

    Args:
        model_name: the model's name.
        calls: dict layer path -> `(layer, [call records])`.

    Returns:
        A `ModelCost`.
    """
    per_layer = []
    seen = set()
    for path, (layer, records) in calls.items():
        macs, note = 0, ""
        for input_shapes, output_shapes, arguments in records:
            if not isinstance(layer, L.Layer) and exact_rule(layer) is None:
                macs, note = None, ("a plain operation: no MAC rule, not "
                                    "counted")
                break
            try:
                call, note = call_macs(layer, input_shapes, output_shapes,
                                       arguments)
            except NotCounted as e:
                macs, note = None, str(e)
                break
            macs += call
        params = 0
        if id(layer) not in seen:
            seen.add(id(layer))
            if isinstance(layer, L.Layer) and layer.built:
                params = int(layer.count_params())
        per_layer.append(LayerCost(path, type(layer).__name__, params, macs,
                                   len(records), note))
    return ModelCost(model_name, per_layer)


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
        `(macs, note)`, from the layer's rule (`layer_rules`).

    Raises:
        `NotCounted` when the layer has no rule or a size is unknown.
    """
    return rule_for(layer).macs(layer, input_shapes, output_shapes,
                                arguments or {})


def layer_params(layer, input_shape, output_shape, arguments=None):
    """Parameters of `layer` rebuilt for these channel counts, or None.

    Only the layers structured pruning resizes have a formula: convs,
    transposed, depthwise and separable convs, Dense, BatchNormalization and
    LayerNormalization on the last axis, MultiHeadAttention (with
    `arguments` as for `call_macs`). `input_shape`/`output_shape` are one
    call's shapes (the last axis holds the channels).
    """
    return rule_for(layer).params(layer, input_shape, output_shape,
                                  arguments or {})
