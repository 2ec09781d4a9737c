"""The pruning wrappers of a model, found by the one walker (`core.walk`)."""

from keras_prune.core.walk import walk
from keras_prune.core.wrapper import PruneLowMagnitude


def pruned_layers(model):
    """The `PruneLowMagnitude` wrappers inside `model`, in model order."""
    return [
        layer for layer, _ in walk(model)
        if isinstance(layer, PruneLowMagnitude)
    ]
