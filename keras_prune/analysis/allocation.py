"""`SensitivityResult`: metric vs sparsity per layer, and the per-layer
allocation it suggests for a target overall sparsity.

`sensitivity_analysis` (analysis/sensitivity.py) measures the table; this
module holds it, renders it (text, dict, plot) and allocates: the greedy
allocation spends the sparsity where the measured curves say it costs least
(linear interpolation between the measured sparsities).
"""

import math
import numbers

from keras_prune.analysis import plots
from keras_prune.core import patterns


class SensitivityResult:
    """Metric vs sparsity for each layer pruned alone, and an allocation.

    Built by `sensitivity_analysis`, or from its `to_dict()` with
    `from_dict` (to allocate again without re-evaluating).

    Args:
        metric_name: the metric's name, e.g. "accuracy".
        higher_is_better: whether a larger metric value is better.
        baseline: the metric of the unpruned model.
        sparsities: the sparsities tried, increasing, each in [0, 1).
        table: dict layer name -> sequence of metric values, one per
            sparsity, in the order of `sparsities`; dict order = layer order.
        num_params: dict layer name -> number of prunable weights.

    Attributes:
        metric_name, higher_is_better, baseline, sparsities (tuple),
        layers (tuple of names, model order), num_params (dict).

    Example:

    ```python
    result = SensitivityResult("accuracy", True, 0.96, (0.5, 0.9),
                               {"a": [0.96, 0.95], "b": [0.9, 0.5]},
                               {"a": 1000, "b": 100})
    result.allocate(0.5)  # {"a": 0.55, "b": 0.0}
    ```
    """

    def __init__(
        self,
        metric_name,
        higher_is_better,
        baseline,
        sparsities,
        table,
        num_params,
    ):
        self.metric_name = str(metric_name)
        self.higher_is_better = bool(higher_is_better)
        self.baseline = float(baseline)
        self.sparsities = tuple(float(s) for s in sparsities)
        if list(self.sparsities) != check_sparsities(self.sparsities):
            raise ValueError(
                "SensitivityResult: sparsities must be increasing, distinct "
                f"and in [0, 1), got {self.sparsities}."
            )
        self.layers = tuple(table)
        if set(num_params) != set(self.layers):
            raise ValueError(
                "SensitivityResult: num_params must name the same layers as "
                f"table, got {sorted(num_params)} and {sorted(self.layers)}."
            )
        self.num_params = {name: int(num_params[name]) for name in self.layers}
        self._values = {}
        for name, values in table.items():
            values = tuple(float(v) for v in values)
            if len(values) != len(self.sparsities):
                raise ValueError(
                    f"SensitivityResult: layer {name!r} has {len(values)} "
                    f"values for {len(self.sparsities)} sparsities."
                )
            self._values[name] = values

    @property
    def table(self):
        """Dict layer name -> {sparsity: metric value} (a fresh copy)."""
        return {
            name: dict(zip(self.sparsities, values))
            for name, values in self._values.items()
        }

    # ---- allocation --------------------------------------------------------

    def allocate(self, target_sparsity, max_sparsity=None):
        """Per-layer sparsities reaching `target_sparsity` overall, cheaply.

        Exactness: with `n_l = num_params[l]`, `N = sum(n_l)` and the
        returned `s_l`, `sum(patterns.num_pruned(n_l, s_l)) ==
        patterns.num_pruned(N, target_sparsity)`: the weight-count-weighted
        average is the target, to the weight. (For a layer with several
        prunable tensors, e.g. an LSTM's two kernels, `prune_low_magnitude`
        rounds per tensor, which can differ by a weight per tensor.)

        Rule: each layer's cost curve is the metric's degradation from the
        baseline (`baseline - value` when higher is better, `value -
        baseline` otherwise; NaN counts as infinite), linearly interpolated
        in pruned-weight counts between `(0, 0)` and the measured points
        `(num_pruned(n_l, s), degradation at s)`. Starting from nothing
        pruned, the greedy step takes, over all layers and all their later
        measured points, the move with the lowest cost per pruned weight
        (average slope from the layer's current point, which looks past a
        bump in a non-convex curve); ties go to the earlier layer, then the
        nearer point. The last move stops part-way, at exactly the weights
        still needed. A layer never exceeds the largest measured sparsity
        nor `max_sparsity`.

        A layer ending on a measured point (or on `max_sparsity`) gets that
        sparsity exactly; one ending part-way gets `k_l / n_l`.

        Args:
            target_sparsity: overall sparsity over the analysed layers'
                prunable weights, in [0, 1).
            max_sparsity: optional cap for every layer, in [0, 1).

        Returns:
            Dict layer name -> sparsity, for every analysed layer (0.0 for a
            layer left dense), in layer order; pass it as
            `prune_low_magnitude(..., per_layer=allocation)`. Layers that
            were not analysed are not in it: exclude them or they get the
            schedule's sparsity.

        Raises:
            ValueError: if a sparsity is outside [0, 1), or if the target
                needs more weights than the layers may lose within their
                bounds (the message gives the largest reachable target).

        Example:

        ```python
        allocation = result.allocate(0.8, max_sparsity=0.95)
        ```
        """
        target = check_fraction("target_sparsity", target_sparsity)
        cap = self.sparsities[-1]
        if max_sparsity is not None:
            cap = min(cap, check_fraction("max_sparsity", max_sparsity))
        curves = [self._curve(name, cap) for name in self.layers]
        total = sum(self.num_params.values())
        needed = patterns.num_pruned(total, target)
        reachable = sum(curve[-1][0] for curve in curves)
        if needed > reachable:
            raise ValueError(
                f"allocate: target_sparsity {target} prunes {needed} of the "
                f"{total} weights, but within each layer's bound (sparsity "
                f"<= {cap}: the largest measured sparsity"
                f"{'' if max_sparsity is None else ' or max_sparsity'}) at "
                f"most {reachable} can go; the largest reachable target is "
                f"{reachable * 10000 // total / 10000}. Measure "
                "higher sparsities or lower the target."
            )
        counts = _greedy(curves, needed)
        return {
            name: _sparsity_of(count, curve, self.num_params[name])
            for name, count, curve in zip(self.layers, counts, curves)
        }

    def _curve(self, name, cap):
        """Breakpoints `(pruned count, sparsity, cost)` of a layer, up to
        `cap`, increasing in count, from `(0, 0.0, 0.0)`."""
        n = self.num_params[name]
        points = [(0, 0.0, 0.0)]
        for s, value in zip(self.sparsities, self._values[name]):
            count, cost = patterns.num_pruned(n, s), self._cost(value)
            if s > cap:
                count_cap = patterns.num_pruned(n, cap)
                if count_cap > points[-1][0]:
                    cost_cap = _lerp(points[-1], count, cost, count_cap)
                    points.append((count_cap, cap, cost_cap))
                break
            if count > points[-1][0]:
                points.append((count, s, cost))
        return points

    def _cost(self, value):
        if math.isnan(value):
            return math.inf
        if self.higher_is_better:
            return self.baseline - value
        return value - self.baseline

    # ---- renderings ----------------------------------------------------------

    def to_dict(self):
        """Returns the result as JSON-able plain types.

        Returns:
            `{"metric": str, "higher_is_better": bool, "baseline": float,
            "sparsities": [float], "layers": [{"name": str, "num_params":
            int, "values": [float]}]}`, values in the order of sparsities.
            `from_dict` turns it back into an equal result.
        """
        return {
            "metric": self.metric_name,
            "higher_is_better": self.higher_is_better,
            "baseline": self.baseline,
            "sparsities": list(self.sparsities),
            "layers": [
                {
                    "name": name,
                    "num_params": self.num_params[name],
                    "values": list(self._values[name]),
                }
                for name in self.layers
            ],
        }

    @classmethod
    def from_dict(cls, config):
        """Builds a result from `to_dict()`'s output.

        Args:
            config: a dict as returned by `to_dict()` (e.g. read back with
                `json.load`).

        Returns:
            A `SensitivityResult`.

        Example:

        ```python
        saved = json.dumps(result.to_dict())
        same = SensitivityResult.from_dict(json.loads(saved))
        ```
        """
        return cls(
            metric_name=config["metric"],
            higher_is_better=config["higher_is_better"],
            baseline=config["baseline"],
            sparsities=config["sparsities"],
            table={e["name"]: e["values"] for e in config["layers"]},
            num_params={e["name"]: e["num_params"] for e in config["layers"]},
        )

    def to_text(self):
        """Returns an aligned plain-text table, one row per layer.

        Example:

        ```
        accuracy (higher is better), baseline 0.9611
        layer    params     50%     80%     90%
        dense      4096  0.9611  0.9583  0.9167
        dense_1     320  0.9556  0.8500  0.6028
        ```
        """
        direction = "higher" if self.higher_is_better else "lower"
        header = ["layer", "params"] + [percent(s) for s in self.sparsities]
        rows = [header] + [
            [name, str(self.num_params[name])]
            + [f"{v:.4f}" for v in self._values[name]]
            for name in self.layers
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = [
            f"{self.metric_name} ({direction} is better), "
            f"baseline {self.baseline:.4f}"
        ]
        for row in rows:
            cells = [row[0].ljust(widths[0])]
            cells += [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
            lines.append("  ".join(cells).rstrip())
        return "\n".join(lines)

    def __str__(self):
        return self.to_text()

    def __repr__(self):
        return (
            f"<SensitivityResult {self.metric_name}: {len(self.layers)} "
            f"layers x {len(self.sparsities)} sparsities, baseline "
            f"{self.baseline:.4f}>"
        )

    def plot(self, path, title=None):
        """Writes a plot of metric vs sparsity, one line per layer.

        Same as `keras_prune.plots.sensitivity_plot(self, path, title)`:
        the baseline is a dashed line; every layer's line starts from it at
        sparsity 0. Needs matplotlib (`pip install keras-prune[plots]`).

        Returns:
            The path written.

        Example:

        ```python
        result.plot("sensitivity.png")
        ```
        """
        return plots.sensitivity_plot(self, path, title=title)


# ---- checks and selection --------------------------------------------------


def check_sparsities(sparsities):
    """Returns `sparsities` as a sorted list of distinct floats in [0, 1).

    Raises:
        ValueError: if it is empty or holds a value outside [0, 1).
    """
    if isinstance(sparsities, numbers.Real):
        sparsities = [sparsities]
    sparsities = list(sparsities)
    if not sparsities:
        raise ValueError(
            "sparsities is empty: give at least one sparsity in [0, 1), "
            "e.g. (0.5, 0.9)."
        )
    return sorted({check_fraction("sparsities", s) for s in sparsities})


def check_fraction(what, value):
    if (
        not isinstance(value, numbers.Real)
        or isinstance(value, bool)
        or not 0 <= value < 1
    ):
        raise ValueError(
            f"{what}: {value!r} is not a sparsity; use a fraction in [0, 1) "
            "(0.9 prunes 90 % of the weights)."
        )
    return float(value)


def _lerp(point, count, cost, at):
    """The cost at count `at` on the segment from breakpoint `point` to the
    measured `(count, cost)`; infinite if either end is."""
    count0, _, cost0 = point
    if math.isinf(cost) or math.isinf(cost0):
        return math.inf
    return cost0 + (cost - cost0) * (at - count0) / (count - count0)


def _greedy(curves, needed):
    """Pruned counts per layer summing to `needed`; see `allocate`."""
    at = [0] * len(curves)
    counts = [0] * len(curves)
    left = needed
    while left > 0:
        moves = []
        for i, curve in enumerate(curves):
            count0, _, cost0 = curve[at[i]]
            for j in range(at[i] + 1, len(curve)):
                count, _, cost = curve[j]
                slope = (cost - cost0) / (count - count0)
                moves.append((math.inf if math.isnan(slope) else slope, i, j))
        _, i, j = min(moves)
        step = min(curves[i][j][0] - counts[i], left)
        counts[i] += step
        left -= step
        if counts[i] == curves[i][j][0]:
            at[i] = j
    return counts


def _sparsity_of(count, curve, n):
    """The sparsity pruning `count` of `n` weights: a breakpoint's own
    sparsity when `count` is one, else `count / n`."""
    for point_count, sparsity, _ in curve:
        if point_count == count:
            return sparsity
    return count / n


def percent(s):
    return f"{100 * s:.4g}%"
