"""Data for criteria that need gradients: checks, batches, mean gradients.

`data` is a tuple `(x, y)` of arrays (split into batches of `batch_size`)
or an iterable of `(x, y)` batches (a list, a generator, a
`tf.data.Dataset`). Gradients are taken with `training=False` (BatchNorm on
its moving statistics, no dropout: the same numbers on every backend) and
the model is not modified.
"""

import numbers

import keras
import numpy as np

from keras_prune import backend


def check_data(data, loss=None, model=None, batch_size=32,
               criterion="taylor", alternatives="a criterion that needs only "
               "the weights"):
    """Raises a clear ValueError when gradients cannot be computed."""
    if data is None:
        raise ValueError(
            f"criterion must have data when it is {criterion!r} (the scores "
            "are gradients of the loss): pass data=(x, y) (or an iterable of "
            f"(x, y) batches) and loss=, or use {alternatives}."
        )
    if loss is None and getattr(model, "loss", None) is None:
        raise ValueError(
            f"criterion {criterion!r} needs a loss: pass loss= (e.g. "
            "'sparse_categorical_crossentropy' or a keras.losses.Loss), or "
            "compile the model with one."
        )
    if (not isinstance(batch_size, numbers.Integral)
            or isinstance(batch_size, bool) or batch_size <= 0):
        raise ValueError(
            f"batch_size must be a positive integer, got {batch_size!r}."
        )
    if _is_arrays(data):
        if len(data) != 2:
            raise ValueError(
                f"data must be (x, y), got a {type(data).__name__} of "
                f"{len(data)} items."
            )
        n_x, n_y = _length(data[0]), _length(data[1])
        if n_x != n_y or n_x == 0:
            raise ValueError(
                f"data=(x, y) must hold the same number (> 0) of samples; "
                f"got {n_x} inputs and {n_y} targets."
            )


def _is_arrays(data):
    """A tuple is `(x, y)`; anything else is an iterable of batches."""
    return isinstance(data, tuple)


def _length(x):
    return int(keras.tree.flatten(x)[0].shape[0])


def batches(data, batch_size, criterion="taylor"):
    """`(x, y)` batches of `data`."""
    if _is_arrays(data):
        x, y = data
        n = _length(x)
        for start in range(0, n, batch_size):
            part = slice(start, start + batch_size)
            yield (keras.tree.map_structure(lambda t: t[part], x),
                   keras.tree.map_structure(lambda t: t[part], y))
        return
    for batch in data:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError(
                f"data must yield (x, y) batches for criterion {criterion!r}; "
                f"got a {type(batch).__name__}."
            )
        yield batch[0], batch[1]


def mean_gradients(model, data, loss=None, batch_size=32, criterion="taylor"):
    """The mean gradient of the loss over `data`, per trainable variable.

    Args:
        model: a built Keras model (not modified: `training=False`, no
            optimizer step).
        data: a tuple `(x, y)` of arrays (split into batches of
            `batch_size`), or an iterable of `(x, y)` batches.
        loss: a loss name, function or `keras.losses.Loss`; default: the
            model's compiled loss.
        batch_size: for `(x, y)` arrays.
        criterion: the criterion's name, for error messages.

    Returns:
        dict `id(variable)` -> NumPy float64 gradient, averaged over the
        samples (each batch weighted by its size).

    Example:

    ```python
    gradients = mean_gradients(model, (x, y), "sparse_categorical_crossentropy")
    ```
    """
    check_data(data, loss, model, batch_size, criterion)
    loss_fn = keras.losses.get(model.loss if loss is None else loss)

    def mean_loss(y, y_pred):
        return keras.ops.mean(loss_fn(y, y_pred))

    gradients = backend.loss_gradients(model, mean_loss)
    total = None
    seen = 0
    for x, y in batches(data, batch_size, criterion):
        n = _length(x)
        _, grads = gradients(x, y)
        grads = [np.asarray(g, dtype=np.float64) * n for g in grads]
        total = grads if total is None else [
            a + b for a, b in zip(total, grads)]
        seen += n
    if total is None:
        raise ValueError("data holds no batch: nothing to compute the "
                         f"gradients of criterion {criterion!r} from.")
    return {
        id(v): g / seen for v, g in zip(model.trainable_variables, total)
    }
