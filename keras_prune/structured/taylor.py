"""The data checks of structured criteria that need gradients.

The channel criterion `"taylor"` (first-order Taylor importance, in
`keras_prune.criteria.channel`) scores channels with the mean gradient of a
loss over `data`; `keras_prune.criteria.data` computes it. These wrappers
give that computation the messages of structured pruning, which point to
its data-free criteria.
"""

from keras_prune.criteria import data as criteria_data

ALTERNATIVES = "a data-free criterion: 'l1', 'l2', 'bn' or 'random'"


def check_data(data, loss=None, model=None, batch_size=32,
               criterion="taylor"):
    """Raises a clear ValueError when gradients cannot be computed.

    Args:
        data: `(x, y)` arrays or an iterable of `(x, y)` batches.
        loss: a loss, or None for the model's compiled one.
        model: the model (for its compiled loss).
        batch_size: for `(x, y)` arrays.
        criterion: the criterion's name, for the messages.
    """
    criteria_data.check_data(data, loss, model, batch_size,
                             criterion=criterion, alternatives=ALTERNATIVES)


def taylor_gradients(model, data, loss=None, batch_size=32,
                     criterion="taylor"):
    """The mean gradient of the loss over `data`, per trainable variable.

    `keras_prune.criteria.data.mean_gradients` with the checks of
    `check_data`.

    Args:
        model: a built Keras model (not modified: `training=False`, no
            optimizer step).
        data: a tuple `(x, y)` of arrays (split into batches of
            `batch_size`), or an iterable of `(x, y)` batches.
        loss: a loss name, function or `keras.losses.Loss`; default: the
            model's compiled loss.
        batch_size: for `(x, y)` arrays.
        criterion: the criterion's name, for the messages.

    Returns:
        dict `id(variable)` -> NumPy float64 gradient, averaged over the
        samples.

    Example:

    ```python
    gradients = taylor_gradients(model, (x, y),
                                 "sparse_categorical_crossentropy")
    ```
    """
    check_data(data, loss, model, batch_size, criterion)
    return criteria_data.mean_gradients(model, data, loss, batch_size,
                                        criterion=criterion)
