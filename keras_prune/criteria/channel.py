"""Channel criteria: how important each channel of a channel group is.

Structured pruning (`keras_prune.structured.plan_pruning`) removes whole
channels, and the channels of a group must go together in every layer of
the group (`ChannelGroup.members`: the producer making them, the layers
reading them, BatchNormalizations in between). A channel criterion scores a
group: by default each member gives one raw score vector
(`member_scores`), and `plan_pruning` normalizes and reduces the vectors
(`reduction`, `normalizer`). Built in:

- `"l1"` / `"l2"`: norm of each producer's kernel slice for the channel
  (TAO and Torch-Pruning use L2; bias and BatchNorm ignored); for an
  attention head, of all its query, key, value (gate) and output kernel
  slices together.
- `"bn"`: |gamma| of the group's BatchNormalization layers (network
  slimming).
- `"taylor"`: first-order Taylor (Molchanov et al. 2019, Torch-Pruning's
  `TaylorImportance` with `multivariable=True`): for every member,
  `|sum of w * dL/dw|` over the member's weights of the channel (a
  producer's kernel slice and bias, a consumer's kernel input rows, a
  BatchNormalization's gamma and beta, a depthwise kernel slice, an
  attention head's projection slices), the gradient being the mean over
  `data` of the loss's gradient (`training=False`). Needs data and a loss.
- `"random"`: uniform scores from a seeded generator (a baseline).

A new one is a subclass and a registration:

```python
@keras_prune.criteria.register("first_filters")
class FirstFilters(keras_prune.criteria.channel.ChannelCriterion):
    def member_scores(self, layer, member, size, context):
        if member.role != "out":
            return None                     # only producers score
        return np.arange(size, 0, -1.0)     # earlier filters matter more
```

after which `plan_pruning(model, criterion="first_filters")` works.
"""

import numpy as np
from keras import ops

from keras_prune.criteria.base import CHANNEL
from keras_prune.criteria.base import GRADIENTS
from keras_prune.criteria.base import Criterion
from keras_prune.criteria.base import ScoringContext
from keras_prune.criteria.base import available as registered
from keras_prune.criteria.base import get as get_registered
from keras_prune.criteria.base import register


class ChannelContext(ScoringContext):
    """What a channel criterion may use to score a model's channel groups.

    A `ScoringContext` (data, loss, seed, mean gradients) that also knows
    the model's `ChannelGraph` and, through the structured package's layer
    rules, which weights of a member hold its channels.

    Args:
        graph: the model's `keras_prune.structured.ChannelGraph`.
        rule_for: function layer -> its `LayerRule`
            (`keras_prune.structured.layer_rules.rule_for`).
        gradients: the mean gradients (dict `id(variable)` -> array) when
            already computed; else computed from `data` on first use.
        seed, data, loss, batch_size: as for `ScoringContext`.
    """

    def __init__(self, graph, rule_for, gradients=None, seed=0, data=None,
                 loss=None, batch_size=32):
        super().__init__(model=graph.model, seed=seed, data=data, loss=loss,
                         batch_size=batch_size)
        self.graph = graph
        self._rule_for = rule_for
        self._gradients = gradients

    def layer(self, member):
        """The layer of a `Member`."""
        return self.graph.layers[member.layer]

    def kernel(self, member, size):
        """The kernel making a member's `size` channels as a float64 matrix
        (rows, size): a producer's output slices (role `"out"`), an
        attention head's slices (`"heads"`), a DepthwiseConv's kernel
        (`"through"`); None for other members."""
        layer = self.layer(member)
        kernel = self._rule_for(layer).channel_kernel(layer, member.role)
        if kernel is None:
            return None
        return kernel[:, member.offset:member.offset + size]

    def scale(self, member, size):
        """A member's per-channel BatchNormalization gamma (float64), or
        None."""
        layer = self.layer(member)
        gamma = self._rule_for(layer).scale(layer, member.role)
        if gamma is None:
            return None
        return gamma[member.offset:member.offset + size]

    def channel_weights(self, member):
        """The member's weights that hold its channels.

        Returns:
            list of `(variable, axis, repeat)`: the member's features are
            the entries of `axis` (each channel owning `repeat` consecutive
            ones), in the layer's weight order.
        """
        layer = self.layer(member)
        rule = self._rule_for(layer)
        axes = rule.axes(layer, member.role)
        found = []
        for w in layer.weights:
            key = rule.weight_key(layer, w)
            if key in axes:
                found.append((w, *axes[key]))
        return found

    def gradient_or_none(self, variable):
        """The mean gradient of `variable`, or None for a variable without
        one (not trainable, e.g. in a frozen layer)."""
        try:
            return self.gradient(variable)
        except KeyError:
            return None


class ChannelCriterion(Criterion):
    """Base class of channel criteria (`granularity = CHANNEL`).

    Implement `member_scores` (or `group_scores` for a criterion that
    scores a group as a whole) and register the class with
    `keras_prune.criteria.register(name)`.
    """

    granularity = CHANNEL

    def group_scores(self, group, context):
        """Raw score vectors of a group's channels, one per scored member.

        Args:
            group: a `ChannelGroup`.
            context: a `ChannelContext`.

        Returns:
            list of float64 arrays of length `group.size` (empty when no
            member can be scored: the group is left whole).
        """
        scores = []
        for member in group.members:
            s = self.member_scores(context.layer(member), member, group.size,
                                   context)
            if s is not None:
                scores.append(np.asarray(s, dtype=np.float64))
        return scores

    def member_scores(self, layer, member, size, context):
        """Raw scores of one member for its group's `size` channels.

        Args:
            layer: the member's layer.
            member: a `Member` (`role`, `offset`, `width`, `tile`).
            size: the group's number of channels.
            context: a `ChannelContext`.

        Returns:
            An array of `size` non-negative scores (larger = kept first),
            or None when the member gives none.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement member_scores(layer, "
            "member, size, context) or group_scores(group, context)."
        )


class _Norm(ChannelCriterion):
    """A norm of each producer's (or head's) kernel slice."""

    def member_scores(self, layer, member, size, context):
        if member.role not in ("out", "heads", "mlp"):
            return None
        return self.norm(context.kernel(member, size))


@register("l1")
class L1(_Norm):
    """sum |w| of each channel's kernel slice."""

    description = "L1 norm of each channel's kernel slice"

    def norm(self, kernel):
        return np.abs(kernel).sum(axis=0)


@register("l2")
class L2(_Norm):
    """sqrt(sum w^2) of each channel's kernel slice (TAO's)."""

    description = "L2 norm of each channel's kernel slice (the default)"

    def norm(self, kernel):
        return np.sqrt((kernel**2).sum(axis=0))


@register("bn")
class BatchNormScale(ChannelCriterion):
    """|gamma| of the group's BatchNormalization layers (network slimming,
    Liu et al. 2017)."""

    description = "|gamma| of the group's BatchNormalization"

    def member_scores(self, layer, member, size, context):
        if member.role != "through":
            return None
        gamma = context.scale(member, size)
        return None if gamma is None else np.abs(gamma)


@register("random")
class ChannelRandom(ChannelCriterion):
    """Uniform random scores in [0, 1), one draw per group, seeded by the
    seed and the group id (the same on every backend)."""

    description = "uniform random scores (a baseline)"

    def group_scores(self, group, context):
        return [context.rng(group.id).random(group.size)]


@register("taylor")
class ChannelTaylor(ChannelCriterion):
    """|sum of w * dL/dw| over each member's weights of a channel (needs
    data and a loss)."""

    needs = GRADIENTS
    description = "|sum of w * dL/dw| per channel (needs data and a loss)"

    def member_scores(self, layer, member, size, context):
        features = None
        for variable, axis, repeat in context.channel_weights(member):
            gradient = context.gradient_or_none(variable)
            if gradient is None:
                continue
            value = np.asarray(ops.convert_to_numpy(variable), np.float64)
            product = np.moveaxis(value * gradient, axis, 0)
            per_row = product.reshape(product.shape[0], -1).sum(axis=1)
            per_feature = per_row.reshape(-1, repeat).sum(axis=1)
            features = per_feature if features is None else (
                features + per_feature)
        if features is None:
            return None
        return np.abs(np.array([
            features[member.indices([c])].sum() for c in range(size)
        ]))


# The order of the choices in messages: the built-in ones first.
_BUILT_IN = ("l1", "l2", "bn", "taylor", "random")


def available():
    """The names of the channel criteria: the built-in ones, then the
    registered ones, sorted."""
    extra = set(registered(CHANNEL)) - set(_BUILT_IN)
    return _BUILT_IN + tuple(sorted(extra))


def get(identifier):
    """The channel `Criterion` for a name, a `{"name", "config"}` dict or a
    `Criterion` instance (`keras_prune.criteria.get` at `CHANNEL`)."""
    return get_registered(identifier, CHANNEL)
