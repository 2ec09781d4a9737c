"""Every weight of a model: who owns it, which pruning rule applies, whether
it is prunable (and why not), its zeros and its mask.

Prunability is decided for the layer whose pruning rule applies, which is
not always the layer that owns the variable: an LSTM's kernel belongs to its
`LSTMCell` and a MultiHeadAttention's to its `query`/`key`/`value`
EinsumDense sub-layers, but the rule (and the pruning wrapper) is the LSTM's
or the attention layer's. That layer is the wrapped layer of an enclosing
`PruneLowMagnitude`, otherwise the outermost enclosing layer that
`registry.has_rule`. `SparsityReport` renders what `collect` finds.
"""

import dataclasses

import keras
import numpy as np

from keras_prune.core import registry
from keras_prune.core.layers import pruned_layers
from keras_prune.core.models import unreached_layers
from keras_prune.core.walk import walk
from keras_prune.core.wrapper import PruneLowMagnitude


@dataclasses.dataclass(frozen=True)
class WeightSparsity:
    """Sparsity of one weight variable of a model.

    Attributes:
        path: the variable's path (`variable.path`), e.g. "conv2d/kernel".
        layer: name of the layer whose pruning rule applies (for a wrapped
            layer the wrapped layer, for an LSTM cell's kernel the LSTM), or
            of the owning layer when no enclosing layer has a rule.
        layer_class: class name of that layer, e.g. "Dense",
            "BatchNormalization", "LSTM".
        shape: the variable's shape.
        prunable: whether keras_prune prunes this variable.
        reason: why it is not prunable (from `registry.explain`, or
            `EXCLUDED` for a prunable weight left dense in a pruned model);
            "" when it is prunable.
        zeros: number of entries equal to zero.
        total: number of entries.
        mask_sparsity: for a variable masked by a `PruneLowMagnitude`
            wrapper, the fraction of its mask that is False; otherwise None.
        target: for a masked variable, the schedule's sparsity at the
            wrapper's last mask update (`pruning_step`); None if the masks
            were never updated, the variable is not masked, or its
            criterion sets its sparsity itself (soft movement).
    """

    path: str
    layer: str
    layer_class: str
    shape: tuple
    prunable: bool
    reason: str
    zeros: int
    total: int
    mask_sparsity: float | None = None
    target: float | None = None

    @property
    def sparsity(self):
        """Fraction of entries equal to zero, `zeros / total` (0.0 if empty)."""
        return self.zeros / self.total if self.total else 0.0

    @property
    def excluded(self):
        """Whether the weight is prunable by the rules but was left dense:
        its layer is not wrapped in a model that has pruning wrappers."""
        return self.reason in (EXCLUDED, UNREACHED)

    @property
    def short_reason(self):
        """The first clause of `reason`, e.g. "bias" or "normalization
        statistic (running mean/variance/count)"."""
        return first_clause(self.reason)

    def to_dict(self):
        """Returns the entry as JSON-able plain types (shape as a list).

        "sparsity" is None for weights that are not prunable: their zeros
        (a zero bias, a Normalization layer's zero `count`) are not pruning;
        "zeros" and "total" still count them.
        """
        return {
            "path": self.path,
            "layer": self.layer,
            "layer_class": self.layer_class,
            "shape": list(self.shape),
            "prunable": self.prunable,
            "excluded": self.excluded,
            "reason": self.reason,
            "zeros": self.zeros,
            "total": self.total,
            "sparsity": self.sparsity if self.prunable else None,
            "mask_sparsity": self.mask_sparsity,
            "target": self.target,
        }


EXCLUDED = (
    "excluded: left dense although prunable (its layer is not wrapped for "
    "pruning in this pruned model: exclude=, per_layer or a pruning_policy "
    "left it out)"
)


UNREACHED = (
    "left dense: prunable, but held where no pruning wrapper can take its "
    "place (not in an attribute, list, tuple, dict or graph of the layer "
    "that calls it)"
)


def global_scope(model):
    """`(threshold, {weight path: mask sparsity})` of globally scoped masks."""
    threshold, allocation = None, {}
    for wrapper in pruned_layers(model):
        # Soft movement's one threshold needs no global ranking: its
        # masks are those of layer scope, and reported so.
        if wrapper.scope != "global" or getattr(
                wrapper.spec.criterion, "by_threshold", False):
            continue
        for variable, mask, cut in zip(
            wrapper.prunable_weights, wrapper.masks, wrapper.thresholds
        ):
            keep = np.asarray(keras.ops.convert_to_numpy(mask))
            allocation[variable.path] = float(1 - keep.mean())
            threshold = float(keras.ops.convert_to_numpy(cut))
    return threshold, allocation


def _owners(model):
    """The model's layers in order, and who owns each variable.

    A layer's own variables are `_trainable_variables +
    _non_trainable_variables`. Wrappers are skipped (PruneLowMagnitude also
    tracks the wrapped layer's variables), and when a variable is listed by
    several layers the deepest one owns it.

    Returns:
        `(walk, owners)`: the list of `(layer, ancestors)`, parents first, and
        a dict id(variable) -> `(owning layer, its ancestors)`.
    """
    visited = [
        (layer, ancestors)
        for layer, ancestors in walk(model)
        if not isinstance(layer, PruneLowMagnitude)
    ]
    owners = {}
    for layer, ancestors in visited:
        for variable in _own_variables(layer):
            known = owners.get(id(variable))
            if known is None or len(ancestors) > len(known[1]):
                owners[id(variable)] = (layer, ancestors)
    return visited, owners


def _own_variables(layer):
    return layer._trainable_variables + layer._non_trainable_variables


def _rule_layer(chain):
    """The layer whose pruning rule applies to variables owned by `chain[-1]`.

    Returns:
        `(layer, wrapper)`: the wrapped layer of the outermost enclosing
        `PruneLowMagnitude` and that wrapper; else the outermost layer (not a
        model) that has a rule, and None; else `(None, None)`.
    """
    for layer in chain:
        if isinstance(layer, PruneLowMagnitude):
            return layer.layer, layer
    for layer in chain:
        if not isinstance(layer, keras.Model) and registry.has_rule(layer):
            return layer, None
    return None, None


def _explain(variable, owner, rule, prune_depthwise):
    if rule is None:
        return registry.explain(owner, variable, prune_depthwise)
    prunable, reason = registry.explain(rule, variable, prune_depthwise)
    if prunable or owner is rule or registry.has_rule(owner):
        return prunable, reason
    # A rule-less sub-layer (TimeDistributed's BatchNormalization) says more
    # about its own variable ("normalization scale (gamma)") than its
    # container does, unless all it can say is that its class has no rule
    # (that message names the class).
    _, own = registry.explain(owner, variable, prune_depthwise)
    if type(owner).__name__ in own:
        return prunable, reason
    return prunable, own


def collect(model, prune_depthwise=False):
    """One `WeightSparsity` per weight of `model`, in layer order.

    Layer order (not `model.weights` order, which wrappers change) makes the
    reports of a model, its pruned copy and its stripped copy line up.
    """
    weights = {id(v) for v in model.weights}
    visited, owners = _owners(model)
    pruned = bool(pruned_layers(model))
    unreached = {id(l) for l in unreached_layers(model)} if pruned else set()
    entries = []
    for owner, ancestors in visited:
        for variable in _own_variables(owner):
            # Only what the owning layer reports; a wrapper's masks,
            # thresholds and step are owned by no other layer: pruning state.
            owned = owners[id(variable)][0] is owner
            if not owned or id(variable) not in weights:
                continue
            weights.discard(id(variable))
            entries.append(_entry(
                variable, owner, ancestors, prune_depthwise, pruned, unreached
            ))
    return entries


def _entry(variable, owner, ancestors, prune_depthwise, pruned, unreached):
    rule, wrapper = _rule_layer(ancestors + (owner,))
    depthwise = wrapper.prune_depthwise if wrapper else prune_depthwise
    prunable, reason = _explain(variable, owner, rule, depthwise)
    if prunable and pruned and wrapper is None:
        # The model is being pruned, but not this weight: it stays dense,
        # left out by the settings or out of reach.
        layer = rule if rule is not None else owner
        prunable = False
        reason = UNREACHED if id(layer) in unreached else EXCLUDED
    named = rule if rule is not None else owner
    values = keras.ops.convert_to_numpy(variable.value)
    mask_sparsity, target = _mask_state(wrapper, variable)
    return WeightSparsity(
        path=variable.path,
        layer=named.name,
        layer_class=type(named).__name__,
        shape=tuple(int(d) for d in variable.shape),
        prunable=bool(prunable),
        reason=reason,
        zeros=int(values.size - np.count_nonzero(values)),
        total=int(values.size),
        mask_sparsity=mask_sparsity,
        target=target,
    )


def _mask_state(wrapper, variable):
    """`(mask_sparsity, target)` of `variable` under `wrapper`, or Nones."""
    if wrapper is None:
        return None, None
    for weight, mask in zip(wrapper.prunable_weights, wrapper.masks):
        if weight is variable:
            keep = keras.ops.convert_to_numpy(mask.value)
            mask_sparsity = float(1.0 - np.count_nonzero(keep) / keep.size)
            step = int(keras.ops.convert_to_numpy(wrapper.pruning_step.value))
            # Soft movement's schedule ramps a threshold: its sparsity is
            # no target (the L1 penalty sets the sparsity reached).
            target = (
                None
                if step < 0 or getattr(
                    wrapper.spec.criterion, "by_threshold", False)
                else float(wrapper.pruning_schedule.sparsity_at(step))
            )
            return mask_sparsity, target
    return None, None


def first_clause(reason):
    """`reason` up to its first ':', ';' or ',' outside parentheses."""
    depth = 0
    for i, char in enumerate(reason):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char in ":;," and depth == 0:
            return reason[:i].strip()
    return reason.strip()
