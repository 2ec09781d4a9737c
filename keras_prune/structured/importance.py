"""Per-channel importance of a channel group.

The criterion (`"l1"`, `"l2"`, `"bn"`, `"taylor"`, `"random"` or any
registered channel criterion: `keras_prune.criteria.channel`) gives one raw
score vector per scored member of a group; the vectors are reduced over the
group (`mean`, `sum`, `max`).

Normalizers make scores of different groups comparable (global scope):
`"max"` divides by the largest score, `"l2"` (TAO's) divides by the L2 norm
of the score vector and multiplies by the group width, `"off"` leaves them.
"""

import numpy as np

from keras_prune.criteria import channel
from keras_prune.criteria.channel import ChannelContext
from keras_prune.structured.choices import NORMALIZERS
from keras_prune.structured.choices import REDUCTIONS
from keras_prune.structured.choices import check_choice
from keras_prune.structured.layer_rules import head_kernel
from keras_prune.structured.layer_rules import rule_for

# The channel criteria registered when the package was loaded;
# `criteria.channel.available()` also lists those registered since.
CRITERIA = channel.available()

__all__ = [
    "CRITERIA",
    "NORMALIZERS",
    "REDUCTIONS",
    "channel_criterion",
    "check_choice",
    "group_scores",
    "head_kernel",
    "normalize",
    "scoring_context",
]


def channel_criterion(identifier):
    """The channel `Criterion` for a name (or a `Criterion` instance).

    Raises:
        ValueError: naming the channel criteria, for an unknown name.
    """
    if isinstance(identifier, str):
        check_choice("criterion", identifier, channel.available())
    return channel.get(identifier)


def scoring_context(graph, seed=0, gradients=None):
    """The `ChannelContext` a channel criterion scores `graph`'s groups in.

    Args:
        graph: the model's `ChannelGraph`.
        seed: for random criteria.
        gradients: the mean gradients (`taylor_gradients`) for criteria that
            need them, or None.

    Returns:
        A `ChannelContext` whose layer knowledge is `layer_rules.rule_for`.
    """
    return ChannelContext(graph, rule_for, gradients=gradients, seed=seed)


def normalize(scores, normalizer):
    """`scores` divided by the normalizer's scale (zeros stay zeros)."""
    scores = np.asarray(scores, dtype=np.float64)
    if normalizer == "off" or scores.size == 0:
        return scores
    if normalizer == "max":
        scale = scores.max()
    elif normalizer == "l2":
        scale = np.linalg.norm(scores) / scores.size
    else:
        check_choice("normalizer", normalizer, NORMALIZERS)
    return scores / scale if scale > 0 else scores


def group_scores(graph, group, criterion="l2", reduction="mean",
                 normalizer="max", seed=0, gradients=None, context=None):
    """Raw and normalized per-channel scores of a `ChannelGroup`.

    Each member's vector is normalized on its own (as TAO does per layer)
    and the normalized vectors are reduced; the raw scores are the reduced
    raw vectors.

    Args:
        graph: the model's `ChannelGraph`.
        group: a `ChannelGroup` of it.
        criterion: a channel criterion's name (`"l1"`, `"l2"`, `"bn"`,
            `"taylor"`, `"random"`, or registered) or a `ChannelCriterion`.
        reduction: one of `REDUCTIONS`, over the group's scored members.
        normalizer: one of `NORMALIZERS`.
        seed: for `"random"`, combined with the group id.
        gradients: for `"taylor"`, `taylor_gradients(model, data, loss)`.
        context: a `scoring_context` shared by the groups of one model
            (then `seed` and `gradients` are its own).

    Returns:
        `(raw, normalized)` numpy arrays of length `group.size`, or
        `(None, None)` when no member can be scored by the criterion (a
        group without BatchNormalization under `"bn"`).
    """
    criterion = channel_criterion(criterion)
    check_choice("reduction", reduction, REDUCTIONS)
    check_choice("normalizer", normalizer, NORMALIZERS)
    if context is None:
        context = scoring_context(graph, seed, gradients)
    raws = criterion.group_scores(group, context)
    if not raws:
        return None, None
    reduce = {"mean": np.mean, "sum": np.sum, "max": np.max}[reduction]
    raw = reduce(np.stack(raws), axis=0)
    normalized = reduce(
        np.stack([normalize(r, normalizer) for r in raws]), axis=0
    )
    return raw, normalized
