"""Pruning criteria: one registry for gradual, one-shot, structured pruning
and the command line (see `keras_prune.criteria.base`)."""

from keras_prune.criteria import at_init  # noqa: F401 (registers)
from keras_prune.criteria import channel  # noqa: F401 (registers)
from keras_prune.criteria import learned  # noqa: F401 (registers)
from keras_prune.criteria import magnitude  # noqa: F401 (registers)
from keras_prune.criteria import random  # noqa: F401 (registers)
from keras_prune.criteria import taylor  # noqa: F401 (registers)
from keras_prune.criteria import wanda  # noqa: F401 (registers)
from keras_prune.criteria.base import ACTIVATIONS
from keras_prune.criteria.base import CHANNEL
from keras_prune.criteria.base import GRADIENTS
from keras_prune.criteria.base import TRAINING_STATE
from keras_prune.criteria.base import WEIGHT
from keras_prune.criteria.base import WEIGHTS
from keras_prune.criteria.base import Criterion
from keras_prune.criteria.base import ScoringContext
from keras_prune.criteria.base import available
from keras_prune.criteria.base import get
from keras_prune.criteria.base import register

__all__ = [
    "ACTIVATIONS",
    "CHANNEL",
    "GRADIENTS",
    "TRAINING_STATE",
    "WEIGHT",
    "WEIGHTS",
    "Criterion",
    "ScoringContext",
    "available",
    "get",
    "register",
]
