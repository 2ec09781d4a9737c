"""The custom-loop API: `update_masks` before each step, `finalize_pruning`
after the loop (what `UpdatePruningStep` does inside `fit`)."""

from keras_prune.core.layers import pruned_layers
from keras_prune.training.updater import MaskUpdater


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
    return MaskUpdater(
        model, data=data, loss=loss, batch_size=batch_size, seed=seed,
        driver="update_masks",
    ).update(int(step))


def finalize_pruning(model):
    """Call once after a custom training loop: bakes `w * mask` everywhere.

    Optimizer momentum moves masked weights slightly between mask updates;
    this writes exact zeros back, as `UpdatePruningStep` does at train end.
    """
    for layer in pruned_layers(model):
        layer.bake()
