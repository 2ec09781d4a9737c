"""One-shot pruning of a trained model: `prune_now`.

`prune_now` prunes at once, without training: the returned copy holds its
masks (schedule `FixedMasks`), so ordinary fine-tuning keeps them and needs
no callback. Any registered criterion scores the weights
(`keras_prune.criteria`); those that need gradients get `data`, those that
need activations (Wanda) get `calibration_data`: their statistics are
collected in the pruned copy (`criteria.calibrate`), and the report says
how much each layer's output changed (`analysis.reconstruction`).
"""

import keras
import numpy as np

from keras_prune.analysis.report import SparsityReport
from keras_prune.core.layers import pruned_layers
from keras_prune.analysis.reconstruction import measure
from keras_prune.core import registry
from keras_prune.core.schedules import FixedMasks
from keras_prune.core.walk import all_layers
from keras_prune.criteria import base as criteria
from keras_prune.criteria import calibrate
from keras_prune.criteria.data import check_data
from keras_prune.methods.gradual import prune_low_magnitude
from keras_prune.methods.sparsegpt import solves
from keras_prune.training.updater import update_global_masks


def prune_now(
    model,
    sparsity,
    scope=None,
    criterion="magnitude",
    *,
    global_weighting=None,
    per_layer=None,
    exclude=None,
    block_size=(1, 1),
    block_pooling_type="AVG",
    sparsity_m_by_n=None,
    prune_depthwise=False,
    seed=0,
    data=None,
    loss=None,
    batch_size=32,
    calibration_data=None,
):
    """Prunes a trained model at once (post-training, one-shot).

    Args:
        model: a built Functional or Sequential Keras model (not modified).
        sparsity: fraction in [0, 1) to prune: of all prunable weights
            together (`scope="global"`) or of each one (`scope="layer"`).
        scope: "global" (one threshold across layers), "layer" or "row"
            (each output of a layer keeps the same fraction of its
            inputs). Default: "row" for criteria that need calibration
            data (Wanda's choice; "layer" with `sparsity_m_by_n` or
            blocks), "global" for the others.
        criterion: "magnitude" (|w|), "random" (a baseline), "taylor"
            (|w * dL/dw| on `data`), "wanda" (|w| * ||x_j|| on
            `calibration_data`), "sparsegpt" (OBS masks and weight updates
            from the inputs' X^T X on `calibration_data`; per row or
            N:M), any other registered criterion
            (`keras_prune.criteria.available()`), a `Criterion`, or a
            callable `fn(layer, variable, weights) -> scores` returning an
            array of the weight's shape (larger = more important; negative
            scores are made absolute).
        global_weighting: None or "size" (see `prune_low_magnitude`).
        per_layer, exclude, block_size, block_pooling_type, sparsity_m_by_n,
        prune_depthwise: as in `prune_low_magnitude`. A layer with its own
            sparsity in `per_layer` is pruned to it on its own.
        seed: seed of the "random" criterion.
        data, loss, batch_size: for criteria that need gradients:
            `(x, y)` arrays or an iterable of `(x, y)` batches, the loss
            (default: the model's compiled loss), the batch size (also
            of array `calibration_data`).
        calibration_data: for criteria that need activations ("wanda",
            "sparsegpt"),
            and only for them: the model's inputs, no labels: an array (a
            dict of arrays for named inputs, e.g. a keras-hub backbone's
            `{"token_ids": ..., "padding_mask": ...}`) or an iterable of
            such batches; a few hundred sequences are typical. Only
            Dense and EinsumDense layers are pruned then (embeddings and
            convolutions stay dense).

    Returns:
        `(pruned, report)`: a pruned copy whose masks are held (schedule
        `FixedMasks`: fine-tune it with a plain `fit`, no callback needed;
        `strip_pruning` it when done) and its `SparsityReport`; with
        `calibration_data`, `report.reconstruction` is a
        `ReconstructionReport`: per layer ||WX - W^X||^2 / ||WX||^2 on it.

    Example:

    ```python
    pruned, report = keras_prune.prune_now(model, 0.9, scope="global")
    pruned.compile("adam", "sparse_categorical_crossentropy")
    pruned.fit(x, y, epochs=2)          # masks held
    final = keras_prune.strip_pruning(pruned)

    # Wanda: 2:4 (or 50 % per output row) from 128 calibration sequences.
    pruned, report = keras_prune.prune_now(
        backbone, 0.5, criterion="wanda", sparsity_m_by_n=(2, 4),
        calibration_data={"token_ids": ids, "padding_mask": ids != 0})
    print(report.reconstruction)   # which layers suffered most
    ```
    """
    _check_model(model)
    criterion = criteria.get(criterion)
    calibrated = criterion.needs == criteria.ACTIVATIONS
    if solves(criterion):
        criterion.check_options(scope, block_size, sparsity_m_by_n,
                                global_weighting)
    if calibrated:
        batches = _calibration(model, criterion, calibration_data,
                               batch_size, prune_depthwise)
        exclude = _measured_only(exclude)
    elif calibration_data is not None:
        raise ValueError(
            f"calibration_data is used by criteria that need activations "
            f"(e.g. 'wanda'); criterion {criterion.name!r} does not: leave "
            "it out, or choose criterion='wanda'."
        )
    if scope is None:
        structured = sparsity_m_by_n is not None or tuple(block_size) != (1, 1)
        scope = ("layer" if structured else "row") if calibrated else "global"
    if criterion.needs == criteria.GRADIENTS:
        check_data(data, loss, model, batch_size, criterion.name)
    elif criterion.needs not in (criteria.WEIGHTS, criteria.ACTIVATIONS):
        raise ValueError(
            f"criterion {criterion.name!r} needs {criterion.needs}, which "
            "prune_now does not collect; use the method that provides it."
        )
    # The wrappers record the criterion when it can be reloaded by name;
    # their masks are fixed, so nothing recomputes them with it. A solver
    # (SparseGPT) is not a score a wrapper could use: not recorded.
    recorded = (criterion if criterion.name is not None
                and not solves(criterion) else None)
    pruned = prune_low_magnitude(
        model,
        FixedMasks(sparsity),
        block_size=block_size,
        block_pooling_type=block_pooling_type,
        sparsity_m_by_n=sparsity_m_by_n,
        prune_depthwise=prune_depthwise,
        scope=scope,
        global_weighting=global_weighting,
        per_layer=per_layer,
        exclude=exclude,
        criterion=recorded,
    )
    context = criteria.ScoringContext(
        model=pruned, step=0, seed=seed, data=data,
        loss=getattr(model, "loss", None) if loss is None else loss,
        batch_size=batch_size,
    )
    wrappers = pruned_layers(pruned)
    if solves(criterion):
        criterion.solve(pruned, batches, sparsity_m_by_n)
        report = SparsityReport(pruned)
        report.reconstruction = measure(model, pruned, batches)
        return pruned, report
    if calibrated:
        context.calibration = calibrate.collect(pruned, batches, wrappers)
    scored = [(w, w.scores(context, criterion)) for w in wrappers]
    for wrapper, scores in scored:
        _check_finite(wrapper, scores, criterion)
    together = [(w, s) for w, s in scored if w.scope == "global"]
    for wrapper, scores in scored:
        if wrapper.scope != "global":
            target = wrapper.pruning_schedule.sparsity_at(0)
            wrapper.update_masks(target, 0, scores=scores)
    if together:
        update_global_masks(
            [w for w, _ in together], sparsity, 0, [s for _, s in together]
        )
    report = SparsityReport(pruned)
    if calibrated:
        report.reconstruction = measure(model, pruned, batches)
    return pruned, report


def _calibration(model, criterion, data, batch_size, prune_depthwise):
    """The checked calibration batches, or a one-line ValueError."""
    if data is None:
        raise ValueError(
            f"criterion {criterion.name!r} scores with statistics of the "
            "layers' inputs: pass calibration_data= (the model's inputs, "
            "no labels), or use criterion='magnitude'."
        )
    if not any(
        isinstance(layer, calibrate.SUPPORTED)
        and registry.prunable_weights(layer, prune_depthwise)
        for layer in all_layers(model)[1:]
    ):
        raise ValueError(
            f"prune_now: model {model.name!r} has no Dense or EinsumDense "
            f"layer, which criterion {criterion.name!r} prunes; nothing to "
            "prune."
        )
    return calibrate.calibration_batches(data, model, batch_size)


def _measured_only(exclude):
    """`exclude` and every layer calibration does not measure."""
    if isinstance(exclude, str) or callable(exclude):
        exclude = [exclude]

    def unmeasured(layer):
        return not isinstance(layer, calibrate.SUPPORTED)

    return list(exclude or []) + [unmeasured]


def _check_model(model, driver="prune_now"):
    """A built Keras model, or a ValueError saying what `model` is."""
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"{driver} expects a built keras Model, got "
            f"{type(model).__name__}: {model!r}. (For a saved model: "
            "keras.saving.load_model(path) first.)"
        )
    if not model.built:
        raise ValueError(
            f"{driver}: model {model.name!r} is not built (it has no "
            "weights yet): give it an Input, or call it on data, first."
        )


class NonFiniteScoresError(ValueError):
    """A criterion's scores hold NaN or inf (a diverged model, or a broken
    criterion): the weights, not the arguments, are the cause."""


def _check_finite(wrapper, scores, criterion):
    """One-shot pruning ranks every score once: a NaN (it compares false)
    would prune the whole kernel, or skew a global total. Refused, naming
    the weight and the count. (During gradual training the mask update
    keeps its own, tested handling of a weight that went NaN.)"""
    name = criterion.name or type(criterion).__name__
    for variable, score in zip(wrapper.prunable_weights, scores):
        finite = np.isfinite(score)
        if not finite.all():
            bad = int(finite.size - np.count_nonzero(finite))
            raise NonFiniteScoresError(
                f"criterion {name!r} returned {bad:,} non-finite score(s) "
                f"(NaN or inf) of {finite.size:,} for {variable.path!r}: no "
                "mask can rank them. Check the weights (a diverged training "
                "gives NaN) or make the criterion return finite scores."
            )
