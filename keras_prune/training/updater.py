"""The update policy: which masks move at a step, scored by what.

`MaskUpdater` is shared by the `fit` callback (`UpdatePruningStep`) and the
custom-loop API (`update_masks`): at a step, it asks each wrapper's schedule
whether its masks move and to what sparsity, builds the `ScoringContext`
its criterion needs, and has layer-scoped wrappers update themselves (the
TensorFlow fast path first, for magnitude masks that stay as they are) and
globally scoped ones share one ranking (`update_global_masks`).
"""

import weakref

import numpy as np

from keras_prune.core import patterns
from keras_prune.core import scored
from keras_prune.core.layers import pruned_layers
from keras_prune.criteria import base as criteria
from keras_prune.training import tf_fast_path

# model -> its SteadyUpdates (nothing stored on the user's model): its
# compiled call is traced once, not per fit or per custom-loop step.
_STEADY = weakref.WeakKeyDictionary()


def check_needs(wrappers, data, driver):
    """Raises before any work when a wrapper's criterion needs what the
    driver cannot give it."""
    for wrapper in wrappers:
        criterion = wrapper.spec.criterion
        if criterion is None or not wrapper.needs_mask_driver:
            continue
        if criterion.needs == criteria.GRADIENTS and data is None:
            raise ValueError(
                f"criterion {criterion.name!r} of layer "
                f"{wrapper.layer.name!r} scores with gradients of the loss: "
                f"pass data=(x, y) (and loss=, unless the model is compiled "
                f"with one) to {driver}."
            )
        if criterion.needs == criteria.ACTIVATIONS or (
            criterion.needs == criteria.TRAINING_STATE
            and not wrapper.learns_scores
        ):
            raise ValueError(
                f"criterion {criterion.name!r} of layer "
                f"{wrapper.layer.name!r} needs {criterion.needs}, which "
                f"{driver} does not collect; use it with the method that "
                "provides it."
            )


class MaskUpdater:
    """Applies the schedules of every pruned layer of a model at a step.

    Args:
        model: a model (or layer) holding `PruneLowMagnitude` wrappers.
        data, loss, batch_size: for criteria that need gradients.
        seed: the seed of random criteria.
        driver: how the caller is named in errors.
    """

    def __init__(self, model, data=None, loss=None, batch_size=32, seed=0,
                 driver="UpdatePruningStep"):
        self.model = model
        self.layers = pruned_layers(model)
        if not self.layers:
            raise ValueError(
                f"{getattr(model, 'name', model)!r} contains no pruned layers: "
                "wrap the model with keras_prune.prune_low_magnitude() before "
                "training it with pruning."
            )
        check_needs(self.layers, data, driver)
        scored.count_penalized(self.layers)
        self.data = data
        self.loss = loss
        self.batch_size = batch_size
        self.seed = seed
        retrace = any(not layer._step_tracked for layer in self.layers)
        for layer in self.layers:
            layer._step_tracked = True
        # A fit without a driver failed while tracing: its cached train
        # function is half-built; make a fresh one.
        if retrace and getattr(model, "train_function", None) is not None:
            model.make_train_function(force=True)
        if model not in _STEADY:
            _STEADY[model] = tf_fast_path.SteadyUpdates()
        self.steady = _STEADY[model]

    def due(self, step):
        """The layers whose schedule updates masks at `step`."""
        decisions = {}
        due = []
        for layer in self.layers:
            schedule = layer.pruning_schedule
            if id(schedule) not in decisions:
                decisions[id(schedule)] = schedule.should_prune_at(step)
            if decisions[id(schedule)]:
                due.append(layer)
        return due

    def context(self, step):
        """The `ScoringContext` of the update at `step`."""
        return criteria.ScoringContext(
            model=self.model, step=step, seed=self.seed, data=self.data,
            loss=self.loss, batch_size=self.batch_size,
            training_state=scored.training_state(self.layers),
        )

    def update(self, step, layers=None):
        """Updates the masks of `layers` (default: those due at `step`).

        Returns:
            The names of the updated wrappers.
        """
        layers = self.due(step) if layers is None else layers
        context = self.context(step)
        scoped = [layer for layer in layers if layer.scope == "global"]
        local = [layer for layer in layers if layer.scope != "global"]
        sparsities = {
            id(layer): layer.pruning_schedule.sparsity_at(step)
            for layer in local
        }
        # Magnitude masks that provably stay as they are: one device call.
        for layer in self.steady.apply(
            local, [sparsities[id(layer)] for layer in local], step
        ):
            layer.update_masks(sparsities[id(layer)], step, context=context)
        if scoped:
            targets = {
                layer.pruning_schedule.sparsity_at(step) for layer in scoped
            }
            if len(targets) > 1:
                raise ValueError(
                    "Layers pruned with scope='global' must share one "
                    f"schedule; at step {step} their schedules ask for "
                    f"{sorted(targets)}."
                )
            update_global_masks(scoped, targets.pop(), step, context=context)
        return [layer.name for layer in layers]

    def bake(self):
        for layer in self.layers:
            layer.bake()


def update_global_masks(wrappers, sparsity, step, scores=None, context=None):
    """One threshold across `wrappers`; exact total count.

    Prunes exactly `num_pruned(total, sparsity)` of all their prunable
    weights together (see `patterns.global_masks`), then sets each
    wrapper's masks and bakes them. O(n): with the magnitude criterion each
    weight is read three times as a view of the backend's buffer
    (`backend.host_view`, no copy on CPU): twice for its |w| (the
    selection's two passes, one weight at a time) and once to bake it.
    Extra memory: the bool masks (1/4 of float32 weights), one weight's
    scores and temporaries, and its baked copy (<= 1x the weights at 100 M
    weights: docs/patterns.md, "Global scope").

    Args:
        wrappers: `PruneLowMagnitude` layers with `scope="global"`.
        sparsity: fraction in [0, 1) of all their prunable weights.
        step: the training step of this update (recorded).
        scores: optional, one list of NumPy scores per wrapper (default:
            each wrapper's criterion, computed again for each pass).
        context: the `ScoringContext` of the criteria.

    Returns:
        The global threshold (on the, possibly weighted, scores).
    """
    criteria_used = {
        w.spec.criterion for w in wrappers if w.spec.criterion is not None
    }
    if scores is None and len(criteria_used) > 1:
        raise ValueError(
            "Layers pruned with scope='global' are ranked together, so they "
            f"must share one criterion; got {sorted(map(repr, criteria_used))}."
        )
    context = criteria.ScoringContext(step=step) if context is None else (
        context)
    if all(getattr(c, "by_threshold", False) for c in criteria_used) and (
            criteria_used):
        return scored.update_by_threshold(
            wrappers, sparsity, step, scores, context)
    score_fns, sizes, owners = [], [], []
    for i, wrapper in enumerate(wrappers):
        for j, variable in enumerate(wrapper.prunable_weights):
            if scores is None:

                def fn(wrapper=wrapper, variable=variable):
                    return wrapper.variable_scores(variable, context)

            else:

                def fn(i=i, j=j):
                    return np.asarray(scores[i][j])

            score_fns.append(fn)
            sizes.append(int(np.prod(variable.shape)))
            owners.append(i)
    keeps, threshold = patterns.global_masks(score_fns, sizes, sparsity)
    for i, wrapper in enumerate(wrappers):
        mine = [keep for keep, owner in zip(keeps, owners) if owner == i]
        wrapper.set_masks([(keep, threshold) for keep in mine], step)
    return threshold
