"""`UpdatePruningStep`: drives the masks during `model.fit`.

The schedule's step is the optimizer's iteration count, read once when
training starts (after `BackupAndRestore` has restored it) and then counted on
the host, so a resumed run continues the schedule where it stopped and no
backend value is read on ordinary steps. Masks are recomputed only at the
steps the schedules name; only then does the callback touch variables
(on JAX, through `self.model`, which syncs the trainer's state first).
On TensorFlow, at frequencies up to 10, the updates that keep a layer's
pruned count run inside the train step instead (`instep.InStepUpdates`):
the callback writes, once per epoch, a table of each step's counts.
"""

import functools
import inspect
import weakref

import keras
import numpy as np

from keras_prune.training import tf_fast_path as instep
from keras_prune.core.layers import pruned_layers
from keras_prune.core.schedules import FixedMasks
from keras_prune.core.wrapper import SteadyUpdates
from keras_prune.core.wrapper import update_global_masks


_STEADY = weakref.WeakKeyDictionary()
# model -> its InStepUpdates: what its traced train function refers to, kept
# across fits.
_IN_STEP = weakref.WeakKeyDictionary()


class _Pruner:
    """Applies the schedules of every pruned layer of a model at a step."""

    def __init__(self, model):
        self.layers = pruned_layers(model)
        if not self.layers:
            raise ValueError(
                f"{getattr(model, 'name', model)!r} contains no pruned layers: "
                "wrap the model with keras_prune.prune_low_magnitude() before "
                "training it with pruning."
            )
        retrace = any(not layer._step_tracked for layer in self.layers)
        for layer in self.layers:
            layer._step_tracked = True
        # A fit without this callback failed while tracing: its cached train
        # function is half-built; make a fresh one.
        if retrace and getattr(model, "train_function", None) is not None:
            model.make_train_function(force=True)
        # One per model (nothing stored on it): its compiled call is traced
        # once, not per fit or per custom-loop step.
        if model not in _STEADY:
            _STEADY[model] = SteadyUpdates()
        self.steady = _STEADY[model]
        self._counts = weakref.WeakKeyDictionary()
        self.in_step = self._in_step_updates(model)

    def _in_step_updates(self, model):
        """The model's `InStepUpdates` (None: all updates on the host)."""
        if not instep.model_allows(model):
            return None
        layers = [
            layer for layer in self.layers
            if layer.scope != "global" and instep.eligible(layer)
        ]
        if not layers:
            return None
        iterations = model.optimizer.iterations
        cached = _IN_STEP.get(model)
        if (
            cached is None
            or cached.iterations is not iterations
            or cached.wrappers != layers
        ):
            cached = _IN_STEP[model] = instep.InStepUpdates(layers, iterations)
            # A train function traced without it would never read its table.
            if getattr(model, "train_function", None) is not None:
                model.make_train_function(force=True)
        return cached

    def activate(self):
        if self.in_step is not None:
            for layer in self.in_step.wrappers:
                instep.ACTIVE[layer] = self.in_step

    def plan_in_step(self, start, steps, first):
        """Fills the in-step table for `steps` steps from `start`.

        A layer's update goes to the train step only where its counts equal
        its previous update's (and none is 0), and never at `first`, the
        fit's first step (its train function may not be traced yet).
        Returns {step: ids of the layers updated in the train step}.
        """
        handled = {}
        rows = np.full((steps, self.in_step.columns), -1, np.int32)
        due_steps = {}  # per schedule: [(step, sparsity)], computed once
        column = 0
        for layer in self.in_step.wrappers:
            schedule = layer.pruning_schedule
            if id(schedule) not in due_steps:
                due_steps[id(schedule)] = [
                    (step, schedule.sparsity_at(step))
                    for step in range(start, start + steps)
                    if schedule.should_prune_at(step)
                ]
            width = len(layer._prunable)
            previous = self._counts.get(layer, layer._last_pruned)
            counts_of = {}
            for step, sparsity in due_steps[id(schedule)]:
                if sparsity not in counts_of:
                    counts_of[sparsity] = layer._num_pruned(sparsity)
                counts = counts_of[sparsity]
                if step != first and counts == previous and all(counts):
                    rows[step - start, column:column + width] = counts
                    handled.setdefault(step, set()).add(id(layer))
                previous = counts
            self._counts[layer] = previous
            column += width
        self.in_step.activate(start, rows)
        return handled

    def drop_untraced(self):
        """Hands everything to the host if no train step read the table."""
        if self.in_step is not None and not self.in_step.traced:
            self.deactivate()
            self.in_step = None
            return True
        return False

    def deactivate(self):
        if self.in_step is None:
            return
        self.in_step.deactivate()
        for layer in self.in_step.wrappers:
            if instep.ACTIVE.get(layer) is self.in_step:
                del instep.ACTIVE[layer]
            # Its masks moved on in the train step.
            layer._last_pruned = None
            layer._last_step = None

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

    def update(self, step, layers=None):
        layers = self.due(step) if layers is None else layers
        scoped = [layer for layer in layers if layer.scope == "global"]
        local = [layer for layer in layers if layer.scope != "global"]
        sparsities = {
            id(layer): layer.pruning_schedule.sparsity_at(step)
            for layer in local
        }
        # Layers whose masks provably stay as they are: one device call.
        for layer in self.steady.apply(
            local, [sparsities[id(layer)] for layer in local], step
        ):
            layer.update_masks(sparsities[id(layer)], step)
        if scoped:
            targets = {layer.pruning_schedule.sparsity_at(step) for layer in scoped}
            if len(targets) > 1:
                raise ValueError(
                    "Layers pruned with scope='global' must share one "
                    f"schedule; at step {step} their schedules ask for "
                    f"{sorted(targets)}."
                )
            update_global_masks(scoped, targets.pop(), step)
        return [layer.name for layer in layers]

    def bake(self):
        for layer in self.layers:
            layer.bake()


class UpdatePruningStep(keras.callbacks.Callback):
    """Updates pruning masks at the steps the schedules name. Required.

    Add it to `model.fit(callbacks=[...])` of every model built with
    `prune_low_magnitude`; fitting without it raises an error naming this
    callback. With `steps_per_execution=k`, masks are updated at the start of
    an execution whose `k` steps include a schedule step.

    Example:

    ```python
    pruned.fit(x, y, epochs=2, callbacks=[keras_prune.UpdatePruningStep()])
    ```
    """

    def __init__(self):
        super().__init__()
        self._pruner = None
        self._step = None
        self._batch_begin = 0
        self._steps_per_execution = 1
        self._first = None
        self._planned_until = None
        self._in_step_at = {}

    def on_train_begin(self, logs=None):
        model = self.model
        self._pruner = _Pruner(model)
        self._pruner.activate()
        self._steps_per_execution = int(
            getattr(model, "steps_per_execution", 1) or 1
        )
        self._step = None
        self._planned_until = None
        self._in_step_at = {}

    def on_train_batch_begin(self, batch, logs=None):
        if self._step is None:
            # Read lazily: BackupAndRestore restores the optimizer in its own
            # on_train_begin, which may run after ours.
            self._step = self._first = int(
                keras.ops.convert_to_numpy(self.model.optimizer.iterations)
            )
        if self._pruner.in_step is not None and (
            self._planned_until is None or self._step >= self._planned_until
        ):
            self._plan_in_step()
        self._batch_begin = batch
        for step in range(self._step, self._step + self._steps_per_execution):
            due = self._pruner.due(step)
            handled = self._in_step_at.get(step)
            if handled:  # updated inside this train step instead
                due = [layer for layer in due if id(layer) not in handled]
            if due:
                self.model  # On JAX, syncs the trainer's state first.
                self._pruner.update(step, due)
                return

    def _plan_in_step(self):
        """The in-step tables for the coming epoch (TensorFlow)."""
        steps = self.params.get("steps") if self.params else None
        iterations = int(
            keras.ops.convert_to_numpy(self.model.optimizer.iterations)
        )
        if not steps or iterations != self._step:
            # Unknown epoch length, or the step count differs from the
            # optimizer's: the host updates everything.
            self._in_step_at = {}
            self._pruner.in_step.deactivate()
            # Unknown length: for the whole fit; otherwise: the next epoch.
            self._planned_until = (
                self._step + int(steps) if steps else float("inf")
            )
            return
        self._in_step_at = self._pruner.plan_in_step(
            self._step, int(steps), self._first
        )
        self._planned_until = self._step + int(steps)

    def on_train_batch_end(self, batch, logs=None):
        if self._step == self._first and self._pruner.drop_untraced():
            self._in_step_at = {}
        self._step += batch - self._batch_begin + 1

    def on_train_end(self, logs=None):
        self.model  # On JAX, syncs the trainer's state into the variables.
        self._pruner.deactivate()
        self._pruner.bake()


MISSING_CALLBACK = (
    "Training a pruned model needs the keras_prune.UpdatePruningStep "
    "callback: model.fit(..., callbacks=[keras_prune.UpdatePruningStep()]). "
    "In a custom training loop, call keras_prune.update_masks(model, step) "
    "before each step instead."
)


def _needs_callback(model):
    # One-shot masks (FixedMasks) are held by the forward pass alone.
    return any(
        not isinstance(layer.pruning_schedule, FixedMasks)
        for layer in pruned_layers(model)
    )


def _guard_fit(fit):
    """Checks for UpdatePruningStep before `fit` does any work.

    The in-graph check of `PruneLowMagnitude.call` would fire inside the first
    train step, and Keras's JAX trainer loses the model's variables when its
    first step raises; checking here keeps the user's model intact.
    """
    signature = inspect.signature(fit)

    @functools.wraps(fit)
    def guarded(self, *args, **kwargs):
        callbacks = signature.bind(self, *args, **kwargs).arguments.get(
            "callbacks"
        )
        if isinstance(callbacks, keras.callbacks.CallbackList):
            callbacks = callbacks.callbacks
        if not any(
            isinstance(c, UpdatePruningStep) for c in callbacks or ()
        ) and _needs_callback(self):
            raise ValueError(MISSING_CALLBACK)
        return fit(self, *args, **kwargs)

    guarded._keras_prune_guard = True
    return guarded


if not getattr(keras.Model.fit, "_keras_prune_guard", False):
    keras.Model.fit = _guard_fit(keras.Model.fit)
