"""Pruning at initialization: SNIP, GraSP, SynFlow and the baselines.

`prune_at_init` scores the untrained model once (SNIP, GraSP, magnitude,
random: the registered criteria, through `prune_now`) or in rounds
(SynFlow), and returns a copy whose masks are fixed for training
(`FixedMasks`: a plain `fit` keeps them).
"""

import numbers

import keras
import numpy as np
from keras import ops

from keras_prune import backend
from keras_prune.analysis.report import SparsityReport
from keras_prune.core.layers import pruned_layers
from keras_prune.core.patterns import num_pruned
from keras_prune.core.schedules import FixedMasks
from keras_prune.criteria import base as criteria
from keras_prune.criteria.data import check_data
from keras_prune.methods.gradual import prune_low_magnitude
from keras_prune.methods.oneshot import _check_model
from keras_prune.methods.oneshot import prune_now
from keras_prune.training.updater import update_global_masks

METHODS = ("synflow", "snip", "grasp", "magnitude", "random")


def prune_at_init(model, sparsity, method="synflow", *, rounds=100,
                  data=None, loss=None, batch_size=32, seed=0, exclude=None,
                  temperature=200.0):
    """Prunes an untrained model before training, globally.

    Args:
        model: a built Functional or Sequential Keras model (not modified).
        sparsity: fraction in [0, 1) of all prunable weights to prune
            (0.99 is 100x compression).
        method: "synflow" (data-free, `rounds` rounds), "snip" or "grasp"
            (need `data` and `loss`), "magnitude" or "random" (baselines).
        rounds: SynFlow's number of rounds (100 in the paper); the
            sparsity after round k is `1 - (1 - sparsity) ** (k / rounds)`.
        data, loss, batch_size: for SNIP and GraSP: `(x, y)` arrays or an
            iterable of `(x, y)` batches and the loss (default: the model's
            compiled loss). GraSP needs a model whose output is logits.
        seed: seed of "random".
        exclude: layers not to prune (as in `prune_low_magnitude`).
        temperature: GraSP's T (200 in the paper).

    Returns:
        `(pruned, report)`: a pruned copy with fixed masks (`FixedMasks`;
        train it with a plain `fit`, then `strip_pruning`) and its
        `SparsityReport`.

    Raises:
        ValueError: before any work, for a sparsity outside [0, 1), rounds
            < 1, an unknown method, SNIP/GraSP without data, or SynFlow on a
            model without exactly one output.

    Example:

    ```python
    import keras
    import keras_prune

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16),
                              keras.layers.Dense(3)])
    pruned, report = keras_prune.prune_at_init(model, 0.9, "synflow",
                                               rounds=10)
    ```
    """
    _check_model(model)
    _check_sparsity(sparsity)
    if method not in METHODS:
        raise ValueError(
            f"prune_at_init: method must be one of {list(METHODS)}, got "
            f"{method!r}."
        )
    if method == "synflow":
        _check_rounds(rounds)
        _check_single_output(model)
        return _prune_synflow(model, sparsity, rounds, exclude)
    if method in ("snip", "grasp"):
        check_data(data, loss, model, batch_size, method,
                   alternatives="method='synflow', which needs no data")
    criterion = (criteria.get({"name": "grasp",
                               "config": {"temperature": temperature}})
                 if method == "grasp" else method)
    return prune_now(model, sparsity, "global", criterion, exclude=exclude,
                     seed=seed, data=data, loss=loss, batch_size=batch_size)


def _check_sparsity(sparsity):
    if (not isinstance(sparsity, numbers.Real) or isinstance(sparsity, bool)
            or not 0 <= sparsity < 1):
        raise ValueError(
            f"prune_at_init: sparsity must be a fraction in [0, 1), got "
            f"{sparsity!r}; e.g. 0.99 for 100x compression."
        )


def _check_rounds(rounds):
    if (not isinstance(rounds, numbers.Integral) or isinstance(rounds, bool)
            or rounds < 1):
        raise ValueError(
            f"prune_at_init: rounds must be an integer >= 1, got {rounds!r};"
            " SynFlow's paper uses 100."
        )


def _check_single_output(model):
    outputs = model.outputs if model.outputs is not None else []
    if len(outputs) != 1:
        raise ValueError(
            f"SynFlow sums the model's output, and model {model.name!r} has "
            f"{len(outputs)} outputs; pass a model with one output tensor, "
            "e.g. keras.Model(model.inputs, model.outputs[0])."
        )


def synflow_scores(model, masks=None):
    """SynFlow's scores `|w * dR/dw|` of `model`'s variables, one round.

    Every variable (trainable or not: kernels, biases, BatchNorm's gamma,
    beta and moving statistics) is made absolute, `masks` (`{'layer/variable':
    0/1 array}`) multiply theirs, and R is the sum of the output for an input
    of ones (batch 1) with BatchNorm in inference mode (`training=False`:
    it is the affine map of its moving statistics, which at initialization
    are 0 and 1). On a float64 copy of the model (on JAX inside
    `jax.enable_x64`, for this computation only): nothing of `model` is
    changed. Keras 3.15 still rounds some float64 products to float32 on JAX
    and torch (relative error 9e-8 and 1.5e-7 measured, TensorFlow 4e-11:
    `keras_prune.backend.float64_scope`).

    Returns:
        `{'layer/variable': float64 scores}` of the trainable variables.

    Example:

    ```python
    import keras
    import keras_prune

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3),
                              keras.layers.Dense(2)])
    scores = keras_prune.synflow_scores(model)
    ```
    """
    return _SynFlow(model).scores(masks or {})


class _SynFlow:
    """A float64 copy of a model and SynFlow's gradient on it."""

    def __init__(self, model):
        self.model = model
        with backend.float64_scope():
            self.copy = keras.models.clone_model(
                model, clone_function=_float64_layer)
            self.paths = [_key(v) for v in model.trainable_variables]
            self.trainable = [_absolute(v) for v in model.trainable_variables]
            self.non_trainable = [_absolute(v)
                                  for v in model.non_trainable_variables]
            self.inputs = [np.ones([1] + list(t.shape[1:]), np.float64)
                           for t in model.inputs]
            self.gradients = backend.objective_gradients(
                self.copy, lambda y: ops.sum(ops.cast(y, "float64")))

    def scores(self, masks):
        values = [w * masks[p] if p in masks else w
                  for p, w in zip(self.paths, self.trainable)]
        x = self.inputs[0] if len(self.inputs) == 1 else self.inputs
        with backend.float64_scope():
            _, grads = self.gradients(values, self.non_trainable, x)
        return {p: np.abs(v * np.asarray(g, np.float64))
                for p, v, g in zip(self.paths, values, grads)}


def _absolute(variable):
    """|value| in float64; other dtypes (a dropout's seed) as they are."""
    value = ops.convert_to_numpy(variable)
    if np.issubdtype(value.dtype, np.floating):
        return np.abs(value).astype(np.float64)
    return value


def _float64_layer(layer):
    config = layer.get_config()
    config["dtype"] = "float64"
    return layer.__class__.from_config(config)


def _prune_synflow(model, sparsity, rounds, exclude):
    for t in model.inputs:
        if any(d is None for d in t.shape[1:]):
            raise ValueError(
                f"SynFlow feeds an input of ones of the model's input shape, "
                f"and input {t.name!r} has shape {tuple(t.shape)} with "
                "unknown dimensions; build the model with a fixed shape, "
                "e.g. keras.Input((32, 32, 3))."
            )
    pruned = prune_low_magnitude(model, FixedMasks(sparsity), scope="global",
                                 exclude=exclude)
    wrappers = pruned_layers(pruned)
    paths = [_key(v) for w in wrappers for v in w.prunable_weights]
    sizes = [int(np.prod(v.shape)) for w in wrappers
             for v in w.prunable_weights]
    flow = _SynFlow(model)
    missing = [p for p in paths if flow.paths.count(p) != 1]
    if missing:
        raise ValueError(
            f"SynFlow could not match the pruned weights {missing} to the "
            "model's variables (a model whose layers were renamed by "
            "cloning); prune with method='snip' or 'magnitude' instead."
        )
    keep = np.ones(sum(sizes), bool)
    for k in range(1, rounds + 1):
        masks = _split(keep, paths, sizes, pruned)
        scores = flow.scores(masks)
        flat = np.concatenate([scores[p].ravel() for p in paths])
        flat[~keep] = -1.0
        target = (sparsity if k == rounds
                  else 1 - (1 - sparsity) ** (k / rounds))
        keep = _keep_highest(flat, num_pruned(flat.size, target))
    masks = _split(keep, paths, sizes, pruned)
    update_global_masks(
        wrappers, sparsity, 0,
        [[masks[_key(v)].astype(np.float64) for v in w.prunable_weights]
         for w in wrappers])
    return pruned, SparsityReport(pruned)


def _key(variable):
    """'layer/variable': a weight's path without the models it is in (a
    Sequential model's paths start with its own name, its pruned copy's
    do not)."""
    return "/".join(variable.path.split("/")[-2:])


def _keep_highest(flat, k):
    """Keep-mask pruning the k lowest of `flat` (ties: lower index first,
    so that the same scores give the same mask on every backend)."""
    keep = np.ones(flat.size, bool)
    keep[np.argsort(flat, kind="stable")[:k]] = False
    return keep


def _split(keep, paths, sizes, pruned):
    shapes = {_key(v): v.shape for v in pruned.trainable_variables}
    masks, start = {}, 0
    for path, size in zip(paths, sizes):
        masks[path] = keep[start:start + size].reshape(shapes[path])
        start += size
    return masks
