"""Criteria whose scores are learned during training: `movement` (Sanh et
al. 2020) and `supermask` (edge-popup, Ramanujan et al. 2020).

A layer pruned with one of them carries a trainable float score per
prunable weight (`core.scored.PruneWithScores`). The forward pass uses
`w * m`, `m` the binary mask, and a straight-through estimator passes
`dL/d(w * m) * w` to the scores, so the model's optimizer trains them with
the weights. At the schedule's steps the masks are recomputed from the
scores (top-v, our O(n) selection) by the same machinery as magnitude
pruning: `UpdatePruningStep`, the schedules, global or layer scope.
"""

import zlib

import keras
import numpy as np

from keras_prune.criteria.base import TRAINING_STATE
from keras_prune.criteria.base import Criterion
from keras_prune.criteria.base import register


class _Learned(Criterion):
    needs = TRAINING_STATE
    learned = True

    def __init__(self, seed=0):
        self.seed = int(seed)

    def ranked(self, scores):
        """The tensor whose top-v is kept, from the score variable's value
        (`keras.ops`: the straight-through gradient flows through it)."""
        return scores

    def get_config(self):
        return {"seed": self.seed}


@register("movement")
class Movement(_Learned):
    """Hard movement pruning (Sanh et al. 2020): keep the weights that move
    away from zero during fine-tuning.

    Each weight's score starts at 0 and is trained by the model's optimizer
    with the gradient `dL/dW' * w` (`W' = w * m`), so with plain SGD it is
    `S = -lr * sum_t dL/dW' * w`, the paper's accumulated movement; with
    Adam it is Adam's normalized version of it, as in the paper's code. At
    every update of the schedule the top-v scores are kept (v from the
    schedule, `PolynomialDecay(power=3)` is the paper's cubic schedule).
    Weights pruned during a fit keep their values, so a weight whose score
    rises again comes back; the end of the fit bakes them to zero.
    """

    description = ("hard movement pruning: learned scores, top-v (fit with "
                   "prune_low_magnitude)")

    def score_initializer(self, variable):
        return "zeros"

    def layer_scores(self, layer, variables, context):
        # Scores are signed; the selection ranks non-negative ones, so all
        # are shifted by one floor, the smallest learned score of the
        # update (the same for every layer of a global ranking).
        floor = _floor(context)
        return [np.maximum(context.state(v) - floor, 0) for v in variables]


@register("supermask")
class Supermask(_Learned):
    """Edge-popup's supermask (Ramanujan et al. 2020): with the weights
    frozen, only the scores train, and each layer keeps the weights of the
    largest |scores|.

    The scores start as PyTorch's default initialization of a layer of the
    weight's fan-in (uniform in +-1/sqrt(fan_in), seeded by `seed` and the
    weight's path), as the paper's code does. `keras_prune.supermask`
    builds such a model (signed-constant or random frozen weights).
    """

    description = "edge-popup supermask: learned scores, top-k of |scores|"

    def score_initializer(self, variable):
        seed = (self.seed * 1_000_003
                + zlib.crc32(variable.path.encode())) % (2**31)
        return keras.initializers.VarianceScaling(
            scale=1 / 3, mode="fan_in", distribution="uniform", seed=seed)

    def ranked(self, scores):
        # The paper's code ranks |s|, and its gradient reaches s through
        # the absolute value.
        return keras.ops.absolute(scores)

    def layer_scores(self, layer, variables, context):
        return [np.abs(context.state(v)) for v in variables]


def _floor(context):
    if "movement_floor" not in context.cache:
        context.cache["movement_floor"] = min(
            float(np.min(keras.ops.convert_to_numpy(s)))
            for s in context.training_state.values())
    return context.cache["movement_floor"]
