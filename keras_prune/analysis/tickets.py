"""What an iterative-magnitude-pruning search found: `LotteryResult`.

One `TicketRound` per training run of `keras_prune.find_ticket`: the
fraction of prunable weights still there, what the model scored on the
validation data, the masks (and, when asked, the trained weights). A result
prints as a table, plots as accuracy against the fraction remaining (several
results on one figure: `keras_prune.plots.ticket_plot`) and round-trips
through JSON (`to_json` / `from_json`; masks as packed bits).
"""

import base64
import json
import os

import numpy as np

from keras_prune.analysis import plots

_FORMAT = "keras_prune.LotteryResult/1"


class TicketRound:
    """One round of a search: its masks, sparsity and scores.

    Attributes:
        index: 0 for the dense run, then 1, 2, ... (one pruning each).
        kept, total: prunable weights kept and in all.
        layers: `{weight: (kept, total)}` per prunable weight.
        metrics: what `evaluate` returned on the validation data
            (`{"loss": ..., "accuracy": ...}`).
        learning_rate_start: the optimizer's learning rate at the round's
            first step (what the rewinding chose).
        steps: optimizer steps the round trained.
        seconds_train, seconds_prune: wall time of the training (fit and
            evaluate) and of the pruning and reset before it.
        masks: `{weight: bool array}` or None (not kept).
        weights: `{layer name: [arrays]}` after training, or None.
    """

    def __init__(self, index, kept, total, layers, metrics,
                 learning_rate_start, steps, seconds_train, seconds_prune,
                 masks=None, weights=None):
        self.index = int(index)
        self.kept = int(kept)
        self.total = int(total)
        self.layers = {k: (int(a), int(b)) for k, (a, b) in layers.items()}
        self.metrics = {k: float(v) for k, v in metrics.items()}
        self.learning_rate_start = float(learning_rate_start)
        self.steps = int(steps)
        self.seconds_train = float(seconds_train)
        self.seconds_prune = float(seconds_prune)
        self.masks = masks
        self.weights = weights

    @property
    def remaining(self):
        """The fraction of prunable weights kept (1.0 for the dense run)."""
        return self.kept / self.total

    def to_dict(self):
        found = {
            "index": self.index, "kept": self.kept, "total": self.total,
            "layers": {k: list(v) for k, v in self.layers.items()},
            "metrics": self.metrics,
            "learning_rate_start": self.learning_rate_start,
            "steps": self.steps, "seconds_train": self.seconds_train,
            "seconds_prune": self.seconds_prune,
        }
        if self.masks is not None:
            found["masks"] = {k: _pack_mask(m) for k, m in self.masks.items()}
        if self.weights is not None:
            found["weights"] = {
                k: [_pack_array(a) for a in arrays]
                for k, arrays in self.weights.items()
            }
        return found

    @classmethod
    def from_dict(cls, found):
        masks = found.get("masks")
        weights = found.get("weights")
        return cls(
            found["index"], found["kept"], found["total"], found["layers"],
            found["metrics"], found["learning_rate_start"], found["steps"],
            found["seconds_train"], found["seconds_prune"],
            masks=None if masks is None else {
                k: _unpack_mask(m) for k, m in masks.items()},
            weights=None if weights is None else {
                k: [_unpack_array(a) for a in arrays]
                for k, arrays in weights.items()},
        )


class LotteryResult:
    """The rounds of one search (`keras_prune.find_ticket`).

    Attributes:
        label: what the run was, e.g. "rewind=init" or "control=reinit";
            the plot's legend.
        settings: the search's arguments (rate, scope, rewind, recipe...).
        rounds: `TicketRound`s, the dense run first.
        ticket: the last round's trained model, pruned with its masks held
            (`FixedMasks`: `strip_pruning` it to ship), or None after
            `from_json`.

    Example:

    ```python
    print(result)                      # one row per round
    result.plot("lottery.png")         # accuracy vs weights remaining
    again = LotteryResult.from_json(result.to_json())
    ```
    """

    def __init__(self, label, settings, rounds, ticket=None):
        self.label = str(label)
        self.settings = dict(settings)
        self.rounds = list(rounds)
        self.ticket = ticket

    @property
    def remaining(self):
        """The fraction of prunable weights kept, per round."""
        return [r.remaining for r in self.rounds]

    def metric(self, name="accuracy"):
        """One metric per round; a KeyError names those recorded."""
        missing = [r.index for r in self.rounds if name not in r.metrics]
        if missing:
            known = sorted(self.rounds[0].metrics) if self.rounds else []
            raise KeyError(
                f"metric {name!r} is not recorded (rounds {missing}); "
                f"recorded: {known}."
            )
        return [r.metrics[name] for r in self.rounds]

    def __str__(self):
        names = sorted({k for r in self.rounds for k in r.metrics})
        header = ["round", "remaining", "kept"] + names + [
            "lr at start", "train s", "prune s"]
        rows = [header]
        for r in self.rounds:
            rows.append(
                [str(r.index), f"{100 * r.remaining:.2f} %",
                 f"{r.kept:,}/{r.total:,}"]
                + [f"{r.metrics[n]:.4f}" if n in r.metrics else "-"
                   for n in names]
                + [f"{r.learning_rate_start:.3g}", f"{r.seconds_train:.1f}",
                   f"{r.seconds_prune:.3f}"]
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = [f"LotteryResult {self.label}"]
        for row in rows:
            lines.append("  ".join(c.rjust(w) for c, w in zip(row, widths)))
        return "\n".join(lines)

    def __repr__(self):
        return (f"<LotteryResult {self.label}: {len(self.rounds)} rounds, "
                f"{100 * self.rounds[-1].remaining:.2f} % remaining>"
                if self.rounds else f"<LotteryResult {self.label}: empty>")

    def plot(self, path, others=(), metric="accuracy", title=None):
        """Writes `metric` vs weights remaining for this result and `others`
        (`keras_prune.plots.ticket_plot`); returns `path`."""
        return plots.ticket_plot([self, *others], path, metric, title)

    def to_dict(self):
        return {
            "format": _FORMAT, "label": self.label,
            "settings": self.settings,
            "rounds": [r.to_dict() for r in self.rounds],
        }

    def to_json(self, path=None):
        """The result as JSON text; written (atomically) to `path` too when
        given. The ticket model is not included: save it with
        `ticket.save(...)`."""
        text = json.dumps(self.to_dict())
        if path is not None:
            plots.write_atomically(path, text.encode("utf-8"))
        return text

    @classmethod
    def from_dict(cls, found):
        if found.get("format") != _FORMAT:
            raise ValueError(
                f"not a LotteryResult: format {found.get('format')!r}, "
                f"expected {_FORMAT!r}."
            )
        return cls(found["label"], found["settings"],
                   [TicketRound.from_dict(r) for r in found["rounds"]])

    @classmethod
    def from_json(cls, text_or_path):
        """A result from `to_json`'s text or a file holding it."""
        text = text_or_path
        if isinstance(text, os.PathLike) or (
                isinstance(text, str) and not text.lstrip().startswith("{")):
            with open(text, encoding="utf-8") as file:
                text = file.read()
        return cls.from_dict(json.loads(text))


def _pack_mask(mask):
    mask = np.asarray(mask, dtype=bool)
    return {"shape": list(mask.shape),
            "bits": base64.b64encode(np.packbits(mask.reshape(-1))).decode()}


def _unpack_mask(found):
    shape = tuple(found["shape"])
    bits = np.frombuffer(base64.b64decode(found["bits"]), dtype=np.uint8)
    size = int(np.prod(shape))
    return np.unpackbits(bits, count=size).astype(bool).reshape(shape)


def _pack_array(array):
    array = np.ascontiguousarray(array)
    return {"shape": list(array.shape), "dtype": array.dtype.str,
            "data": base64.b64encode(array.tobytes()).decode()}


def _unpack_array(found):
    data = base64.b64decode(found["data"])
    return np.frombuffer(data, dtype=np.dtype(found["dtype"])).reshape(
        tuple(found["shape"])).copy()
