"""TAO mode: keep the channels whose normalized score passes a threshold.

NVIDIA TAO's rule (see ../shared/ANCHORS.md), reproduced channel by channel
and explained in the `PruningPlan`:

1. every layer that owns the group's channels (a producer's kernel output
   slices, a DepthwiseConv2D's kernel) gives the L2 norm per channel,
   normalized per layer (`max`, `l2` or `off`);
2. the group's layers are equalized: their normalized vectors are merged
   with `equalization_criterion` (union = max, intersection = min,
   arithmetic_mean, geometric_mean); the merged score decides for all;
3. channels with merged score > `threshold` are kept (it is NOT a
   fraction); `num = max(min(min_num_filters, width), kept)`, rounded UP to
   a multiple of `granularity`, capped at the width; the kept set is the
   top-`num` by merged score.
"""

import math
import numbers

import numpy as np

from keras_prune.structured.choices import EQUALIZATIONS
from keras_prune.structured.choices import check_choice
from keras_prune.structured.graph import channel_groups
from keras_prune.structured.importance import normalize
from keras_prune.structured.layer_rules import rule_for
from keras_prune.structured.plan import PruningPlan
from keras_prune.structured.plan import model_signature
from keras_prune.structured.planners.common import new_record
from keras_prune.structured.planners.common import resolve_ignored


def _geometric_mean(x, axis):
    return np.prod(x, axis=axis) ** (1.0 / x.shape[axis])


# How each of `EQUALIZATIONS` merges the layers' normalized scores.
_MERGES = {
    "union": np.max,
    "intersection": np.min,
    "arithmetic_mean": np.mean,
    "geometric_mean": _geometric_mean,
}


def layer_scores(graph, group):
    """`[(layer path, L2 norm per channel)]` of the layers owning a group:
    a producer's kernel output slices, an attention head's slices, a
    DepthwiseConv's kernel (each rule's `channel_kernel`)."""
    scores = []
    for m in group.members:
        layer = graph.layers[m.layer]
        kernel = rule_for(layer).channel_kernel(layer, m.role)
        if kernel is None:
            continue
        kernel = kernel[:, m.offset:m.offset + group.size]
        scores.append((m.layer, np.sqrt((kernel**2).sum(axis=0))))
    return scores


def _check(name, value, low, integer):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if integer:
        ok = ok and isinstance(value, numbers.Integral)
    if not ok or value < low:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {kind} >= {low}, got {value!r}.")


def plan_by_threshold(model, threshold=0.1, granularity=8, min_num_filters=16,
                      equalization_criterion="union", normalizer="max",
                      excluded_layers=()):
    """A `PruningPlan` by TAO's rule (threshold on normalized L2 scores).

    Args:
        model: a built Functional or Sequential model (not modified).
        threshold: keep channels whose normalized score is above it.
        granularity: kept channels per group are a multiple of it (or the
            whole group).
        min_num_filters: never keep fewer (unless the group is smaller).
        equalization_criterion: `"union"`, `"intersection"`,
            `"arithmetic_mean"` or `"geometric_mean"`.
        normalizer: `"max"`, `"l2"` or `"off"`, per layer.
        excluded_layers: layer names whose output channels stay whole.

    Returns:
        A `PruningPlan` whose rules name the threshold, `min_num_filters`,
        the rounding to `granularity`, the equalization, or the exclusion.

    Example:

    ```python
    plan = plan_by_threshold(model, threshold=0.3, granularity=8)
    small = apply_plan(model, plan)
    ```
    """
    _check("threshold", threshold, 0, integer=False)
    _check("granularity", granularity, 1, integer=True)
    _check("min_num_filters", min_num_filters, 0, integer=True)
    check_choice("equalization_criterion", equalization_criterion,
                 EQUALIZATIONS)
    if isinstance(excluded_layers, str):
        excluded_layers = [excluded_layers]
    graph = channel_groups(model)
    excluded = resolve_ignored(graph, excluded_layers, "excluded_layers")
    merge = _MERGES[equalization_criterion]
    records = []
    for group in graph.groups:
        per_layer = layer_scores(graph, group)
        size = group.size
        record = new_record(group)
        records.append(record)
        if per_layer:
            own = np.stack([normalize(s, normalizer) for _, s in per_layer])
            merged = merge(own, axis=0)
            order = np.argsort(-merged, kind="stable")
            rank = np.argsort(order, kind="stable")
            record["raw"] = np.mean([s for _, s in per_layer], 0).tolist()
            record["score"] = merged.tolist()
            record["rank"] = rank.tolist()
        hit = sorted(excluded & set(group.producers))
        if group.blocked:
            record["rule"] = ["blocked: " + "; ".join(group.blocked)] * size
            continue
        if hit:
            record["rule"] = [f"excluded: layer {hit[0]!r} is in "
                              "excluded_layers"] * size
            continue
        if not per_layer:
            # Never decide with another group's scores.
            record["rule"] = ["kept: no layer of this group is scored in "
                              "TAO mode"] * size
            continue
        passed = int((merged > threshold).sum())
        at_least = max(min(min_num_filters, size), passed)
        num = min(size, int(math.ceil(at_least / granularity) * granularity))
        names = [name for name, _ in per_layer]
        for c in range(size):
            s = f"{merged[c]:.4g}"
            if rank[c] < passed:
                rule = f"kept: score {s} > threshold {threshold}"
                if (own[:, c] <= threshold).any():
                    rule += (f" ({equalization_criterion} of "
                             f"{', '.join(names)})")
            elif rank[c] < at_least:
                rule = f"kept: min_num_filters {min_num_filters}"
            elif rank[c] < num:
                rule = (f"kept: {at_least} rounded up to {num} "
                        f"(granularity {granularity})")
            else:
                rule = f"removed: score {s} <= threshold {threshold}"
                record["keep"][c] = False
            record["rule"][c] = rule
    return PruningPlan(
        model.name,
        {"mode": "threshold", "threshold": threshold,
         "granularity": granularity, "min_num_filters": min_num_filters,
         "equalization_criterion": equalization_criterion,
         "normalizer": normalizer, "excluded_layers": sorted(excluded)},
        records,
        model_signature(graph),
        graph=graph,
    )
