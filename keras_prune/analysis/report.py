"""`SparsityReport`: per weight, is it prunable, why not, and how many zeros.

Works on any Keras model: a dense one (what *could* be pruned), one returned
by `prune_low_magnitude` (masks, targets) or one returned by `strip_pruning`
(the same zeros, plain layers). Only the model's real weights are listed; the
wrappers' masks, thresholds and step counters are pruning state, not weights.

Prunability is decided for the layer whose pruning rule applies, which is not
always the layer that owns the variable: an LSTM's kernel belongs to its
`LSTMCell` and a MultiHeadAttention's to its `query`/`key`/`value`
EinsumDense sub-layers, but the rule (and the pruning wrapper) is the LSTM's
or the attention layer's. That layer is the wrapped layer of an enclosing
`PruneLowMagnitude`, otherwise the outermost enclosing layer that
`registry.has_rule`.

Zeros in weights that are not prunable (a bias initialized to zero, a
Normalization layer's `count`) are reported as counts but never as pruning:
they are left out of the `prunable_*` totals and shown without a sparsity
percentage.

In a model that has pruning wrappers, a weight that the rules call prunable
but whose layer is not wrapped (left out with `exclude=`, `per_layer` or a
pruning policy) is reported as not prunable, reason "excluded": it stays
dense, so the `prunable_*` totals are those of the weights being pruned.

Renderings: `summary()` / `str()` (plain text), `to_rich()` (a Rich table,
needs `pip install rich`), `print_summary(rich=None)`, `to_dict()`,
`to_json()`.
"""

import io
import json
import math
import sys

import keras

from keras_prune.analysis.inventory import WeightSparsity  # noqa: F401 (public)
from keras_prune.analysis.inventory import collect
from keras_prune.analysis.inventory import global_scope


class SparsityReport:
    """Per-weight sparsity of a Keras model, saying what is prunable and why.

    Built from a model at one moment; it records numbers, it does not watch
    the model. Create a new report after training further.

    Totals: `prunable_*` count only prunable weights (kernels, embeddings,
    ...; in a pruned model, those being pruned). `all_*` count every weight,
    so zero biases, zero BatchNorm offsets and a Normalization layer's zero
    `count` do add zeros there: those zeros were not made by pruning.

    Args:
        model: any built Keras model or layer: dense, pruned (with
            `PruneLowMagnitude` wrappers) or stripped.
        prune_depthwise: for layers that are not wrapped, report depthwise
            kernels as prunable (as `prune_low_magnitude(...,
            prune_depthwise=True)` would prune them). Wrapped layers use
            their wrapper's own setting.

    Attributes:
        model_name: the model's name.
        weights: list of `WeightSparsity`, one per weight of the model (the
            variables in `model.weights` that a layer owns), in layer order.
        unprunable_layers: dict of layer name -> reason, for every layer that
            has weights but none of them prunable by the rules.
        excluded_layers: names of the layers with weights that the rules
            call prunable but that were left dense in this pruned model
            (`exclude=`, `per_layer`, a pruning policy); empty for a model
            without pruning wrappers.
        global_threshold: the threshold of `scope="global"` masks, or None.
        global_allocation: dict weight path -> mask sparsity of the
            `scope="global"` masks (empty without them).
        reconstruction: the `ReconstructionReport` of `prune_now` with
            calibration data (per-layer ||WX - W^X||^2 / ||WX||^2), else
            None.

    Example:

    ```python
    pruned = keras_prune.prune_low_magnitude(
        model, keras_prune.ConstantSparsity(0.7, 0))
    keras_prune.update_masks(pruned, 0)
    report = keras_prune.SparsityReport(pruned)
    print(report)
    report["dense/kernel"].sparsity  # 0.7
    report.prunable_sparsity  # 0.7
    report.print_summary(rich=True)  # a Rich table (pip install rich)
    ```
    """

    reconstruction = None

    def __init__(self, model, prune_depthwise=False):
        if not isinstance(model, keras.layers.Layer):
            raise TypeError(
                "SparsityReport expects a keras Model or Layer, got "
                f"{type(model).__name__}: {model!r}."
            )
        if not model.built:
            raise ValueError(
                f"Model {model.name!r} is not built, so it has no weights to "
                "report: give it an Input (or call it on data) first."
            )
        self.model_name = model.name
        self.weights = collect(model, bool(prune_depthwise))
        self.unprunable_layers = _unprunable_layers(self.weights)
        self.excluded_layers = _excluded_layers(self.weights)
        self.global_threshold, self.global_allocation = global_scope(model)

    @classmethod
    def from_model(cls, model, prune_depthwise=False):
        """Same as `SparsityReport(model, prune_depthwise)`.

        Args:
            model: any built Keras model or layer.
            prune_depthwise: see the class docstring.

        Returns:
            A `SparsityReport`.

        Example:

        ```python
        report = keras_prune.SparsityReport.from_model(model)
        ```
        """
        return cls(model, prune_depthwise=prune_depthwise)

    # ---- lookup ----------------------------------------------------------

    def __getitem__(self, path):
        for entry in self.weights:
            if entry.path == path:
                return entry
        raise KeyError(
            f"No weight with path {path!r} in model {self.model_name!r}; "
            f"paths are: {', '.join(e.path for e in self.weights)}."
        )

    def __iter__(self):
        return iter(self.weights)

    def __len__(self):
        return len(self.weights)

    @property
    def pruned(self):
        """Whether any weight is masked by a pruning wrapper."""
        return any(e.mask_sparsity is not None for e in self.weights)

    # ---- totals ----------------------------------------------------------

    @property
    def prunable_zeros(self):
        """Zeros in prunable weights."""
        return sum(e.zeros for e in self.weights if e.prunable)

    @property
    def prunable_total(self):
        """Number of entries in prunable weights."""
        return sum(e.total for e in self.weights if e.prunable)

    @property
    def prunable_sparsity(self):
        """`prunable_zeros / prunable_total` (0.0 when nothing is prunable)."""
        return _ratio(self.prunable_zeros, self.prunable_total)

    @property
    def all_zeros(self):
        """Zeros in all weights, including biases and statistics."""
        return sum(e.zeros for e in self.weights)

    @property
    def all_total(self):
        """Number of entries in all weights."""
        return sum(e.total for e in self.weights)

    @property
    def all_sparsity(self):
        """`all_zeros / all_total`; zero biases and statistics count here."""
        return _ratio(self.all_zeros, self.all_total)

    @property
    def nonzero(self):
        """Number of nonzero entries in all weights."""
        return self.all_total - self.all_zeros

    @property
    def compression_ratio(self):
        """`all_total / nonzero`: 1.0 for a dense model (inf if all zero)."""
        if self.nonzero == 0:
            return math.inf if self.all_total else 1.0
        return self.all_total / self.nonzero

    # ---- renderings ------------------------------------------------------

    def to_dict(self):
        """Returns the report as JSON-able plain types.

        Returns:
            A dict with keys "model", "weights" (one dict per weight, see
            `WeightSparsity.to_dict`), "unprunable_layers",
            "excluded_layers" and "totals". An infinite `compression_ratio`
            (all weights zero) is None.
        """
        ratio = self.compression_ratio
        return {
            "model": self.model_name,
            "weights": [e.to_dict() for e in self.weights],
            "unprunable_layers": dict(self.unprunable_layers),
            "excluded_layers": list(self.excluded_layers),
            "totals": {
                "prunable_zeros": self.prunable_zeros,
                "prunable_total": self.prunable_total,
                "prunable_sparsity": self.prunable_sparsity,
                "all_zeros": self.all_zeros,
                "all_total": self.all_total,
                "all_sparsity": self.all_sparsity,
                "nonzero": self.nonzero,
                "compression_ratio": None if math.isinf(ratio) else ratio,
            },
        }

    def to_json(self, indent=2):
        """Returns `to_dict()` as a JSON string.

        Args:
            indent: passed to `json.dumps`.

        Returns:
            A str that `json.loads` turns back into `to_dict()`.
        """
        return json.dumps(self.to_dict(), indent=indent)

    def summary(self):
        """Returns the plain-text table with the totals below it.

        Non-prunable weights show their zeros but no sparsity percentage: their
        zeros are not pruning. The "mask" (fraction of the mask that is off)
        and "target" (the schedule's sparsity at the last mask update)
        columns appear when the model has pruning wrappers.

        Returns:
            A str, one row per weight.

        Example:

        ```
        weight         layer   class   shape          zeros/total  sparsity  mask    target  prunable
        conv2d/kernel  conv2d  Conv2D  (3, 3, 1, 10)  63/90        70.0 %    70.0 %  70.0 %  yes
        conv2d/bias    conv2d  Conv2D  (10,)          10/10        -         -       -       no: bias
        ...

        prunable weights: 2583/3690 zero (70.0 %)
        all weights: 2624/3753 zero (69.9 %, incl. biases and statistics)
        nonzero weights: 1129 (compression ratio 3.32x)
        layers with nothing to prune:
          normalization: normalization statistic (running mean/variance/count)
        ```
        """
        header = self._header()
        rows = [header] + [self._cells(e) for e in self.weights]
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines = [
            "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
            for r in rows
        ]
        lines.append("")
        lines.extend(self._total_lines())
        return "\n".join(lines)

    def to_rich(self):
        """Returns the report as a `rich.table.Table` (totals in its caption).

        Needs the optional `rich` package (`pip install rich`).

        Returns:
            A `rich.table.Table`; print it with `rich.console.Console().print`.

        Raises:
            ImportError: if `rich` is not installed.

        Example:

        ```python
        import rich.console

        table = keras_prune.SparsityReport(model).to_rich()
        rich.console.Console().print(table)
        ```
        """
        try:
            from rich import box
            from rich.table import Table
            from rich.text import Text
        except ImportError as err:
            raise ImportError(
                "SparsityReport.to_rich needs the rich package: "
                "`pip install rich` (or use summary() for plain text)."
            ) from err
        table = Table(
            title=f"SparsityReport: {self.model_name}",
            caption="\n".join(self._total_lines()),
            caption_justify="left",
            box=box.SIMPLE_HEAD,
        )
        header = list(self._header())
        rows = [list(self._cells(e)) for e in self.weights]
        if all(e.path.split("/")[0] == e.layer for e in self.weights):
            # The layer column would repeat the paths' first part, and a
            # terminal is narrow.
            del header[1]
            for row in rows:
                del row[1]
        for name in header:
            # Numbers are never cut; on a narrow terminal the reasons wrap
            # and long names fold.
            table.add_column(
                name,
                justify="right" if name in _NUMERIC else "left",
                no_wrap=name in _NUMERIC or name == "shape",
                overflow="fold",
            )
        for entry, cells in zip(self.weights, rows):
            if entry.prunable:
                style = "green"
            elif entry.excluded:
                style = "yellow"
            else:
                style = "dim"
            table.add_row(*cells[:-1], Text(cells[-1], style=style))
        return table

    def print_summary(self, print_fn=None, rich=None):
        """Prints the report: a Rich table or plain text (`summary()`).

        Args:
            print_fn: function taking a str; defaults to `print` (plain) or
                a `rich.console.Console` (Rich). With a `print_fn`, a Rich
                table is rendered to text first.
            rich: True for a Rich table (needs `pip install rich`), False for
                plain text; None (default): Rich when the `rich` package is
                importable, no `print_fn` is given and stdout is a terminal.

        Raises:
            ImportError: if `rich=True` and `rich` is not installed.

        Example:

        ```python
        keras_prune.SparsityReport(model).print_summary()
        ```
        """
        if rich is None:
            rich = print_fn is None and _has_rich() and sys.stdout.isatty()
        if not rich:
            (print_fn or print)(self.summary())
            return
        table = self.to_rich()
        from rich.console import Console

        if print_fn is None:
            Console().print(table)
            return
        console = Console(file=io.StringIO(), record=True, width=_WIDE)
        console.print(table)
        print_fn(console.export_text().rstrip("\n"))

    def __str__(self):
        return self.summary()

    def __repr__(self):
        return (
            f"<SparsityReport {self.model_name!r}: {len(self.weights)} "
            f"weights, prunable {self.prunable_zeros:,}/{self.prunable_total:,} "
            f"zero ({_percent(self.prunable_sparsity)})>"
        )

    # ---- shared by the renderings ------------------------------------------

    def _header(self):
        # Under a global ranking the target is the model's, not each
        # layer's: the allocation below the table gives each layer's share.
        target = "target (global)" if self.global_allocation else "target"
        masks = ("mask", target) if self.pruned else ()
        return (
            ("weight", "layer", "class", "shape", "zeros/total", "sparsity")
            + masks
            + ("prunable",)
        )

    def _cells(self, entry):
        masks = ()
        if self.pruned:
            masks = (
                _optional_percent(entry.mask_sparsity),
                _optional_percent(entry.target),
            )
        return (
            (
                entry.path,
                entry.layer,
                entry.layer_class,
                str(entry.shape),
                f"{entry.zeros:,}/{entry.total:,}",
                _percent(entry.sparsity) if entry.prunable else "-",
            )
            + masks
            + ("yes" if entry.prunable else f"no: {entry.short_reason}",)
        )

    def _total_lines(self):
        lines = [
            f"prunable weights: {self.prunable_zeros:,}/"
            f"{self.prunable_total:,} zero ({_percent(self.prunable_sparsity)})",
            f"all weights: {self.all_zeros:,}/{self.all_total:,} zero "
            f"({_percent(self.all_sparsity)}, incl. biases and statistics)",
            f"nonzero weights: {self.nonzero:,} "
            f"(compression ratio {self.compression_ratio:.2f}x)",
        ]
        if self.global_allocation:
            lines.append(
                f"global threshold {self.global_threshold:.6g} "
                "(scope='global'): one ranking across the layers meets the "
                "target overall; each layer's sparsity and share of the zeros:"
            )
            zeros = {e.path: e.zeros for e in self.weights}
            for path, sparsity in self.global_allocation.items():
                share = zeros.get(path, 0) / max(self.prunable_zeros, 1)
                lines.append(
                    f"  {path}: {_percent(sparsity)} "
                    f"({zeros.get(path, 0):,} zeros, {_percent(share)} of all)"
                )
        if self.excluded_layers:
            excluded = [e for e in self.weights if e.excluded]
            lines.append(
                "left dense although prunable (excluded): "
                f"{', '.join(self.excluded_layers)} "
                f"({sum(e.total for e in excluded):,} weights, "
                f"{sum(e.zeros for e in excluded):,} zero)"
            )
        if self.unprunable_layers:
            lines.append("layers with nothing to prune:")
            for name, reasons in _layer_short_reasons(self.weights).items():
                lines.append(f"  {name}: {'; '.join(reasons)}")
        return lines


_NUMERIC = ("zeros/total", "sparsity", "mask", "target", "target (global)")

# Wide enough that a Rich table rendered to text for a `print_fn` (a log
# file, a test) is not wrapped to an 80-column terminal.
_WIDE = 200


def _has_rich():
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def _unprunable_layers(entries):
    """Layer name -> its distinct reasons joined by "; ", for layers with
    weights of which none is prunable (excluded layers are not listed)."""
    reasons, prunable = {}, set()
    for entry in entries:
        if entry.prunable or entry.excluded:
            prunable.add(entry.layer)
        elif entry.reason not in reasons.setdefault(entry.layer, []):
            reasons[entry.layer].append(entry.reason)
    return {
        name: "; ".join(found)
        for name, found in reasons.items()
        if name not in prunable
    }


def _excluded_layers(entries):
    """Names of the layers with excluded weights, in layer order."""
    return list(dict.fromkeys(e.layer for e in entries if e.excluded))


def _layer_short_reasons(entries):
    """Like `_unprunable_layers`, with the first clause of each reason."""
    names = _unprunable_layers(entries)
    short = {name: [] for name in names}
    for entry in entries:
        found = short.get(entry.layer)
        if found is not None and entry.short_reason not in found:
            found.append(entry.short_reason)
    return short


# ---- formatting ------------------------------------------------------------


def _percent(fraction):
    return f"{100 * fraction:.1f} %"


def _optional_percent(fraction):
    return "-" if fraction is None else _percent(fraction)


def _ratio(part, whole):
    return part / whole if whole else 0.0
