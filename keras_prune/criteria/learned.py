"""Criteria whose scores are learned during training: `movement` and
`soft_movement` (Sanh et al. 2020), `supermask` (edge-popup, Ramanujan et
al. 2020).

A layer pruned with one of them carries a trainable float score per
prunable weight (`core.scored.PruneWithScores`). The forward pass uses
`w * m`, `m` the binary mask, and a straight-through estimator passes
`dL/d(w * m) * w` to the scores, so the model's optimizer trains them with
the weights. At the schedule's steps the masks are recomputed from the
scores (top-v, our O(n) selection) by the same machinery as magnitude
pruning: `UpdatePruningStep`, the schedules, global or layer scope; soft
movement keeps the scores above a threshold instead (`by_threshold`).
"""

import numbers
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


@register("soft_movement")
class SoftMovement(_Learned):
    """Soft movement pruning (Sanh et al. 2020): keep the weights whose
    learned score S has sigmoid(S) > tau, while an L1 penalty on sigmoid(S)
    pulls the scores down.

    The scores start at 0 and train as for `movement` (gradient
    `dL/dW' * w`, straight through). The schedule says when and how far:
    at each of its updates, `ramp = sparsity_at(step) / end_sparsity()`
    (0 to 1; `PolynomialDecay(0, s, ..., power=3)` is the paper's cubic
    ramp, whatever `s` above 0), `tau = threshold * ramp`, and each prunable
    tensor keeps the weights with sigmoid(S) > tau (computed as
    S > log(tau / (1 - tau))), at least 0.5 % of them: when fewer pass,
    the `int(0.005 * size) + 1` largest scores (ties: the lower flat
    index), as the paper's code does. The training loss gains
    `l1 * ramp * mean(sigmoid(S))` per score tensor, divided by the number
    of score tensors of the model (`ramp` of the last update, 0 before the
    first; training calls only, so `evaluate` reports the task loss).

    The schedule's sparsity is therefore not the sparsity reached: `l1` sets
    it (larger: sparser), and each layer finds its own. The threshold is
    the same for every tensor, so `scope="global"` gives the same masks as
    `scope="layer"`.

    Keras trains the scores with the model's one optimizer, at the
    weights' learning rate; the paper trains them 300x faster (1e-2 vs
    3e-5), and the threshold is absolute, so the scores must be able to
    travel: `S = scale * s`, `s` the trained variable. With Adam, whose
    step does not depend on the gradient's size, S then moves up to
    `scale * lr` a step (`scale=100` with Adam(1e-4) is the paper's 1e-2).

    Args:
        threshold: the final tau, in (0, 1); the paper's soft runs use 0.1.
        l1: the final lambda of the penalty, >= 0 (0: none; the paper's
            BERT runs go up to 400).
        scale: the scores' speed relative to the weights' (> 0; 1: the
            same rate).
    """

    description = ("soft movement pruning: learned scores, sigmoid(scores) > "
                   "threshold, sparsity set by an L1 penalty (fit with "
                   "prune_low_magnitude)")
    by_threshold = True

    def __init__(self, threshold=0.1, l1=1.0, scale=1.0):
        super().__init__()
        if not _real(threshold) or not 0 < threshold < 1:
            raise ValueError(
                f"soft_movement: threshold must be a fraction in (0, 1), got "
                f"{threshold!r}; the paper's soft runs use 0.1.")
        if not _real(l1) or not l1 >= 0:
            raise ValueError(
                f"soft_movement: l1 must be a number >= 0, got {l1!r}; it "
                "sets the sparsity reached (0: no penalty).")
        if not _real(scale) or not 0 < scale < float("inf"):
            raise ValueError(
                f"soft_movement: scale must be a number > 0, got {scale!r}; "
                "it is the scores' speed relative to the weights' (e.g. "
                "100 with Adam(1e-4): the paper's 1e-2 for the scores).")
        self.threshold = float(threshold)
        self.l1 = float(l1)
        self.scale = float(scale)

    def get_config(self):
        return {"threshold": self.threshold, "l1": self.l1,
                "scale": self.scale}

    def ranked(self, scores):
        return scores * self.scale if self.scale != 1 else scores

    def score_initializer(self, variable):
        return "zeros"

    def check_spec(self, spec):
        self.ramp(spec.pruning_schedule, 0.0)
        if spec.block_size != (1, 1) or spec.sparsity_m_by_n is not None:
            raise ValueError(
                "criterion 'soft_movement' thresholds each weight's score, so "
                f"it takes no block_size ({spec.block_size}) or "
                f"sparsity_m_by_n ({spec.sparsity_m_by_n}); use 'movement' "
                "for those patterns.")

    def ramp(self, schedule, sparsity):
        """`sparsity / schedule.end_sparsity()`, in [0, 1]."""
        end = schedule.end_sparsity()
        if not _real(end) or not end > 0:
            raise ValueError(
                "criterion 'soft_movement' ramps its threshold by the "
                "schedule's sparsity over its final sparsity, which "
                f"{schedule!r} does not give (end_sparsity() is {end!r}); "
                "use PolynomialDecay (power=3: the paper's cubic ramp) or "
                "ConstantSparsity, with a final sparsity above 0.")
        return min(max(float(sparsity) / end, 0.0), 1.0)

    def masks(self, scores, ramp):
        """`(keep, tau)` per NumPy score variable's value `s`:
        sigmoid(scale * s) > tau, at least `int(0.005 * size) + 1` kept."""
        tau = self.threshold * ramp
        cut = np.log(tau) - np.log1p(-tau) if tau > 0 else -np.inf
        found = []
        for s in scores:
            s = np.asarray(s, dtype=np.float64) * self.scale
            keep = s > cut
            least = int(0.005 * s.size) + 1
            if np.count_nonzero(keep) < least:
                # Stable: equal scores are kept by the lower flat index.
                order = np.argsort(-s, axis=None, kind="stable")[:least]
                keep = np.zeros(s.size, dtype=bool)
                keep[order] = True
                keep = keep.reshape(s.shape)
            found.append((keep, tau))
        return found

    def penalty(self, scores, ramp, count):
        """`l1 * ramp * sum(mean(sigmoid(scale * s))) / count` over the
        score variables' values `scores` (`keras.ops`, differentiable)."""
        total = sum(keras.ops.mean(keras.ops.sigmoid(self.ranked(s)))
                    for s in scores)
        return keras.ops.multiply(ramp, total) * (self.l1 / count)

    def layer_scores(self, layer, variables, context):
        # What the threshold compares: sigmoid(S).
        return [np.exp(-np.logaddexp(0, -self.scale * context.state(
            v).astype(np.float64))) for v in variables]


@register("supermask")
class Supermask(_Learned):
    """Edge-popup's supermask (Ramanujan et al. 2020): with the weights
    frozen, only the scores train, and each layer keeps the weights of the
    largest |scores|.

    The scores start as PyTorch's default initialization of a layer of the
    weight's fan-in (uniform in +-1/sqrt(fan_in), seeded by `seed` and the
    weight's path), as the paper's code does, drawn by NumPy: the same
    scores, hence the same first masks, on every backend. `keras_prune.supermask`
    builds such a model (signed-constant or random frozen weights).
    """

    description = "edge-popup supermask: learned scores, top-k of |scores|"

    def score_initializer(self, variable):
        return FanInUniform(
            [self.seed, zlib.crc32(variable.path.encode())])

    def ranked(self, scores):
        # The paper's code ranks |s|, and its gradient reaches s through
        # the absolute value.
        return keras.ops.absolute(scores)

    def layer_scores(self, layer, variables, context):
        return [np.abs(context.state(v)) for v in variables]


class FanInUniform(keras.initializers.Initializer):
    """Uniform in +-1/sqrt(fan_in) (`fan_in`: the product of the shape's
    dimensions but the last), drawn by NumPy from `seed` (an int or a
    sequence of ints): the same values on every backend, unlike Keras's
    seeded initializers, whose generators differ per backend."""

    def __init__(self, seed):
        self.seed = seed

    def __call__(self, shape, dtype=None):
        shape = tuple(int(d) for d in shape)
        fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
        bound = 1.0 / np.sqrt(max(fan_in, 1))
        values = np.random.default_rng(self.seed).uniform(
            -bound, bound, size=shape)
        return keras.ops.convert_to_tensor(
            values, dtype=dtype or keras.config.floatx())

    def get_config(self):
        return {"seed": self.seed}


def _floor(context):
    if "movement_floor" not in context.cache:
        context.cache["movement_floor"] = min(
            float(np.min(keras.ops.convert_to_numpy(s)))
            for s in context.training_state.values())
    return context.cache["movement_floor"]


def _real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
