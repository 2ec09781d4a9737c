"""`PruningPlan`: which channels of every group are kept, and why.

`plan_pruning(model, ratio=...)` scores every channel group of the model and
decides, channel by channel, keep or remove, recording the raw score, the
normalized score, the rank in its group and the rule that decided. The plan
is plain data: it prints as a table, saves to JSON and loads back, can be
edited (`keep`, `remove`) and is replayed with `apply_plan` on the same model.
"""

import collections
import json
import math
import numbers
import os
import re

import numpy as np

from keras_prune.criteria import GRADIENTS
from keras_prune.criteria import WEIGHTS
from keras_prune.structured.choices import NORMALIZERS
from keras_prune.structured.choices import REDUCTIONS
from keras_prune.structured.choices import SCOPES
from keras_prune.structured.choices import check_choice
from keras_prune.structured.graph import channel_groups
from keras_prune.structured.importance import channel_criterion
from keras_prune.structured.importance import group_scores
from keras_prune.structured.importance import scoring_context
from keras_prune.structured.taylor import check_data
from keras_prune.structured.taylor import taylor_gradients


def model_signature(graph):
    """Layer path -> [class name, weight shapes]: what a plan is tied to."""
    return {
        path: [type(layer).__name__, [list(w.shape) for w in layer.weights]]
        for path, layer in graph.layers.items()
    }


class PruningPlan:
    """Per-channel keep/remove decisions for every channel group of a model.

    Attributes:
        model_name: the model the plan was made for.
        settings: the arguments that made it (criterion, ratio, ...).
        groups: list of dicts, one per `ChannelGroup`, with `id`, `name`,
            `size`, `members` (`[layer, role, offset, width, tile]`),
            `blocked` (reasons) and per channel the lists `raw`, `score`,
            `rank` (0 = most important), `keep` (bools) and `rule`.
        signature: layer path -> [class, weight shapes], checked on replay.
    """

    def __init__(self, model_name, settings, groups, signature):
        self.model_name = model_name
        self.settings = dict(settings)
        self.groups = groups
        self.signature = signature

    # --- reading -------------------------------------------------------

    def kept(self):
        """dict group id -> sorted kept channels."""
        return {
            g["id"]: [c for c, k in enumerate(g["keep"]) if k]
            for g in self.groups
        }

    def _group(self, group):
        for g in self.groups:
            if group in (g["id"], g["name"]):
                return g
        names = ", ".join(repr(g["name"]) for g in self.groups[:30])
        raise ValueError(
            f"No channel group {group!r} in the plan; its groups are: {names}."
        )

    def summary(self):
        """A text table: one row per group."""
        rows = [("group", "channels", "kept", "removed", "decided by")]
        for g in self.groups:
            kept = sum(g["keep"])
            rows.append((g["name"][:40], str(g["size"]), str(kept),
                         str(g["size"] - kept), _why(g)))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = [
            "  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4]
            for r in rows
        ]
        total = sum(g["size"] for g in self.groups)
        kept = sum(sum(g["keep"]) for g in self.groups)
        lines.append(f"{kept} of {total} channels kept "
                     f"({len(self.groups)} groups).")
        cost = self.settings.get("cost")
        if cost:
            for key in ("params", "macs"):
                planned = cost["planned"][key]
                if planned is None:
                    continue
                line = (f"{key}: {cost['original'][key]:,} -> {planned:,}")
                if cost["budget"][key] is not None:
                    line += f" (budget {cost['budget'][key]:,}"
                    less = cost["one_step_less"]
                    if less and less[key] is not None:
                        line += f"; one removal less: {less[key]:,}"
                    line += ")"
                lines.append(line + ".")
        return "\n".join(lines)

    def __str__(self):
        return self.summary()

    def plot(self, path, **kwargs):
        """`keras_prune.plots.plan_plot(self, path, **kwargs)`: each group's
        scores against its threshold, written to `path` (needs
        matplotlib)."""
        from keras_prune.analysis import plots

        return plots.plan_plot(self, path, **kwargs)

    # --- editing -------------------------------------------------------

    def keep(self, group, channels):
        """Keep `channels` of `group` (its id or name)."""
        self._edit(group, channels, True)

    def remove(self, group, channels):
        """Remove `channels` of `group` (its id or name)."""
        self._edit(group, channels, False)

    def _edit(self, group, channels, keep):
        g = self._group(group)
        if not keep and g["blocked"]:
            raise ValueError(
                f"Group {g['name']!r} cannot be pruned: "
                f"{'; '.join(g['blocked'])}."
            )
        for c in channels:
            if not 0 <= c < g["size"]:
                raise ValueError(
                    f"Group {g['name']!r} has {g['size']} channels; "
                    f"channel {c} does not exist."
                )
            g["keep"][c] = keep
            g["rule"][c] = "edited: kept" if keep else "edited: removed"
        if not any(g["keep"]):
            raise ValueError(
                f"Group {g['name']!r} would lose all its channels; keep at "
                "least one."
            )

    # --- JSON ----------------------------------------------------------

    def get_config(self):
        return {
            "model_name": self.model_name,
            "settings": self.settings,
            "groups": self.groups,
            "signature": self.signature,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def to_json(self, path=None):
        """The plan as a JSON string; also written to `path` if given."""
        text = json.dumps(self.get_config(), indent=1)
        if path is not None:
            with open(path, "w") as f:
                f.write(text)
        return text

    @classmethod
    def from_json(cls, text_or_path):
        """A plan from `to_json` output (a JSON string or a file path)."""
        text = text_or_path
        if isinstance(text, os.PathLike) or not text.lstrip().startswith("{"):
            with open(text_or_path) as f:
                text = f.read()
        return cls.from_config(json.loads(text))

    def check_model(self, graph):
        """Raise if `graph`'s model is not the one the plan was made for."""
        signature = model_signature(graph)
        if signature == self.signature:
            return
        for path in sorted(set(signature) | set(self.signature)):
            if signature.get(path) != self.signature.get(path):
                raise ValueError(
                    f"The plan was made for model {self.model_name!r} and "
                    f"does not match model {graph.model.name!r}: layer "
                    f"{path!r} is {signature.get(path)} in the model and "
                    f"{self.signature.get(path)} in the plan (class, weight "
                    "shapes). Make a new plan for this model."
                )


def _why(group):
    """One line: how many channels each rule decided (scores left out)."""
    counts = collections.Counter(
        re.sub(r"(score|rank) \S+ | \(step \d+\)", lambda m: (
            m.group(1) + " " if m.group(1) else ""), rule)
        for rule in group["rule"]
    )
    return "; ".join(f"{n} {rule}" for rule, n in counts.most_common())


def _resolve_ignored(graph, ignored_layers):
    paths = set()
    short = {}
    for path in graph.layers:
        short.setdefault(path.rsplit("/", 1)[-1], []).append(path)
    for name in ignored_layers:
        if not isinstance(name, str):
            name = getattr(name, "name", name)
        if name in graph.layers:
            paths.add(name)
        elif name in short:
            paths.update(short[name])
        else:
            names = list(graph.layers)
            shown = ", ".join(repr(n) for n in names[:30])
            more = "" if len(names) <= 30 else ", ..."
            raise ValueError(
                f"ignored_layers names the layer {name!r}, which is not in "
                f"the model. Its layers are: {shown}{more}."
            )
    return paths


def _round_up(n, round_to, size):
    if round_to is None:
        return n
    return min(size, int(math.ceil(n / round_to) * round_to))


def _check_settings(criterion, round_to, scope, reduction, normalizer,
                    data, loss, model, batch_size):
    """Every argument error, raised before any work; returns the channel
    `Criterion` named by `criterion`."""
    found = channel_criterion(criterion)
    if found.needs == GRADIENTS:
        check_data(data, loss, model, batch_size, found.name)
    elif found.needs != WEIGHTS:
        raise ValueError(
            f"criterion {found.name!r} needs {found.needs}, which structured "
            "planning cannot provide; use a criterion that needs the weights "
            "or gradients (data=, loss=)."
        )
    if round_to is not None and (
            not isinstance(round_to, numbers.Integral)
            or isinstance(round_to, bool) or round_to <= 0):
        raise ValueError(
            f"round_to must be None or a positive integer, got {round_to!r}."
        )
    check_choice("scope", scope, SCOPES)
    check_choice("reduction", reduction, REDUCTIONS)
    check_choice("normalizer", normalizer, NORMALIZERS)
    return found


def scored_records(model, criterion="l2", reduction="mean", normalizer="max",
                   seed=0, ignored_layers=(), data=None, loss=None,
                   batch_size=32):
    """The model's graph, the ignored layer paths and one plan record per
    group: scores and ranks filled in, every channel kept, and the rule set
    for the groups that stay whole (blocked, ignored, unscored). The groups
    still to decide have `rule[0] is None`."""
    if isinstance(ignored_layers, str):
        ignored_layers = [ignored_layers]
    criterion = channel_criterion(criterion)
    graph = channel_groups(model)
    ignored = _resolve_ignored(graph, ignored_layers)
    gradients = None
    if criterion.needs == GRADIENTS:
        gradients = taylor_gradients(model, data, loss, batch_size,
                                     criterion.name)
    context = scoring_context(graph, seed, gradients)
    records = []
    for group in graph.groups:
        raw, score = group_scores(graph, group, criterion, reduction,
                                  normalizer, context=context)
        record = {
            "id": group.id,
            "name": group.name,
            "size": group.size,
            "members": [[m.layer, m.role, m.offset, m.width, m.tile]
                        for m in group.members],
            "blocked": list(group.blocked),
            "raw": [None] * group.size if raw is None else raw.tolist(),
            "score": [None] * group.size if score is None else score.tolist(),
            "rank": [None] * group.size,
            "keep": [True] * group.size,
            "rule": [None] * group.size,
        }
        if score is not None:
            order = np.argsort(-score, kind="stable")
            record["rank"] = np.argsort(order, kind="stable").tolist()
        hit = sorted(ignored & set(group.producers))
        if group.blocked:
            reason = "blocked: " + "; ".join(group.blocked)
        elif hit:
            reason = f"ignored: layer {hit[0]!r} is in ignored_layers"
        elif score is None:
            reason = (f"unscored: no member gives a {criterion.name!r} "
                      "score")
        else:
            reason = None
        if reason:
            record["rule"] = [reason] * group.size
        records.append(record)
    return graph, ignored, records


def plan_pruning(model, ratio=None, criterion="l2", round_to=None,
                 ignored_layers=(), scope=None, reduction="mean",
                 normalizer="max", seed=0, *, target_params=None,
                 target_macs=None, data=None, loss=None, batch_size=32):
    """Decide which channels to remove: ratio mode or target (budget) mode.

    Ratio mode (`ratio`): every prunable group loses `floor(ratio * size)`
    channels (scope `"layer"`, the default), or the `floor(ratio * total)`
    lowest normalized scores over all prunable groups go (scope
    `"global"`, at least one channel kept per group). The kept count is
    then rounded UP to a multiple of `round_to` (never more removed than
    asked).

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
        criterion: `"l1"`, `"l2"`, `"bn"`, `"taylor"` (needs `data`),
            `"random"`, a registered channel criterion's name or a
            `ChannelCriterion` (`keras_prune.criteria.channel`).
        round_to: None, or a positive int: kept channels per group become a
            multiple of it (capped at the group size).
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

    Returns:
        A `PruningPlan`.

    Example:

    ```python
    plan = plan_pruning(model, ratio=0.5, round_to=8)
    print(plan.summary())
    small = apply_plan(model, plan)
    half = plan_pruning(model, target_macs=0.5)  # at most half the MACs
    ```
    """
    if target_params is not None or target_macs is not None:
        if ratio is not None:
            raise ValueError(
                f"plan_pruning: give ratio ({ratio!r}) or a target "
                f"(target_params={target_params!r}, "
                f"target_macs={target_macs!r}), not both."
            )
        from keras_prune.structured.budget import plan_for_budget

        return plan_for_budget(
            model, target_params=target_params, target_macs=target_macs,
            criterion=criterion, round_to=round_to,
            ignored_layers=ignored_layers,
            scope="global" if scope is None else scope,
            reduction=reduction, normalizer=normalizer, seed=seed, data=data,
            loss=loss, batch_size=batch_size)
    ratio = 0.5 if ratio is None else ratio
    if (not isinstance(ratio, numbers.Real) or isinstance(ratio, bool)
            or not 0 <= ratio < 1):
        raise ValueError(
            f"ratio must be a number in [0, 1) (the fraction of channels to "
            f"remove), got {ratio!r}."
        )
    return ratio_plan(model, ratio, criterion, round_to, ignored_layers,
                      "layer" if scope is None else scope, reduction,
                      normalizer, seed, data, loss, batch_size)


def ratio_plan(model, ratio, criterion="l2", round_to=None,
               ignored_layers=(), scope="layer", reduction="mean",
               normalizer="max", seed=0, data=None, loss=None, batch_size=32,
               base_sizes=None):
    """`plan_pruning`'s ratio mode, relative to other group sizes.

    `base_sizes` (dict group name -> channels, default: the model's own)
    are the sizes `ratio` applies to: `prune_iteratively` passes the
    original model's, so that step i of a smaller model removes what is
    left to reach `ratio` of the original (a group already at or below its
    share loses nothing).
    """
    _check_settings(criterion, round_to, scope, reduction, normalizer, data,
                    loss, model, batch_size)
    graph, ignored, records = scored_records(
        model, criterion, reduction, normalizer, seed, ignored_layers, data,
        loss, batch_size)
    base = {r["name"]: r["size"] for r in records}
    base.update(base_sizes or {})

    candidates = [r for r in records if r["rule"][0] is None]
    if scope == "layer":
        for r in candidates:
            size = base[r["name"]]
            target = max(1, size - int(math.floor(ratio * size)))
            n_keep = min(r["size"], target)
            why = f"ratio {ratio}: not in the top {target} of {size}"
            _decide(r, n_keep, round_to, lambda c, why=why: why)
    else:
        total = sum(base[r["name"]] for r in candidates)
        target = total - int(math.floor(ratio * total))
        n_remove = max(0, sum(r["size"] for r in candidates) - target)
        _global(candidates, n_remove, round_to, f"global ratio {ratio}")

    settings = {"mode": "ratio", "ratio": ratio, "criterion": criterion,
                "round_to": round_to, "ignored_layers": sorted(ignored),
                "scope": scope, "reduction": reduction,
                "normalizer": normalizer, "seed": seed}
    if base_sizes:
        settings["base_sizes"] = dict(base_sizes)
    return PruningPlan(model.name, settings, records,
                       model_signature(graph))


def _decide(record, n_keep, round_to, why_removed, why_kept=None):
    """Keep the top `n_keep` (rounded up); `why_removed(channel)` -> text."""
    rounded = _round_up(n_keep, round_to, record["size"])
    for c, rank in enumerate(record["rank"]):
        if rank < n_keep:
            record["rule"][c] = why_kept(c) if why_kept else (
                f"kept: rank {rank} < {n_keep}")
        elif rank < rounded:
            record["rule"][c] = (f"kept: {n_keep} rounded up to {rounded} "
                                 f"(round_to={round_to})")
        else:
            record["keep"][c] = False
            record["rule"][c] = f"removed: {why_removed(c)}"


def removal_order(candidates, scope):
    """`[(record, channel)]`: the order channels go, least important first.

    Every group's most important channel (rank 0) is left out: a group
    keeps at least one. Scope `"global"` orders by normalized score (ties:
    the group's own ranking); `"layer"` by the fraction of its group a
    channel's removal reaches, `(size - rank) / size`, so that removing
    the first k channels is a uniform ratio over the groups.
    """
    entries = []
    for r in candidates:
        size = r["size"]
        for c, rank in enumerate(r["rank"]):
            if rank == 0:
                continue
            key = r["score"][c] if scope == "global" else (
                (size - rank) / size)
            entries.append((key, -rank, r["id"], c, r))
    entries.sort(key=lambda e: e[:4])
    return [(e[4], e[3]) for e in entries]


def _global(candidates, n_remove, round_to, what):
    """Remove the `n_remove` lowest normalized scores over `candidates`."""
    if not candidates:
        return
    order = removal_order(candidates, "global")
    removed = collections.Counter(id(r) for r, _ in order[:n_remove])
    threshold = -np.inf
    if n_remove > 0 and order:
        last, c = order[min(n_remove, len(order)) - 1]
        threshold = last["score"][c]
    for r in candidates:
        n_keep = r["size"] - removed[id(r)]
        _decide(r, n_keep, round_to,
                lambda c, r=r: f"{what}: normalized score "
                               f"{r['score'][c]:.4g} <= {threshold:.4g}")
