"""What the planners share: settings checks, scoring, ordering, rounding.

Every planner builds one plan record per channel group (`new_record`),
scores it (`scored_records`), orders the removable channels
(`removal_order`) and decides each one (`decide`), rounding kept counts to
a multiple of `round_to`, up or to the nearest (`round_kept`).
"""

import collections
import math
import numbers

import numpy as np

from keras_prune.criteria import GRADIENTS
from keras_prune.criteria import WEIGHTS
from keras_prune.structured.choices import NORMALIZERS
from keras_prune.structured.choices import REDUCTIONS
from keras_prune.structured.choices import ROUNDINGS
from keras_prune.structured.choices import SCOPES
from keras_prune.structured.choices import check_choice
from keras_prune.structured.graph import channel_groups
from keras_prune.structured.importance import channel_criterion
from keras_prune.structured.importance import group_scores
from keras_prune.structured.importance import scoring_context
from keras_prune.structured.taylor import check_data
from keras_prune.structured.taylor import taylor_gradients


def check_ratio(ratio):
    """ValueError unless `ratio` is a number in [0, 1)."""
    if (not isinstance(ratio, numbers.Real) or isinstance(ratio, bool)
            or not 0 <= ratio < 1):
        raise ValueError(
            f"ratio must be a number in [0, 1) (the fraction of channels to "
            f"remove), got {ratio!r}."
        )


def check_settings(criterion, round_to, scope, reduction, normalizer,
                   data, loss, model, batch_size, rounding="up"):
    """Every argument error, raised before any work.

    Returns:
        The channel `Criterion` named by `criterion`.
    """
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
    check_choice("rounding", rounding, ROUNDINGS)
    check_choice("scope", scope, SCOPES)
    check_choice("reduction", reduction, REDUCTIONS)
    check_choice("normalizer", normalizer, NORMALIZERS)
    return found


def resolve_ignored(graph, ignored_layers, argument="ignored_layers"):
    """The layer paths named by `ignored_layers` (names, paths or layers).

    Args:
        graph: the model's `ChannelGraph`.
        ignored_layers: what the user gave.
        argument: the argument's name, for the message.

    Raises:
        ValueError: naming the model's layers, for a name not in it.
    """
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
                f"{argument} names the layer {name!r}, which is not in "
                f"the model. Its layers are: {shown}{more}."
            )
    return paths


def round_kept(n, round_to, size, rounding="up"):
    """`n` kept channels rounded to a multiple of `round_to` (None: as is),
    at most `size`: up, or to the nearest multiple (ties up, at least
    `round_to`)."""
    if round_to is None:
        return n
    if rounding == "nearest":
        multiple = max(1, int(math.floor(n / round_to + 0.5)))
    else:
        multiple = int(math.ceil(n / round_to))
    return min(size, multiple * round_to)


def new_record(group):
    """A plan record of a `ChannelGroup`: every channel kept, nothing
    scored or decided yet."""
    size = group.size
    return {
        "id": group.id,
        "name": group.name,
        "size": size,
        "members": [[m.layer, m.role, m.offset, m.width, m.tile]
                    for m in group.members],
        "blocked": list(group.blocked),
        "raw": [None] * size,
        "score": [None] * size,
        "rank": [None] * size,
        "keep": [True] * size,
        "rule": [None] * size,
    }


def scored_records(model, criterion, reduction="mean", normalizer="max",
                   seed=0, ignored_layers=(), data=None, loss=None,
                   batch_size=32, graph=None):
    """The model's graph, the ignored layer paths and one plan record per
    group: scores and ranks filled in, every channel kept, and the rule set
    for the groups that stay whole (blocked, ignored, unscored). The groups
    still to decide have `rule[0] is None`.

    Args:
        model: the model.
        criterion: a channel `Criterion` (`check_settings` returns it).
        reduction, normalizer, seed, ignored_layers, data, loss,
            batch_size: as for `plan_pruning`.
        graph: the model's `ChannelGraph` if already built.
    """
    if isinstance(ignored_layers, str):
        ignored_layers = [ignored_layers]
    if graph is None:
        graph = channel_groups(model)
    ignored = resolve_ignored(graph, ignored_layers)
    gradients = None
    if criterion.needs == GRADIENTS:
        gradients = taylor_gradients(model, data, loss, batch_size,
                                     criterion.name)
    context = scoring_context(graph, seed, gradients)
    records = []
    for group in graph.groups:
        raw, score = group_scores(graph, group, criterion, reduction,
                                  normalizer, context=context)
        record = new_record(group)
        if raw is not None:
            record["raw"] = raw.tolist()
            record["score"] = score.tolist()
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


def decide(record, n_keep, round_to, why_removed, why_kept=None,
           rounding="up"):
    """Keep the top `n_keep`, rounded (`round_kept`);
    `why_removed(channel)` -> text."""
    rounded = round_kept(n_keep, round_to, record["size"], rounding)
    how = "up" if rounded > n_keep else "down"
    setting = f"round_to={round_to}" + (
        ", rounding='nearest'" if rounding == "nearest" else "")
    for c, rank in enumerate(record["rank"]):
        if rank < min(n_keep, rounded):
            record["rule"][c] = why_kept(c) if why_kept else (
                f"kept: rank {rank} < {n_keep}")
        elif rank < rounded:
            record["rule"][c] = (f"kept: {n_keep} rounded up to {rounded} "
                                 f"({setting})")
        elif rank < n_keep:
            record["keep"][c] = False
            record["rule"][c] = (f"removed: {n_keep} rounded {how} to "
                                 f"{rounded} ({setting})")
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


def remove_lowest(candidates, n_remove, round_to, what, rounding="up"):
    """Remove the `n_remove` lowest normalized scores over `candidates`
    (scope `"global"`), each group keeping at least one channel."""
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
        decide(r, n_keep, round_to,
               lambda c, r=r: f"{what}: normalized score "
                              f"{r['score'][c]:.4g} <= {threshold:.4g}",
               rounding=rounding)
