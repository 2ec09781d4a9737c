"""`calibration_statistics`: the inputs of every Dense/EinsumDense layer of
a model on calibration data, for criteria and solvers that need them
(Wanda's norms, SparseGPT's Gram matrices); see `criteria.calibrate`."""

import keras

from keras_prune.core.layers import pruned_layers
from keras_prune.core.schedules import FixedMasks
from keras_prune.criteria import calibrate
from keras_prune.methods.gradual import prune_low_magnitude


def calibration_statistics(model, data, *, gram=False, batch_size=32):
    """Statistics of each Dense/EinsumDense layer's inputs on `data`.

    A model without pruning wrappers is not run itself: a copy wrapped
    with all-ones masks (`FixedMasks(0.0)`, computing the same outputs) is,
    so the model is never hooked or modified. A pruned model is run as it
    is (its wrappers observe their inputs; its masks apply), its
    Dense/EinsumDense wrappers measured.

    Args:
        model: a built Keras model (Functional, Sequential, a keras-hub
            backbone), dense or pruned.
        data: its inputs only, no labels: an array (a dict of arrays for
            named inputs), or an iterable of such batches.
        gram: also accumulate X^T X per layer (float64, F^2 x 8 bytes for
            F input features: what SparseGPT needs).
        batch_size: batch size for array data.

    Returns:
        A `CalibrationStatistics`: kernel path -> `InputStatistics`
        (`squared_norms`, `gram`, `rows`, `norms()`, `layout.as_rows`).

    Example:

    ```python
    stats = keras_prune.calibration_statistics(model, x[:128], gram=True)
    s = stats["dense/kernel"]
    s.squared_norms        # (in,) sum of x_j^2 over every calibration row
    s.gram                 # (in, in) X^T X, float64
    print(stats)           # layers, rows, memory
    ```
    """
    if not isinstance(model, keras.Model) or not model.built:
        raise ValueError(
            "calibration_statistics expects a built keras Model, got "
            f"{type(model).__name__}: {model!r}."
        )
    batches = calibrate.calibration_batches(data, model, batch_size)
    run = model
    wrappers = calibrate.measured(pruned_layers(model))
    if not wrappers:
        run = prune_low_magnitude(
            model, FixedMasks(0.0),
            exclude=lambda layer: not isinstance(layer, calibrate.SUPPORTED),
        )
        wrappers = pruned_layers(run)
    if not wrappers:
        raise ValueError(
            f"calibration_statistics: model {model.name!r} has no Dense or "
            "EinsumDense layer to measure."
        )
    return calibrate.collect(run, batches, wrappers, gram=gram)
