"""`PruningPlan`: which channels of every group are kept, and why.

A planner (`plan_pruning`, `plan_for_budget`, `plan_by_threshold`: the
`planners` package) scores every channel group of a model and decides,
channel by channel, keep or remove, recording the raw score, the normalized
score, the rank in its group and the rule that decided. The plan is plain
data: it prints as a table, saves to JSON and loads back, can be edited
(`keep`, `remove`) and is replayed with `apply_plan` on the same model.

A plan also holds the `ChannelGraph` it was made from (never saved): given
that same model, `apply_plan`, `verify` and `zeroed_reference` reuse it
instead of walking the model again.
"""

import collections
import json
import os
import re
import sys
import warnings

from keras_prune.analysis import plots
from keras_prune.structured.graph import channel_groups


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
        left_whole: `[layer path, class name, kernel weights, reason]` of
            each layer with kernels the walker does not follow (a custom
            layer, a grouped convolution): none of its channels is removed.

    Args:
        model_name, settings, groups, signature: the attributes.
        graph: the `ChannelGraph` the plan was made from, or None (a plan
            read from JSON); not part of the config.
        left_whole: the attribute; by default the graph's.
    """

    def __init__(self, model_name, settings, groups, signature, graph=None,
                 left_whole=None):
        self.model_name = model_name
        self.settings = dict(settings)
        self.groups = groups
        self.signature = signature
        self._graph = graph
        if left_whole is None:
            left_whole = [] if graph is None else [
                [path, *found] for path, found in graph.left_whole.items()]
        self.left_whole = [list(row) for row in left_whole]
        if graph is not None:
            self._warn_if_unprunable()

    def _warn_if_unprunable(self):
        """A plan that can remove nothing says so (a model whose layers the
        walker does not follow would otherwise get a plan of no effect)."""
        if any(not g["blocked"] for g in self.groups):
            return
        warnings.warn(
            f"Structured pruning can remove no channel of model "
            f"{self.model_name!r}: " + self._why_whole() + " "
            "plan.summary() gives every reason.",
            stacklevel=_outside_the_package(),
        )

    def _why_whole(self):
        parts = []
        if self.groups:
            parts.append(f"its {len(self.groups)} channel group(s) are "
                         "blocked")
        else:
            parts.append("it has no channel group")
        if self.left_whole:
            shown = ", ".join(f"{p!r} ({c})" for p, c, _, _ in
                              self.left_whole[:4])
            more = ("" if len(self.left_whole) <= 4
                    else f" and {len(self.left_whole) - 4} more")
            weights = sum(w for _, _, w, _ in self.left_whole)
            parts.append(f"{len(self.left_whole)} layer(s) holding "
                         f"{weights:,} kernel weights are not followed: "
                         f"{shown}{more}")
        return "; ".join(parts) + "."

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
        if self.left_whole:
            weights = sum(w for _, _, w, _ in self.left_whole)
            lines.append(f"Left whole, not followed ({weights:,} kernel "
                         "weights):")
            lines += [f"  {path} ({cls}, {w:,} weights): {why}"
                      for path, cls, w, why in self.left_whole]
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
            "left_whole": self.left_whole,
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

    def graph_for(self, model):
        """The `ChannelGraph` of `model`, checked against the plan.

        The plan's own graph when it still describes `model` (the same
        model object, same layers); otherwise `model`'s graph is built,
        checked with `check_model` and kept for the next call.

        Args:
            model: the model to replay the plan on.

        Returns:
            A `ChannelGraph`.

        Raises:
            ValueError: if `model` is not the model the plan was made for.
        """
        if self._graph is not None and self._graph.describes(model):
            return self._graph
        graph = channel_groups(model)
        self.check_model(graph)
        return graph

    def check_model(self, graph):
        """Raise if `graph`'s model is not the one the plan was made for.

        A graph that matches is kept (`graph_for` reuses it for its model).
        """
        signature = model_signature(graph)
        if signature == self.signature:
            self._graph = graph
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


def _outside_the_package():
    """The `stacklevel` of the first caller outside keras_prune (planners
    reach the plan through a varying number of calls)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def _why(group):
    """One line: how many channels each rule decided (scores left out)."""
    counts = collections.Counter(
        re.sub(r"(score|rank) \S+ | \(step \d+\)", lambda m: (
            m.group(1) + " " if m.group(1) else ""), rule)
        for rule in group["rule"]
    )
    return "; ".join(f"{n} {rule}" for rule, n in counts.most_common())
