"""Sensitivity analysis: what pruning each layer *alone* costs.

`sensitivity_analysis` prunes one layer at a time, by magnitude, at each of a
list of sparsities, evaluates the model, and puts the weights back exactly.
The resulting `SensitivityResult` is a table of metric vs sparsity per layer
(text, dict, plot) and suggests a per-layer sparsity allocation for a target
overall sparsity, for `prune_low_magnitude(..., per_layer=...)`.

Pruning here is exactly what `prune_low_magnitude` does to a layer at a
constant sparsity: per prunable weight tensor, `round(n * s)` of its smallest
|w| are zeroed (`patterns.magnitude_mask`). Only the prunable weights of
`registry.prunable_weights` are touched; they are restored bit for bit after
every evaluation, also when an evaluation raises.
"""

import math
import numbers

import keras
import numpy as np

from keras_prune.core import patterns
from keras_prune.core import registry
from keras_prune.core.wrapper import PruneLowMagnitude

DEFAULT_SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95)

# Metric names containing one of these are "lower is better".
_LOWER_IS_BETTER = (
    "loss",
    "error",
    "mse",
    "mae",
    "mape",
    "msle",
    "crossentropy",
    "hinge",
    "divergence",
    "poisson",
    "logcosh",
)


def sensitivity_analysis(
    model,
    data,
    sparsities=DEFAULT_SPARSITIES,
    metric=None,
    layers=None,
    batch_size=None,
    verbose=0,
    higher_is_better=None,
):
    """Prunes each prunable layer alone at each sparsity and evaluates.

    For every selected layer and sparsity `s`, each prunable weight tensor
    of the layer loses exactly `round(n * s)` of its smallest |w| (as
    `prune_low_magnitude` would prune it), the model is evaluated, and the
    weights are restored. The unpruned model is evaluated once as the
    baseline. The model is never modified: every weight is bitwise the same
    afterwards.

    Args:
        model: a built, unpruned Keras model (Sequential, Functional or
            subclassed). A model holding `PruneLowMagnitude` wrappers is
            rejected: run on the dense model or on `strip_pruning(model)`.
        data: what `model.evaluate` reads: a tuple `(x, y)` or
            `(x, y, sample_weight)` of arrays, or a `tf.data.Dataset` /
            `keras.utils.PyDataset` / generator. None when `metric` is a
            callable (it reads its own data).
        sparsities: the sparsities to try, each in [0, 1). Sorted and
            de-duplicated.
        metric: None: the model's first compiled metric (e.g. "accuracy";
            the model must be compiled with `metrics=[...]`). A str: that key
            of `model.evaluate(..., return_dict=True)`, e.g. "loss". A
            callable `metric(model) -> float`, evaluating the model as it is
            when called (then `data` must be None).
        layers: None: every layer with prunable weights (nested models
            included). Or a list of layer names, or a callable
            `fn(layer) -> bool` choosing among the layers with prunable
            weights.
        batch_size: passed to `model.evaluate` when not None.
        verbose: 0 is silent; 1 prints one line per evaluation.
        higher_is_better: whether a larger metric is better. None guesses
            from the metric's name: False when it contains "loss", "error",
            "mse", "mae", "mape", "msle", "crossentropy", "hinge",
            "divergence", "poisson" or "logcosh", else True.

    Returns:
        A `SensitivityResult`.

    Raises:
        ValueError: for an unbuilt or pruned model, bad sparsities, a layer
            selection that is unknown or empty, or a metric that cannot be
            evaluated (uncompiled model, missing data, unknown key).

    Example:

    ```python
    from keras_prune.analysis.sensitivity import sensitivity_analysis

    result = sensitivity_analysis(model, (x_val, y_val),
                                  sparsities=(0.5, 0.8, 0.9))
    print(result)  # metric vs sparsity, one row per layer
    allocation = result.allocate(0.8)  # {"dense": 0.9, "dense_1": 0.31}
    pruned = keras_prune.prune_low_magnitude(
        model, keras_prune.ConstantSparsity(0.8, 0), per_layer=allocation)
    ```
    """
    _check_model(model)
    sparsities = check_sparsities(sparsities)
    selected = select_layers(model, layers)
    measure, name, baseline = _metric(model, data, metric, batch_size)
    if higher_is_better is None:
        higher_is_better = guess_higher_is_better(name)
    say = print if verbose else (lambda line: None)
    say(f"sensitivity_analysis: baseline {name} = {baseline:.4f}")
    table, num_params = {}, {}
    total, done = len(selected) * len(sparsities), 0
    for layer in selected:
        variables = registry.prunable_weights(layer)
        originals = [_copy_of(v) for v in variables]
        num_params[layer.name] = sum(int(w.size) for w in originals)
        values = []
        for s in sparsities:
            values.append(_measure_pruned(measure, variables, originals, s))
            done += 1
            say(
                f"[{done}/{total}] {layer.name} at {_percent(s)}: "
                f"{name} = {values[-1]:.4f}"
            )
        table[layer.name] = values
    return SensitivityResult(
        metric_name=name,
        higher_is_better=higher_is_better,
        baseline=baseline,
        sparsities=sparsities,
        table=table,
        num_params=num_params,
    )


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
        target = _check_fraction("target_sparsity", target_sparsity)
        cap = self.sparsities[-1]
        if max_sparsity is not None:
            cap = min(cap, _check_fraction("max_sparsity", max_sparsity))
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
        header = ["layer", "params"] + [_percent(s) for s in self.sparsities]
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
        from keras_prune.analysis import plots

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
    return sorted({_check_fraction("sparsities", s) for s in sparsities})


def _check_fraction(what, value):
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


def _check_model(model):
    if not isinstance(model, keras.Model):
        raise TypeError(
            "sensitivity_analysis expects a keras Model, got "
            f"{type(model).__name__}: {model!r}."
        )
    if not model.built:
        raise ValueError(
            f"Model {model.name!r} is not built, so it has no weights to "
            "prune: give it an Input (or call it on data) first."
        )
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, PruneLowMagnitude):
            raise ValueError(
                f"Model {model.name!r} is already pruned (layer "
                f"{layer.name!r} is a PruneLowMagnitude wrapper): run "
                "sensitivity_analysis on the dense model, or on "
                "keras_prune.strip_pruning(model)."
            )


def prunable_layers(model):
    """The layers of `model` with prunable weights, in model order.

    Nested models are searched; a layer with prunable weights is not
    searched further (an attention layer's projections belong to it).
    """
    found, seen = [], set()

    def visit(layer):
        for child in layer._flatten_layers(include_self=False, recursive=False):
            if id(child) in seen:
                continue
            seen.add(id(child))
            if not isinstance(child, keras.Model) and registry.prunable_weights(
                child
            ):
                found.append(child)
            else:
                visit(child)

    visit(model)
    return found


def select_layers(model, layers):
    """The layers to analyse: `layers` (None, names or a callable) among
    `prunable_layers(model)`, in model order.

    Raises:
        ValueError: for a name that is not a layer with prunable weights, a
            selection that is empty, or layers sharing a name.
    """
    candidates = prunable_layers(model)
    names = [layer.name for layer in candidates]
    valid = ", ".join(repr(n) for n in names) or "none"
    if layers is None:
        selected = candidates
    elif callable(layers):
        selected = [layer for layer in candidates if layers(layer)]
    else:
        wanted = [layers] if isinstance(layers, str) else list(layers)
        for name in wanted:
            if name not in names:
                raise ValueError(
                    f"layers: {name!r} is not a layer with prunable weights "
                    f"in model {model.name!r}; choose from: {valid}."
                )
        selected = [layer for layer in candidates if layer.name in wanted]
    if not selected:
        raise ValueError(
            f"layers selects no layer with prunable weights in model "
            f"{model.name!r}; layers with prunable weights: {valid}."
        )
    chosen = [layer.name for layer in selected]
    shared = sorted({n for n in chosen if chosen.count(n) > 1})
    if shared:
        raise ValueError(
            f"Model {model.name!r} has several prunable layers named "
            f"{', '.join(repr(n) for n in shared)}: results are keyed by "
            "layer name, so give the layers distinct names."
        )
    return selected


def guess_higher_is_better(name):
    """False for loss/error-like metric names ("loss", "val_mae", ...)."""
    name = name.lower()
    return not any(marker in name for marker in _LOWER_IS_BETTER)


# ---- evaluation ------------------------------------------------------------


def _metric(model, data, metric, batch_size):
    """Returns `(measure, name, baseline)`: `measure()` evaluates the model
    as it is now, `baseline` is its value on the unpruned model."""
    if callable(metric):
        if data is not None:
            raise ValueError(
                "data is only read by model.evaluate: with a callable metric, "
                "pass data=None and let the callable read its own data."
            )
        name = getattr(metric, "__name__", type(metric).__name__)

        def measure():
            return _as_float(metric(model), name)

        return measure, name, measure()
    if metric is not None and not isinstance(metric, str):
        raise ValueError(
            "metric must be None, a key of model.evaluate's results (e.g. "
            f"'loss') or a callable metric(model) -> float, got {metric!r}."
        )
    if not model.compiled:
        raise ValueError(
            f"Model {model.name!r} is not compiled, so model.evaluate cannot "
            "measure it: compile it first (model.compile(loss=..., "
            "metrics=['accuracy'])), or pass metric=callable(model) -> float."
        )
    if data is None:
        raise ValueError(
            "data is None: model.evaluate needs data, e.g. (x_val, y_val); or "
            "pass metric=callable(model) -> float."
        )
    evaluate = _evaluator(model, data, batch_size)
    first = evaluate()
    key = metric if metric is not None else _first_compiled_metric(model, first)
    if key not in first:
        raise ValueError(
            f"metric {key!r} is not a result of model.evaluate; its results "
            f"are: {', '.join(repr(k) for k in first)}."
        )

    def measure():
        return _as_float(evaluate()[key], key)

    return measure, key, _as_float(first[key], key)


def _evaluator(model, data, batch_size):
    kwargs = {"verbose": 0, "return_dict": True}
    if batch_size is not None:
        kwargs["batch_size"] = batch_size
    if isinstance(data, tuple):
        if not 1 <= len(data) <= 3:
            raise ValueError(
                "data as a tuple must be (x, y) or (x, y, sample_weight), got "
                f"a tuple of {len(data)}."
            )
        x, y, sample_weight = (tuple(data) + (None, None))[:3]
        return lambda: model.evaluate(
            x, y, sample_weight=sample_weight, **kwargs
        )
    return lambda: model.evaluate(data, **kwargs)


def _first_compiled_metric(model, results):
    """The key in `results` of the first metric given to `compile`.

    `evaluate`'s dict is sorted by name, so the order comes from the
    compiled metrics; with several outputs a key is "<output>_<name>".
    """
    for tracker in model.metrics:
        for compiled in getattr(tracker, "metrics", []):
            for key in results:
                if key == compiled.name or key.endswith("_" + compiled.name):
                    return key
    raise ValueError(
        f"Model {model.name!r} was compiled without metrics, so metric=None "
        "has nothing to measure: compile with metrics=['accuracy'] (or "
        "another metric), or pass metric='loss'."
    )


def _as_float(value, name):
    array = np.asarray(keras.ops.convert_to_numpy(value))
    if array.size != 1:
        raise ValueError(
            f"metric {name!r} returned {array.size} values of shape "
            f"{array.shape}; it must return one number."
        )
    return float(array.reshape(()))


def _copy_of(variable):
    # A copy: on torch, convert_to_numpy shares the variable's memory, which
    # the pruning assignments below overwrite.
    return np.array(keras.ops.convert_to_numpy(variable.value), copy=True)


def _measure_pruned(measure, variables, originals, sparsity):
    """`measure()` with `variables` pruned to `sparsity`, then restored."""
    try:
        for variable, w in zip(variables, originals):
            variable.assign(_pruned(w, sparsity))
        return measure()
    finally:
        for variable, w in zip(variables, originals):
            variable.assign(w)


def _pruned(w, sparsity):
    """`w` with exactly `num_pruned(w.size, sparsity)` smallest |w| zeroed."""
    # bfloat16 (ml_dtypes) is not a NumPy float kind; float32 holds it exactly.
    scores = np.abs(w if w.dtype.kind == "f" else w.astype(np.float32))
    keep, _ = patterns.magnitude_mask(scores, sparsity)
    return np.where(keep, w, np.zeros((), dtype=w.dtype))


# ---- allocation helpers ----------------------------------------------------


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


def _percent(s):
    return f"{100 * s:.4g}%"
