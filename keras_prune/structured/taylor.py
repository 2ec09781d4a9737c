"""First-order Taylor importance of channels (needs data and a loss).

Removing a channel sets its weights to 0; to first order the loss changes by
`-sum(w * dL/dw)` over those weights (Molchanov et al. 2019, "Importance
Estimation for Neural Network Pruning"; Torch-Pruning's `TaylorImportance`
with `multivariable=True`). Each member of a channel group scores the
channel with `|sum of w * dL/dw|` over its own weights of that channel:

- a producer (`"out"`): the kernel's output slice and the bias entry;
- a consumer (`"in"`): the kernel's input rows (every position after a
  Flatten);
- `"through"`: a BatchNormalization's or LayerNormalization's gamma and
  beta, a DepthwiseConv's kernel slice and bias;
- a MultiHeadAttention: its heads (`"heads"`: the head's query, key, value
  and output kernel slices and projection biases) and the rows it reads
  (`"query"`, `"key"`, `"value"`).

The gradient is the mean over `data` of the loss's gradient, with
`training=False` (BatchNorm on its moving statistics, no dropout): the same
numbers on every backend, and the model is not modified.
"""

import numbers

import keras
import numpy as np

from keras_prune.core import backend
from keras_prune.structured.layer_rules import rule_for


def check_data(data, loss=None, model=None, batch_size=32):
    """Raise a clear error when Taylor scores cannot be computed."""
    if data is None:
        raise ValueError(
            "criterion must have data when it is 'taylor' (the scores are "
            "gradients of the loss): pass data=(x, y) (or an iterable of "
            "(x, y) batches) and loss=, or use a data-free criterion: "
            "'l1', 'l2', 'bn' or 'random'."
        )
    if loss is None and getattr(model, "loss", None) is None:
        raise ValueError(
            "criterion 'taylor' needs a loss: pass loss= (e.g. "
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


def _batches(data, batch_size):
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
                "data must yield (x, y) batches for criterion 'taylor'; got "
                f"a {type(batch).__name__}."
            )
        yield batch[0], batch[1]


def taylor_gradients(model, data, loss=None, batch_size=32):
    """The mean gradient of the loss over `data`, per trainable variable.

    Args:
        model: a built Keras model (not modified: `training=False`, no
            optimizer step).
        data: a tuple `(x, y)` of arrays (split into batches of
            `batch_size`), or an iterable of `(x, y)` batches (a list, a
            generator, a `tf.data.Dataset`).
        loss: a loss name, function or `keras.losses.Loss`; default: the
            model's compiled loss.
        batch_size: for `(x, y)` arrays.

    Returns:
        dict `id(variable)` -> numpy gradient, averaged over the samples
        (each batch weighted by its size).

    Example:

    ```python
    gradients = taylor_gradients(model, (x, y),
                                 "sparse_categorical_crossentropy")
    ```
    """
    check_data(data, loss, model, batch_size)
    loss_fn = keras.losses.get(model.loss if loss is None else loss)

    def mean_loss(y, y_pred):
        return keras.ops.mean(loss_fn(y, y_pred))

    gradients = backend.loss_gradients(model, mean_loss)
    total = None
    seen = 0
    for x, y in _batches(data, batch_size):
        n = _length(x)
        _, grads = gradients(x, y)
        grads = [np.asarray(g, dtype=np.float64) * n for g in grads]
        total = grads if total is None else [
            a + b for a, b in zip(total, grads)]
        seen += n
    if total is None:
        raise ValueError("data holds no batch: nothing to compute the "
                         "gradients of criterion 'taylor' from.")
    return {
        id(v): g / seen for v, g in zip(model.trainable_variables, total)
    }


def taylor_scores(layer, member, size, gradients):
    """`|sum of w * dL/dw|` per channel over the member's weights, or None
    when none of them has a gradient (a frozen layer)."""
    if gradients is None:
        raise ValueError(
            "criterion 'taylor' needs gradients: pass "
            "gradients=taylor_gradients(model, data, loss)."
        )
    rule = rule_for(layer)
    axes = rule.axes(layer, member.role)
    features = None
    for w in layer.weights:
        key = rule.weight_key(layer, w)
        if key not in axes or id(w) not in gradients:
            continue
        axis, repeat = axes[key]
        value = np.asarray(keras.ops.convert_to_numpy(w), dtype=np.float64)
        product = np.moveaxis(value * gradients[id(w)], axis, 0)
        per_row = product.reshape(product.shape[0], -1).sum(axis=1)
        per_feature = per_row.reshape(-1, repeat).sum(axis=1)
        features = per_feature if features is None else (
            features + per_feature)
    if features is None:
        return None
    return np.abs(np.array([
        features[member.indices([c])].sum() for c in range(size)
    ]))
