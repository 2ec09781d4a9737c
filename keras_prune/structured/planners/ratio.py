"""Ratio mode: remove the same fraction of every group, or the lowest
normalized scores over all groups (`plan_pruning`)."""

import math

from keras_prune.structured.plan import PruningPlan
from keras_prune.structured.plan import model_signature
from keras_prune.structured.planners.budget import plan_for_budget
from keras_prune.structured.planners.common import check_ratio
from keras_prune.structured.planners.common import check_settings
from keras_prune.structured.planners.common import decide
from keras_prune.structured.planners.common import remove_lowest
from keras_prune.structured.planners.common import scored_records

def plan_pruning(model, ratio=None, criterion="l2", round_to=None,
                 ignored_layers=(), scope=None, reduction="mean",
                 normalizer="max", seed=0, *, target_params=None,
                 target_macs=None, data=None, loss=None, batch_size=32,
                 rounding="up"):
    """Decide which channels to remove: ratio mode or target (budget) mode.

    Ratio mode (`ratio`): every prunable group loses `floor(ratio * size)`
    channels (scope `"layer"`, the default), or the `floor(ratio * total)`
    lowest normalized scores over all prunable groups go (scope
    `"global"`, at least one channel kept per group). The kept count is
    then rounded UP to a multiple of `round_to` (never more removed than
    asked), or to the nearest multiple with `rounding="nearest"`.

    Target mode (`target_params` and/or `target_macs`): channels are removed
    one by one, least important first, until the smaller model's
    parameters and MACs (per sample, `model_cost`) are within the budget;
    see `plan_for_budget`.

    Either way, groups the graph walker cannot follow, and groups produced
    by an ignored layer, keep every channel.

    Args:
        model: a built Functional or Sequential model (not modified).
        ratio: fraction of channels to remove, in [0, 1); default 0.5 when
            no target is given.
        criterion: `"l1"`, `"l2"`, `"bn"`, `"taylor"` (needs `data`) or
            `"random"` (see importance).
        round_to: None, or a positive int: kept channels per group become a
            multiple of it (capped at the group size). A deploy runtime's
            channel block (`measure_channel_block`) makes the smaller
            model's speed follow its MACs.
        ignored_layers: layer names (or layers) whose output channels are
            never pruned.
        scope: `"layer"` (same ratio in every group; the default in ratio
            mode) or `"global"` (one ranking over all groups; the default in
            target mode).
        reduction: `"mean"`, `"sum"` or `"max"` over a group's members.
        normalizer: `"max"`, `"l2"` or `"off"`.
        seed: for `criterion="random"`.
        target_params: the parameter budget: an int is an absolute count
            of parameters (as `model.count_params()` counts them), a float
            in (0, 1] a fraction of the model's.
        target_macs: the MAC budget (one sample): an int or a fraction, as
            `target_params`.
        data: for `criterion="taylor"`: `(x, y)` arrays or an iterable of
            `(x, y)` batches.
        loss: for `"taylor"`: a loss name, function or `keras.losses.Loss`
            (default: the model's compiled loss).
        batch_size: for `"taylor"` with `(x, y)` arrays.
        rounding: how `round_to` rounds: `"up"` (never more removed than
            asked) or `"nearest"` (ties up; a group keeps at least
            `round_to`): the MAC total stays near the ratio's. In target
            mode the budget holds either way.

    Returns:
        A `PruningPlan`.

    Example:

    ```python
    plan = plan_pruning(model, ratio=0.5, round_to=8)
    print(plan.summary())
    small = apply_plan(model, plan)
    half = plan_pruning(model, target_macs=0.5)  # at most half the MACs
    fast = plan_pruning(model, target_macs=0.5, round_to=16,
                        rounding="nearest", scope="layer")
    ```
    """
    if target_params is not None or target_macs is not None:
        if ratio is not None:
            raise ValueError(
                f"plan_pruning: give ratio ({ratio!r}) or a target "
                f"(target_params={target_params!r}, "
                f"target_macs={target_macs!r}), not both."
            )
        return plan_for_budget(
            model, target_params=target_params, target_macs=target_macs,
            criterion=criterion, round_to=round_to,
            ignored_layers=ignored_layers,
            scope="global" if scope is None else scope,
            reduction=reduction, normalizer=normalizer, seed=seed, data=data,
            loss=loss, batch_size=batch_size, rounding=rounding)
    ratio = 0.5 if ratio is None else ratio
    check_ratio(ratio)
    return ratio_plan(model, ratio, criterion, round_to, ignored_layers,
                      "layer" if scope is None else scope, reduction,
                      normalizer, seed, data, loss, batch_size,
                      rounding=rounding)


def ratio_plan(model, ratio, criterion="l2", round_to=None,
               ignored_layers=(), scope="layer", reduction="mean",
               normalizer="max", seed=0, data=None, loss=None, batch_size=32,
               base_sizes=None, graph=None, rounding="up"):
    """`plan_pruning`'s ratio mode, relative to other group sizes.

    `base_sizes` (dict group name -> channels, default: the model's own)
    are the sizes `ratio` applies to: `prune_iteratively` passes the
    original model's, so that step i of a smaller model removes what is
    left to reach `ratio` of the original (a group already at or below its
    share loses nothing). `graph` is the model's `ChannelGraph` when
    already built.
    """
    found = check_settings(criterion, round_to, scope, reduction, normalizer,
                           data, loss, model, batch_size, rounding)
    graph, ignored, records = scored_records(
        model, found, reduction, normalizer, seed, ignored_layers, data,
        loss, batch_size, graph)
    base = {r["name"]: r["size"] for r in records}
    base.update(base_sizes or {})

    candidates = [r for r in records if r["rule"][0] is None]
    if scope == "layer":
        for r in candidates:
            size = base[r["name"]]
            target = max(1, size - int(math.floor(ratio * size)))
            n_keep = min(r["size"], target)
            why = f"ratio {ratio}: not in the top {target} of {size}"
            decide(r, n_keep, round_to, lambda c, why=why: why,
                   rounding=rounding)
    else:
        total = sum(base[r["name"]] for r in candidates)
        target = total - int(math.floor(ratio * total))
        n_remove = max(0, sum(r["size"] for r in candidates) - target)
        remove_lowest(candidates, n_remove, round_to,
                      f"global ratio {ratio}", rounding)

    settings = {"mode": "ratio", "ratio": ratio, "criterion": found.name,
                "round_to": round_to, "rounding": rounding,
                "ignored_layers": sorted(ignored),
                "scope": scope, "reduction": reduction,
                "normalizer": normalizer, "seed": seed}
    if base_sizes:
        settings["base_sizes"] = dict(base_sizes)
    return PruningPlan(model.name, settings, records, model_signature(graph),
                       graph=graph)
