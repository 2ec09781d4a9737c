"""Learned masks: `supermask` (edge-popup, Ramanujan et al. 2020).

Movement pruning needs no entry point of its own: it is
`prune_low_magnitude(model, schedule, criterion="movement")` trained with
`UpdatePruningStep` (`keras_prune.criteria.learned`). A supermask freezes
the weights and trains only the scores, so it is built here.
"""

import numbers

import keras
import numpy as np

from keras_prune.core.layers import pruned_layers
from keras_prune.core.schedules import ConstantSparsity
from keras_prune.core.walk import all_layers
from keras_prune.core.wrapper import PruneLowMagnitude
from keras_prune.criteria.learned import Supermask
from keras_prune.methods.gradual import prune_low_magnitude
from keras_prune.methods.oneshot import _check_model

WEIGHTS = ("signed_constant", "random")


def supermask(model, sparsity=0.5, *, weights="signed_constant",
              scope="layer", frequency=1, seed=0, exclude=None):
    """A copy of an untrained model whose only trainable variables are the
    mask scores: training finds a mask, the weights never change.

    Edge-popup (Ramanujan et al. 2020, "What's hidden in a randomly
    weighted neural network?"): each prunable weight has a score, the
    forward pass keeps the weights of the largest |scores| (`sparsity` of
    each layer pruned, re-chosen every `frequency` steps by
    `UpdatePruningStep`) and the gradient reaches the scores through a
    straight-through estimator. Zhou et al. (2019) showed such masks over
    frozen random weights reach 86 % on MNIST.

    Args:
        model: a built Functional or Sequential Keras model, usually
            untrained (not modified).
        sparsity: fraction in [0, 1) of each prunable weight to prune (the
            paper found about 0.5 best).
        weights: "signed_constant" (the paper's best: every prunable weight
            becomes `sign(w) * sqrt(2 / fan_in)`, the standard deviation of
            He's initialization, `fan_in` the product of the kernel's
            dimensions but the last) or "random" (the model's own weights).
        scope: "layer" (the paper's: each layer keeps its top-k) or
            "global".
        frequency: the masks are recomputed from the scores every
            `frequency` training steps (1: every step, as the paper).
        seed: seed of the scores' initialization.
        exclude: layers not to prune (as in `prune_low_magnitude`); they are
            frozen too.

    Returns:
        The pruned copy. Every layer but the scores is frozen (trainable
        False, saved with the model: a BatchNormalization layer then
        normalizes with its moving statistics); compile it and `fit` it with `UpdatePruningStep()`,
        then `strip_pruning`.

    Example:

    ```python
    masked = keras_prune.supermask(untrained, sparsity=0.5)
    masked.compile(keras.optimizers.Adam(0.01),
                   "sparse_categorical_crossentropy")
    masked.fit(x, y, callbacks=[keras_prune.UpdatePruningStep()])
    ```
    """
    _check_model(model, "supermask")
    if (isinstance(sparsity, bool) or not isinstance(sparsity, numbers.Real)
            or not 0 <= sparsity < 1):
        raise ValueError(
            f"supermask: sparsity must be a fraction in [0, 1), got "
            f"{sparsity!r}; e.g. 0.5, the paper's best."
        )
    if weights not in WEIGHTS:
        raise ValueError(
            f"supermask: weights must be one of {list(WEIGHTS)}, got "
            f"{weights!r}."
        )
    if (isinstance(frequency, bool) or not isinstance(frequency, int)
            or frequency < 1):
        raise ValueError(
            f"supermask: frequency must be an integer >= 1, got "
            f"{frequency!r}; 1 re-chooses the masks at every step."
        )
    pruned = prune_low_magnitude(
        model, ConstantSparsity(sparsity, 0, frequency=frequency),
        scope=scope, exclude=exclude, criterion=Supermask(seed=seed))
    wrappers = pruned_layers(pruned)
    if weights == "signed_constant":
        for wrapper in wrappers:
            for variable in wrapper.prunable_weights:
                variable.assign(_signed_constant(variable))
    # Leaf layers, not the models holding them: a model set non-trainable
    # would hide its wrappers' scores from the optimizer. Layer flags, not
    # variable flags: they are saved with the model.
    inside = {id(w.layer) for w in wrappers}
    for layer in all_layers(pruned):
        if isinstance(layer, PruneLowMagnitude):
            layer.layer.trainable = False
        elif not isinstance(layer, keras.Model) and id(layer) not in inside:
            layer.trainable = False
    return pruned


def _signed_constant(variable):
    values = keras.ops.convert_to_numpy(variable)
    fan_in = int(np.prod(values.shape[:-1])) if values.ndim > 1 else 1
    std = np.sqrt(2.0 / fan_in, dtype=np.float64)
    return (np.sign(values) * std).astype(values.dtype)
