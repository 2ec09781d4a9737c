"""`PruneWithScores`: masks learned through trainable scores.

A `PruneLowMagnitude` whose prunable weights each carry a trainable float32
score tensor of their shape (one float per weight: 4 bytes, as much memory
as the weights themselves in float32, saved with the pruned model and never
with the stripped one). Its criterion (`movement`, `soft_movement`,
`supermask`: those with `learned = True`) ranks the scores instead of the
weights; soft movement keeps the scores above a threshold that its schedule
ramps (a `ramp` variable), and adds its L1 penalty on the scores to the
training loss in `call`.

The forward pass computes `w * (m + (r - stop_gradient(r)))`, where `r` is
the criterion's ranked tensor of the scores `s` (`s` for movement, `|s|` for
a supermask). Its value is exactly `w * m` (`r - r` is exactly 0 for a
finite `r`, and only then added to `m`, so no rounding touches the mask);
the gradient reaching `r` is `dL/d(w * m) * w`, a straight-through
estimator, in `keras.ops` only: it runs compiled on every backend. The
model's optimizer trains the scores with the weights; the masks move only
at the schedule's steps, from the scores, through the usual drivers
(`UpdatePruningStep`, `update_masks`).

Unlike `PruneLowMagnitude`, an update does not write zeros into the pruned
weights: they keep their values (their gradient is 0 through the mask), so
their scores can still rise and bring them back, as in the papers. `bake`
(at the end of a fit, in `strip_pruning`) zeroes them as for any pruned
layer.
"""

import keras
import numpy as np
from keras import ops

from keras_prune import backend
from keras_prune.core.wrapper import PruneLowMagnitude


@keras.saving.register_keras_serializable(package="keras_prune")
class PruneWithScores(PruneLowMagnitude):
    """Wraps a layer so that its prunable weights are masked by learned
    scores.

    Created by `keras_prune.prune_low_magnitude` (or `supermask`) for a
    criterion that learns its scores; takes `PruneLowMagnitude`'s
    arguments.

    Example:

    ```python
    layer = keras_prune.PruneWithScores(
        keras.layers.Dense(10), keras_prune.ConstantSparsity(0.5, 0),
        criterion="movement",
    )
    ```
    """

    learns_scores = True

    def __init__(self, layer, *args, **kwargs):
        super().__init__(layer, *args, **kwargs)
        criterion = self.spec.criterion
        if criterion is None or not criterion.learned:
            raise ValueError(
                f"PruneWithScores learns the scores of a criterion that "
                f"learns them (e.g. 'movement', 'supermask'), got "
                f"{getattr(criterion, 'name', criterion)!r}; use "
                "PruneLowMagnitude for the others."
            )
        criterion.check_spec(self.spec)

    def _create_state(self):
        if self.built:
            return
        super()._create_state()
        criterion = self.spec.criterion
        self.mask_scores = [
            self.add_weight(
                name=f"score_{i}_{variable.name}",
                shape=variable.shape,
                dtype="float32",
                initializer=criterion.score_initializer(variable),
                trainable=True,
            )
            for i, variable in enumerate(self._prunable)
        ]
        for score, variable in zip(self.mask_scores, self._prunable):
            backend.lay_out_like(score, variable)  # sharded as its kernel
        self.ramp = None
        if criterion.by_threshold:
            # Soft movement: how far its schedule is, set at each update
            # (tau and the penalty's lambda follow it).
            self.ramp = self.add_weight(
                name="ramp", shape=(), dtype="float32", initializer="zeros",
                trainable=False,
            )
        # The score tensors the penalty is shared by: set by the driver
        # for the whole model (`count_penalized`).
        self._penalized = len(self.mask_scores)

    def training_state(self):
        """`{id(prunable variable): its score variable}`."""
        return {id(v): s for v, s in zip(self._prunable, self.mask_scores)}

    def _masked(self, variable, index):
        value = variable.value
        if index is None:
            return value
        keep = backend.mask_as(self.masks[index].value, value.dtype)
        score = self.spec.criterion.ranked(
            ops.cast(self.mask_scores[index].value, value.dtype)
        )
        # Forward: exactly w * keep. Backward: dL/dW' * w to the score.
        return ops.multiply(
            value, ops.add(keep, ops.subtract(score, ops.stop_gradient(score)))
        )

    def call(self, inputs, *args, training=None, mask=None, **kwargs):
        outputs = super().call(
            inputs, *args, training=training, mask=mask, **kwargs)
        criterion = self.spec.criterion
        if training and criterion.by_threshold and criterion.l1 > 0:
            self.add_loss(criterion.penalty(
                [s.value for s in self.mask_scores], self.ramp.value,
                self._penalized))
        return outputs

    def _criterion_scores(self, variables, context, criterion=None):
        context.add_training_state(self.training_state())
        return super()._criterion_scores(variables, context, criterion)

    def compute_masks(self, sparsity, scores=None, context=None):
        """As `PruneLowMagnitude.compute_masks`; with a criterion that
        thresholds the scores (soft movement), `sparsity` is the schedule's,
        which only sets how far the threshold has ramped, and `scores` are
        the raw learned scores (default: the score variables')."""
        criterion = self.spec.criterion
        if not criterion.by_threshold:
            return super().compute_masks(sparsity, scores, context)
        if scores is None:
            scores = [backend.host_view(s) for s in self.mask_scores]
        return criterion.masks(
            scores, criterion.ramp(self.pruning_schedule, sparsity))

    def update_masks(self, sparsity, step, scores=None, context=None):
        super().update_masks(sparsity, step, scores, context)
        criterion = self.spec.criterion
        if criterion.by_threshold:
            self.ramp.assign(np.float32(
                criterion.ramp(self.pruning_schedule, sparsity)))

    def set_masks(self, masks, step):
        """Assigns `(keep, threshold)` per prunable weight; the pruned
        weights keep their values (see the module docstring)."""
        self._last_pruned = None
        self._last_step = int(step)
        for mask, threshold, (keep, cut) in zip(
            self.masks, self.thresholds, masks
        ):
            keep = np.asarray(keep, dtype=bool)
            if not np.array_equal(backend.host_view(mask), keep):
                backend.assign(mask, keep)
            cut = np.float32(cut)
            if backend.host_view(threshold) != cut:
                threshold.assign(cut)
        self.pruning_step.assign(int(step))


def wrapper_for(layer, spec):
    """The wrapper `spec` asks for: `PruneWithScores` when its criterion
    learns its scores, `PruneLowMagnitude` otherwise."""
    learned = spec.criterion is not None and spec.criterion.learned
    return (PruneWithScores if learned else PruneLowMagnitude)(
        layer, spec=spec
    )


def training_state(wrappers):
    """`{id(prunable variable): score variable}` of those of `wrappers`
    that learn scores."""
    state = {}
    for wrapper in wrappers:
        if getattr(wrapper, "learns_scores", False):
            state.update(wrapper.training_state())
    return state


def count_penalized(wrappers):
    """Tells each of `wrappers` whose criterion thresholds its scores how
    many such score tensors the model has: soft movement's penalty is
    their mean (set by the drivers, once they see the whole model)."""
    soft = [w for w in wrappers
            if getattr(w, "learns_scores", False)
            and w.spec.criterion.by_threshold]
    count = sum(len(w.mask_scores) for w in soft)
    for wrapper in soft:
        wrapper._penalized = count


def update_by_threshold(wrappers, sparsity, step, scores=None,
                        context=None):
    """`update_global_masks` for criteria that threshold their scores: one
    threshold everywhere already, so each wrapper updates alone (the same
    masks as layer scope). Returns the threshold (tau)."""
    for i, wrapper in enumerate(wrappers):
        wrapper.update_masks(
            sparsity, step, None if scores is None else scores[i], context)
    criterion = wrappers[0].spec.criterion
    return criterion.threshold * criterion.ramp(
        wrappers[0].pruning_schedule, sparsity)
