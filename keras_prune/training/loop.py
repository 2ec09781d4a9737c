"""The custom-loop API: `update_masks` before each step, `finalize_pruning`
after the loop (what `UpdatePruningStep` does inside `fit`)."""

import numbers

import numpy as np

from keras_prune.core.layers import pruned_layers
from keras_prune.training.updater import MaskUpdater


def _step(step):
    """`step` as a Python int, or a ValueError naming it: a non-negative
    integer (a Python or NumPy int, or a 0-d integer tensor such as
    `optimizer.iterations`); never a bool or a float."""
    value = step
    if not isinstance(step, numbers.Number):
        try:
            value = np.asarray(step)
        except Exception:  # not array-like: reported below
            value = None
        if value is not None and value.ndim == 0 and (
                np.issubdtype(value.dtype, np.integer)):
            value = int(value)
    if (not isinstance(value, numbers.Integral) or isinstance(value, bool)
            or isinstance(step, bool) or value < 0):
        raise ValueError(
            f"step must be a non-negative integer (the optimizer's "
            f"iteration count before this step, e.g. "
            f"int(optimizer.iterations)), got {step!r}."
        )
    return int(value)


def update_masks(model, step, *, data=None, loss=None, batch_size=32,
                 seed=0):
    """Call before each training step of a custom loop.

    Marks the model as tracked and, when a layer's schedule says so at `step`,
    recomputes its masks (and bakes them into the weights). Cheap otherwise.

    Args:
        model: the pruned model (or any layer containing pruned layers).
        step: the optimizer's iteration count before this step
            (`int(optimizer.iterations)`), so a resumed run continues the
            schedule where it stopped.
        data, loss, batch_size: for criteria that score with gradients.
        seed: the seed of random criteria.

    Returns:
        The list of wrapper names whose masks changed at this step.

    Example:

    ```python
    for x, y in dataset:
        keras_prune.update_masks(model, int(optimizer.iterations))
        train_step(x, y)
    keras_prune.finalize_pruning(model)
    ```
    """
    step = _step(step)
    return MaskUpdater(
        model, data=data, loss=loss, batch_size=batch_size, seed=seed,
        driver="update_masks",
    ).update(step)


def finalize_pruning(model):
    """Call once after a custom training loop: bakes `w * mask` everywhere.

    Optimizer momentum moves masked weights slightly between mask updates;
    this writes exact zeros back, as `UpdatePruningStep` does at train end.

    Raises:
        ValueError: if `model` holds no pruned layer (as `update_masks`).
    """
    layers = pruned_layers(model)
    if not layers:
        raise ValueError(
            f"finalize_pruning: {getattr(model, 'name', model)!r} contains no "
            "pruned layers: it applies to a model wrapped with "
            "keras_prune.prune_low_magnitude() (after strip_pruning the "
            "zeros are already in the weights)."
        )
    for layer in layers:
        layer.bake()
