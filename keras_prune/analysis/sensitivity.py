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

import keras
import numpy as np

from keras_prune.analysis.allocation import SensitivityResult
from keras_prune.analysis.allocation import check_sparsities
from keras_prune.analysis.allocation import percent
from keras_prune.core import patterns
from keras_prune.core import registry
from keras_prune.core.layers import pruned_layers
from keras_prune.core.walk import walk

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
                f"[{done}/{total}] {layer.name} at {percent(s)}: "
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
    wrappers = pruned_layers(model)
    if wrappers:
        raise ValueError(
            f"Model {model.name!r} is already pruned (layer "
            f"{wrappers[0].name!r} is a PruneLowMagnitude wrapper): run "
            "sensitivity_analysis on the dense model, or on "
            "keras_prune.strip_pruning(model)."
        )


def prunable_layers(model):
    """The layers of `model` with prunable weights, in model order.

    Nested models are searched; a layer with prunable weights is not
    searched further (an attention layer's projections belong to it).
    """
    def prunable(layer):
        return not isinstance(layer, keras.Model) and bool(
            registry.prunable_weights(layer)
        )

    return [
        layer
        for layer, _ in walk(
            model, include_self=False, descend=lambda l: not prunable(l)
        )
        if prunable(layer)
    ]


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
        _check_arrays(model, x, y)
        return lambda: model.evaluate(
            x, y, sample_weight=sample_weight, **kwargs
        )
    return lambda: model.evaluate(data, **kwargs)


def _check_arrays(model, x, y):
    """ValueErrors naming `data` for arrays that cannot be evaluated: no
    samples, x and y of different lengths, samples of the wrong shape (the
    same on every backend, before any evaluation)."""
    if not hasattr(x, "shape") or not len(getattr(x, "shape", ())):
        return  # lists, dicts of inputs...: left to model.evaluate
    n = x.shape[0]
    if n == 0:
        raise ValueError(
            "data has no samples (x has shape "
            f"{tuple(x.shape)}): sensitivity_analysis evaluates the model on "
            "data; give at least one (x, y) pair, e.g. your validation set."
        )
    if y is not None and hasattr(y, "shape") and len(y.shape) and (
            y.shape[0] != n):
        raise ValueError(
            f"data's x has {n} samples but y has {y.shape[0]}: give the "
            "same number of each."
        )
    inputs = getattr(model, "inputs", None) or []
    if len(inputs) == 1:
        expected = tuple(inputs[0].shape[1:])
        got = tuple(x.shape[1:])
        if len(expected) != len(got) or any(
                e is not None and e != g for e, g in zip(expected, got)):
            raise ValueError(
                f"data's x has samples of shape {got}, but model "
                f"{model.name!r} takes {expected}: give inputs of that shape."
            )


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


