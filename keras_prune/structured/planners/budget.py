"""Target mode: remove the least important channels until a budget is met.

`plan_for_budget(model, target_params=..., target_macs=...)` orders every
removable channel (least important first: by normalized score over all
groups, scope `"global"`; or so that the first k make a uniform ratio,
scope `"layer"`) and removes the shortest prefix of that order whose smaller
model fits the budget. The cost of each candidate model is computed from
the layer formulas (`layer_rules`, through `cost.py`) and the calls the
channel graph recorded, without building it; the cost is monotone in the
number of channels removed, so a binary search finds the prefix.

Tightness: the plan removes k channels; its model fits the budget and the
plan with k - 1 (the k-th channel of the order put back, with its group's
`round_to` rounding) does not. Both costs are in `plan.settings["cost"]`.
"""

import math
import numbers

from keras_prune.structured.cost import call_macs
from keras_prune.structured.cost import cost_of_calls
from keras_prune.structured.cost import layer_params
from keras_prune.structured.layer_rules import ATTENTION_INPUTS
from keras_prune.structured.layer_rules import NotCounted
from keras_prune.structured.plan import PruningPlan
from keras_prune.structured.plan import model_signature
from keras_prune.structured.planners.common import check_settings
from keras_prune.structured.planners.common import decide
from keras_prune.structured.planners.common import removal_order
from keras_prune.structured.planners.common import round_kept
from keras_prune.structured.planners.common import scored_records


def check_target(name, value):
    """ValueError unless `value` is None, a positive int or a float in
    (0, 1]; `name` is the argument's name."""
    if value is None:
        return
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or value <= 0):
        raise ValueError(
            f"{name} must be a positive int (an absolute count) or a float "
            f"in (0, 1] (a fraction of the model's), got {value!r}."
        )
    if not isinstance(value, numbers.Integral) and value > 1:
        raise ValueError(
            f"{name}={value!r}: a float is a fraction of the model's count "
            f"and must be in (0, 1]; for an absolute count pass an int "
            f"({name}={int(value)})."
        )


def absolute_budget(value, original):
    """A target as an absolute count: an int as is, a float as a fraction
    of `original` (rounded down); None stays None."""
    if value is None:
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    return int(math.floor(value * original))


class _Coster:
    """Params and MACs of the model with some groups' channels cut, from
    the layer formulas (no model is built)."""

    def __init__(self, model, graph, records, need_macs):
        self.graph = graph
        self.calls = graph.calls
        self.cost = cost_of_calls(model.name, self.calls)
        self.need_macs = need_macs
        self.sizes = {r["id"]: r["size"] for r in records}
        self.affected = {}  # path -> (params, macs) at full size
        self.why_not = {}   # group id -> why it cannot be costed

    def check_group(self, record):
        """True if every layer of the group can be costed at new sizes."""
        for path in dict.fromkeys(m[0] for m in record["members"]):
            if path in self.affected:
                continue
            reason = self._check_layer(path)
            if reason:
                self.why_not[record["id"]] = reason
                return False
        return True

    def _check_layer(self, path):
        layer = self.calls[path][0]
        params, macs = self.layer_cost(path, self.sizes)
        name = f"{type(layer).__name__} {path!r}"
        if params is None or params != self.cost.layer(path).params:
            return (f"kept: the parameters of {name} have no formula (only "
                    "the layers pruning resizes, unquantized and without "
                    "LoRA)")
        if self.need_macs and macs is None:
            return (f"kept: the MACs of {name} are not counted "
                    f"({self.cost.layer(path).note})")
        self.affected[path] = (params, macs)
        return None

    def _count(self, channel_map, counts):
        segments, tile = channel_map
        return tile * sum(
            n if gid is None else counts[self.graph.group(gid).id]
            for gid, n in segments)

    def layer_cost(self, path, counts):
        """`(params, macs)` of one layer for `counts` (group id -> kept)."""
        layer, calls = self.calls[path]
        graph = self.graph
        n_in = n_out = None
        if path in graph.input_maps:
            n_in = self._count(graph.input_maps[path], counts)
        if path in graph.output_maps:
            n_out = self._count(graph.output_maps[path], counts)
        attention = graph.attention.get(path)
        params, macs = None, 0
        for ins, outs, arguments in calls:
            ins, outs, arguments = list(ins), list(outs), dict(arguments)
            if attention is not None:
                for k in ATTENTION_INPUTS:
                    shape = arguments.get(k) or arguments["value"]
                    arguments[k] = shape[:-1] + (
                        self._count(attention[k], counts),)
                arguments["heads"] = counts[
                    graph.group(attention["heads"]).id]
            elif n_in is not None and ins:
                ins[0] = ins[0][:-1] + (n_in,)
            if n_out is not None and outs:
                outs[0] = outs[0][:-1] + (n_out,)
            if params is None and ins and outs:
                params = layer_params(layer, ins[0], outs[0], arguments)
            if macs is not None:
                try:
                    macs += call_macs(layer, ins, outs, arguments)[0]
                except NotCounted:
                    macs = None
        return params, macs

    def total(self, counts):
        """`(params, macs)` of the whole model for `counts`; macs is None
        when a resized layer's MACs cannot be counted."""
        params, macs = self.cost.params, self.cost.macs
        for path, (params0, macs0) in self.affected.items():
            p, m = self.layer_cost(path, counts)
            params += p - params0
            if macs is not None and m is not None and macs0 is not None:
                macs += m - macs0
            else:
                macs = None
        return params, macs


def plan_for_budget(model, target_params=None, target_macs=None,
                    criterion="l2", round_to=None, ignored_layers=(),
                    scope="global", reduction="mean", normalizer="max",
                    seed=0, data=None, loss=None, batch_size=32,
                    rounding="up"):
    """A `PruningPlan` whose smaller model fits a parameter and/or MAC budget.

    Channels are removed in order, least important first, until the smaller
    model's parameters (all weights, as `model.count_params()`) and MACs
    (one sample, as `model_cost`) are both within the budget; no fewer
    removals would do (see the module's tightness note). Every group keeps
    at least one channel, `round_to` rounds each group's kept count up (or
    to the nearest multiple, `rounding="nearest"`; the order continues
    until the rounded model fits), and blocked or
    ignored groups stay whole. MACs of layers `model_cost` cannot count are
    not in the totals (`plan.settings["cost"]["uncounted"]` names them).

    Args:
        model: a built Functional or Sequential model (not modified).
        target_params: int = absolute parameter count; float in (0, 1] =
            fraction of the model's parameters.
        target_macs: int = absolute MACs per sample; float in (0, 1] =
            fraction of the model's.
        criterion, round_to, ignored_layers, reduction, normalizer, seed,
            data, loss, batch_size, rounding: as for `plan_pruning`.
        scope: `"global"` (the order is the normalized score over all
            groups) or `"layer"` (the same fraction of every group).

    Returns:
        A `PruningPlan`; every decided channel's rule names the budget, and
        `settings["cost"]` holds the original, planned and one-step-less
        costs.

    Raises:
        ValueError: for a bad target, or a budget below the smallest model
            the plan can make (the message gives that model's cost).

    Example:

    ```python
    plan = plan_for_budget(model, target_macs=0.5)  # half the MACs
    small = apply_plan(model, plan)
    assert model_cost(small).macs <= plan.settings["cost"]["budget"]["macs"]
    ```
    """
    if target_params is None and target_macs is None:
        raise ValueError(
            "plan_for_budget needs target_params or target_macs (an int "
            "count or a float fraction of the model's)."
        )
    check_target("target_params", target_params)
    check_target("target_macs", target_macs)
    found = check_settings(criterion, round_to, scope, reduction, normalizer,
                           data, loss, model, batch_size, rounding)
    graph, ignored, records = scored_records(
        model, found, reduction, normalizer, seed, ignored_layers, data,
        loss, batch_size)
    coster = _Coster(model, graph, records, need_macs=target_macs is not None)
    budget = {
        "params": absolute_budget(target_params, coster.cost.params),
        "macs": absolute_budget(target_macs, coster.cost.macs),
    }
    candidates = []
    for r in records:
        if r["rule"][0] is not None:
            continue
        if coster.check_group(r):
            candidates.append(r)
        else:
            r["rule"] = [coster.why_not[r["id"]]] * r["size"]
    order = removal_order(candidates, scope)
    position = {(id(r), c): i for i, (r, c) in enumerate(order)}

    def counts(k):
        removed = {r["id"]: 0 for r in candidates}
        for r, _ in order[:k]:
            removed[r["id"]] += 1
        sizes = dict(coster.sizes)
        for r in candidates:
            sizes[r["id"]] = round_kept(r["size"] - removed[r["id"]],
                                        round_to, r["size"], rounding)
        return sizes

    def cost(k):
        params, macs = coster.total(counts(k))
        return {"params": params, "macs": macs}

    def fits(c):
        return all(budget[k] is None or c[k] <= budget[k] for k in budget)

    smallest = cost(len(order))
    if not fits(smallest):
        _unreachable(target_params, target_macs, budget, smallest, round_to,
                     len(records) - len(candidates))
    low, high = 0, len(order)
    while low < high:
        middle = (low + high) // 2
        if fits(cost(middle)):
            high = middle
        else:
            low = middle + 1
    k = low
    what = " and ".join(
        f"{name} <= {budget[name]:,}" for name in ("params", "macs")
        if budget[name] is not None)
    for r in candidates:
        n_keep = r["size"] - sum(1 for c in range(r["size"])
                                 if position.get((id(r), c), k) < k)

        def removed(c, r=r):
            return (f"budget {what}: among the {k} least important "
                    f"(step {position[(id(r), c)] + 1})")

        def kept(c, r=r):
            if (id(r), c) not in position:
                return "kept: most important of its group (one is kept)"
            return (f"kept: budget {what} met without it "
                    f"(step {position[(id(r), c)] + 1})")

        decide(r, n_keep, round_to, removed, kept, rounding)
    original = {"params": coster.cost.params, "macs": coster.cost.macs}
    settings = {
        "mode": "budget", "target_params": target_params,
        "target_macs": target_macs, "criterion": found.name,
        "round_to": round_to, "rounding": rounding,
        "ignored_layers": sorted(ignored),
        "scope": scope, "reduction": reduction, "normalizer": normalizer,
        "seed": seed, "removed": k,
        "cost": {
            "budget": budget,
            "original": original,
            "planned": cost(k),
            "one_step_less": cost(k - 1) if k > 0 else None,
            "uncounted": [c.path for c in coster.cost.uncounted],
        },
    }
    return PruningPlan(model.name, settings, records, model_signature(graph),
                       graph=graph)


def _unreachable(target_params, target_macs, budget, smallest, round_to,
                 whole):
    asked = ", ".join(
        f"{name}={value!r} ({budget[key]:,} {key})"
        for name, value, key in (("target_params", target_params, "params"),
                                 ("target_macs", target_macs, "macs"))
        if value is not None)
    reached = ", ".join(f"{smallest[key]:,} {key}" for key in budget
                        if budget[key] is not None)
    rounded = f", rounded to round_to={round_to}" if round_to else ""
    raise ValueError(
        f"The budget {asked} cannot be reached: the smallest model this "
        f"plan can make has {reached} (every prunable group down to one "
        f"channel{rounded}; groups that stay whole: {whole}, blocked, "
        "ignored or unscored). Raise the target, lower round_to, or unblock "
        "groups."
    )
