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

from keras_prune.structured.graph import channel_groups
from keras_prune.structured.importance import group_scores

SCOPES = ("layer", "global")


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
        return "\n".join(lines)

    def __str__(self):
        return self.summary()

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
        re.sub(r"(score|rank) \S+ ", r"\1 ", rule) for rule in group["rule"]
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


def plan_pruning(model, ratio=0.5, criterion="l2", round_to=None,
                 ignored_layers=(), scope="layer", reduction="mean",
                 normalizer="max", seed=0):
    """Decide which channels to remove, in ratio mode.

    Every prunable group loses `floor(ratio * size)` channels (scope
    `"layer"`), or the `floor(ratio * total)` lowest normalized scores over
    all prunable groups go (scope `"global"`, at least one channel kept per
    group). The kept count is then rounded UP to a multiple of `round_to`
    (never more removed than asked). Groups the graph walker cannot follow,
    and groups produced by an ignored layer, keep every channel.

    Args:
        model: a built Functional or Sequential model (not modified).
        ratio: fraction of channels to remove, in [0, 1).
        criterion: `"l1"`, `"l2"`, `"bn"` or `"random"` (see importance).
        round_to: None, or a positive int: kept channels per group become a
            multiple of it (capped at the group size).
        ignored_layers: layer names (or layers) whose output channels are
            never pruned.
        scope: `"layer"` (same ratio in every group) or `"global"`.
        reduction: `"mean"`, `"sum"` or `"max"` over a group's members.
        normalizer: `"max"`, `"l2"` or `"off"`.
        seed: for `criterion="random"`.

    Returns:
        A `PruningPlan`.

    Example:

    ```python
    plan = plan_pruning(model, ratio=0.5, round_to=8)
    print(plan.summary())
    small = apply_plan(model, plan)
    ```
    """
    if (not isinstance(ratio, numbers.Real) or isinstance(ratio, bool)
            or not 0 <= ratio < 1):
        raise ValueError(
            f"ratio must be a number in [0, 1) (the fraction of channels to "
            f"remove), got {ratio!r}."
        )
    if round_to is not None and (
            not isinstance(round_to, numbers.Integral) or round_to <= 0):
        raise ValueError(
            f"round_to must be None or a positive integer, got {round_to!r}."
        )
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}.")
    if isinstance(ignored_layers, str):
        ignored_layers = [ignored_layers]
    graph = channel_groups(model)
    ignored = _resolve_ignored(graph, ignored_layers)

    records = []
    for group in graph.groups:
        raw, score = group_scores(graph, group, criterion, reduction,
                                  normalizer, seed)
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
            reason = f"unscored: no member gives a {criterion!r} score"
        else:
            reason = None
        if reason:
            record["rule"] = [reason] * group.size
        records.append(record)

    candidates = [r for r in records if r["rule"][0] is None]
    if scope == "layer":
        for r in candidates:
            n_keep = max(1, r["size"] - int(math.floor(ratio * r["size"])))
            why = f"ratio {ratio}: not in the top {n_keep} of {r['size']}"
            _decide(r, n_keep, round_to, lambda c, why=why: why)
    else:
        _global(candidates, ratio, round_to)

    return PruningPlan(
        model.name,
        {"mode": "ratio", "ratio": ratio, "criterion": criterion,
         "round_to": round_to, "ignored_layers": sorted(ignored),
         "scope": scope, "reduction": reduction, "normalizer": normalizer,
         "seed": seed},
        records,
        model_signature(graph),
    )


def _decide(record, n_keep, round_to, why_removed):
    """Keep the top `n_keep` (rounded up); `why_removed(channel)` -> text."""
    rounded = _round_up(n_keep, round_to, record["size"])
    for c, rank in enumerate(record["rank"]):
        if rank < n_keep:
            record["rule"][c] = f"kept: rank {rank} < {n_keep}"
        elif rank < rounded:
            record["rule"][c] = (f"kept: {n_keep} rounded up to {rounded} "
                                 f"(round_to={round_to})")
        else:
            record["keep"][c] = False
            record["rule"][c] = f"removed: {why_removed(c)}"


def _global(candidates, ratio, round_to):
    if not candidates:
        return
    scores = np.concatenate([r["score"] for r in candidates])
    n_remove = int(math.floor(ratio * scores.size))
    if n_remove == 0:
        threshold = -np.inf
    else:
        threshold = np.partition(scores, n_remove - 1)[n_remove - 1]
    # Ties at the threshold: remove only as many as asked, lowest first.
    below = int((scores < threshold).sum())
    ties_left = n_remove - below
    for r in candidates:
        score = np.asarray(r["score"])
        removed = score < threshold
        for c in np.flatnonzero(score == threshold):
            if ties_left > 0:
                removed[c] = True
                ties_left -= 1
        n_keep = max(1, r["size"] - int(removed.sum()))
        _decide(r, n_keep, round_to,
                lambda c, r=r: f"global ratio {ratio}: normalized score "
                               f"{r['score'][c]:.4g} <= {threshold:.4g}")
