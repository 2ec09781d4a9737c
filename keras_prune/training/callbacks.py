"""`UpdatePruningStep`: drives the masks during `model.fit`.

The schedule's step is the optimizer's iteration count, read once when
training starts (after `BackupAndRestore` has restored it) and then counted on
the host, so a resumed run continues the schedule where it stopped and no
backend value is read on ordinary steps. Masks are recomputed only at the
steps the schedules name (`MaskUpdater`); only then does the callback touch
variables (on JAX, through `self.model`, which syncs the trainer's state
first). On TensorFlow, at frequency 1, the updates that keep a layer's
pruned count run inside the train step instead
(`tf_fast_path.InStepUpdates`): the callback writes, once per epoch, a table
of each step's counts.
"""

import weakref

import keras
import numpy as np

from keras_prune.training import tf_fast_path
from keras_prune.training.updater import MaskUpdater

# model -> its InStepUpdates: what its traced train function refers to, kept
# across fits.
_IN_STEP = weakref.WeakKeyDictionary()


class _InStepPlan:
    """The in-step updates of one fit (TensorFlow; None-like elsewhere)."""

    def __init__(self, model, layers):
        self.in_step = self._in_step_updates(model, layers)
        self._counts = weakref.WeakKeyDictionary()

    @staticmethod
    def _in_step_updates(model, layers):
        """The model's `InStepUpdates` (None: all updates on the host)."""
        if not tf_fast_path.model_allows(model):
            return None
        layers = [
            layer for layer in layers
            if layer.scope != "global" and tf_fast_path.eligible(layer)
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
            cached = _IN_STEP[model] = tf_fast_path.InStepUpdates(
                layers, iterations
            )
            # A train function traced without it would never read its table.
            if getattr(model, "train_function", None) is not None:
                model.make_train_function(force=True)
        return cached

    def activate(self):
        if self.in_step is not None:
            for layer in self.in_step.wrappers:
                layer.set_train_step_hook(self.in_step.run)

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
            if layer._train_step_hook == self.in_step.run:
                layer.set_train_step_hook(None)
            # Its masks moved on in the train step.
            layer._last_pruned = None
            layer._last_step = None


class UpdatePruningStep(keras.callbacks.Callback):
    """Updates pruning masks at the steps the schedules name. Required.

    Add it to `model.fit(callbacks=[...])` of every model built with
    `prune_low_magnitude`; fitting without it raises an error naming this
    callback. With `steps_per_execution=k`, masks are updated at the start of
    an execution whose `k` steps include a schedule step.

    Args:
        data, loss, batch_size: for criteria that score with gradients
            (e.g. "taylor"): `(x, y)` arrays or an iterable of batches, the
            loss (default: the model's compiled loss), the batch size.
        seed: the seed of random criteria.

    Example:

    ```python
    pruned.fit(x, y, epochs=2, callbacks=[keras_prune.UpdatePruningStep()])
    ```
    """

    drives_pruning_masks = True  # what the fit guard looks for (core.guard)

    def __init__(self, data=None, loss=None, batch_size=32, seed=0):
        super().__init__()
        self._data = data
        self._loss = loss
        self._batch_size = batch_size
        self._seed = seed
        self._pruner = None
        self._plan = None
        self._step = None
        self._batch_begin = 0
        self._steps_per_execution = 1
        self._first = None
        self._planned_until = None
        self._in_step_at = {}

    def on_train_begin(self, logs=None):
        model = self.model
        self._pruner = MaskUpdater(
            model, data=self._data, loss=self._loss,
            batch_size=self._batch_size, seed=self._seed,
        )
        self._plan = _InStepPlan(model, self._pruner.layers)
        self._plan.activate()
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
        if self._plan.in_step is not None and (
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
            self._plan.in_step.deactivate()
            # Unknown length: for the whole fit; otherwise: the next epoch.
            self._planned_until = (
                self._step + int(steps) if steps else float("inf")
            )
            return
        self._in_step_at = self._plan.plan_in_step(
            self._step, int(steps), self._first
        )
        self._planned_until = self._step + int(steps)

    def on_train_batch_end(self, batch, logs=None):
        if self._step == self._first and self._plan.drop_untraced():
            self._in_step_at = {}
        self._step += batch - self._batch_begin + 1

    def on_train_end(self, logs=None):
        self.model  # On JAX, syncs the trainer's state into the variables.
        self._plan.deactivate()
        self._pruner.bake()
