"""Per-channel importance of a channel group.

Each member of a group that owns per-channel weights gives one score vector;
the vectors are reduced over the group (`mean`, `sum`, `max`). Criteria:

- `"l1"` / `"l2"`: norm of each producer's kernel slice for the channel
  (TAO and Torch-Pruning use L2; bias and BatchNorm ignored); for an
  attention head, of all its query, key, value (gate) and output kernel
  slices together.
- `"bn"`: |gamma| of the group's BatchNormalization layers (network slimming).
- `"taylor"`: first-order Taylor (Molchanov et al. 2019, Torch-Pruning's
  `TaylorImportance` with `multivariable=True`): for every member,
  `|sum of w * dL/dw|` over the member's weights of the channel (a
  producer's kernel slice and bias, a consumer's kernel input rows, a
  BatchNormalization's gamma and beta, a depthwise kernel slice), the
  gradient being the mean over `data` of the loss's gradient (computed
  with `training=False`). Needs data and a loss.
- `"random"`: uniform scores from a seeded generator (a baseline).

Normalizers make scores of different groups comparable (global scope):
`"max"` divides by the largest score, `"l2"` (TAO's) divides by the L2 norm
of the score vector and multiplies by the group width, `"off"` leaves them.
"""

import numpy as np

from keras_prune.structured.layer_rules import head_kernel
from keras_prune.structured.layer_rules import rule_for
from keras_prune.structured.taylor import taylor_scores

CRITERIA = ("l1", "l2", "bn", "taylor", "random")
REDUCTIONS = ("mean", "sum", "max")
NORMALIZERS = ("max", "l2", "off")

__all__ = ["CRITERIA", "NORMALIZERS", "REDUCTIONS", "check_choice",
           "group_scores", "head_kernel", "member_scores", "normalize"]


def check_choice(name, value, choices):
    """ValueError naming `name`, its `choices` and `value` if not one of them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}.")


def member_scores(layer, member, criterion, size, gradients=None):
    """Raw scores of one member for the group's `size` channels, or None."""
    if criterion == "taylor":
        return taylor_scores(layer, member, size, gradients)
    if criterion in ("l1", "l2") and member.role in ("out", "heads"):
        kernel = rule_for(layer).channel_kernel(layer, member.role)
        if criterion == "l1":
            return np.abs(kernel).sum(axis=0)
        return np.sqrt((kernel**2).sum(axis=0))
    if criterion == "bn":
        gamma = rule_for(layer).scale(layer, member.role)
        if gamma is not None:
            return np.abs(gamma[member.offset:member.offset + size])
    return None


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
                 normalizer="max", seed=0, gradients=None):
    """Raw and normalized per-channel scores of a `ChannelGroup`.

    Each member's vector is normalized on its own (as TAO does per layer)
    and the normalized vectors are reduced; the raw scores are the reduced
    raw vectors.

    Args:
        graph: the model's `ChannelGraph`.
        group: a `ChannelGroup` of it.
        criterion: one of `CRITERIA`.
        reduction: one of `REDUCTIONS`, over the group's scored members.
        normalizer: one of `NORMALIZERS`.
        seed: for `"random"`, combined with the group id.
        gradients: for `"taylor"`, `taylor_gradients(model, data, loss)`.

    Returns:
        `(raw, normalized)` numpy arrays of length `group.size`, or
        `(None, None)` when no member can be scored by the criterion (a
        group without BatchNormalization under `"bn"`).
    """
    check_choice("criterion", criterion, CRITERIA)
    check_choice("reduction", reduction, REDUCTIONS)
    check_choice("normalizer", normalizer, NORMALIZERS)
    if criterion == "random":
        raw = np.random.default_rng([seed, group.id]).random(group.size)
        return raw, normalize(raw, normalizer)
    raws = []
    for member in group.members:
        scores = member_scores(graph.layers[member.layer], member, criterion,
                               group.size, gradients)
        if scores is not None:
            raws.append(scores)
    if not raws:
        return None, None
    reduce = {"mean": np.mean, "sum": np.sum, "max": np.max}[reduction]
    raw = reduce(np.stack(raws), axis=0)
    normalized = reduce(
        np.stack([normalize(r, normalizer) for r in raws]), axis=0
    )
    return raw, normalized

