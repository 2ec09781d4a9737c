"""TensorFlow's fast mask updates: `SteadyUpdates` and `InStepUpdates`.

Both apply to unstructured magnitude masks of single layers (the spec's
`plain_magnitude`) and compute exactly what the host update computes, bit for
bit; everything else goes to the host (`training.updater`).

`SteadyUpdates` settles, in one compiled call made by the callback, the
updates that would keep the masks as they are. `InStepUpdates` goes further
and runs the update inside the compiled train step:

At frequency 1 the host update of `UpdatePruningStep` costs about as much
as a small model's whole step (LeNet-300-100 on TensorFlow, ~2 ms on a
2-4 ms step; docs/architecture.md, "Fast paths"), mostly in reads, writes and
calls between Python and the runtime. On TensorFlow the update can run
inside the train step instead, as tfmot's does, but without its full sort:

- The host still decides *when* and *how much*: before each epoch the
  callback writes a table of the pruned count of each prunable weight at
  every step of the epoch (-1: no update here, or the host makes it). The
  train step reads its row through the optimizer's iteration counter.
- Rows hold counts only for updates whose count equals the previous
  update's (a constant sparsity; the steps after a polynomial ramp): there
  the masks usually stay as they are. The train step checks it per weight
  (the mask prunes exactly `k` weights, the largest pruned |w| lies strictly
  below the smallest kept |w|, everything finite: the exact selection would
  then keep the mask, whatever the tie-break) and writes what the host
  update writes: the baked kernel (+0.0 where pruned), the threshold (the
  largest pruned |w|), the step.
- Where the check fails (a kept weight fell under a drifted pruned one),
  the train step runs the exact selection, XLA-compiled: the k-th smallest
  |w| by a binary search over the float bits (31 counting passes, no sort),
  ties pruned lowest flat index first, NaN handled as `np.partition` does;
  bit for bit the host's `patterns.prune_smallest` (tested).
- Updates whose count changes (a ramp) stay on the host, whose O(n)
  selection is faster than the device's 31 passes; so do schedules whose
  frequency is above `MAX_FREQUENCY` (1) or unknown: the in-step path
  writes the variables at every step (see `InStepUpdates._add_update`).

Measured (LeNet-300-100, F = 1, `benchmarks/overhead.py`, side by side):
pruned/dense 1.34-1.64x, against 1.54-1.77x with `SteadyUpdates` called
from the callback and 1.75-2.04x with host updates only
(docs/architecture.md, "Fast paths").

Not used (the host path instead) for: JAX (Keras's JAX trainer keeps no
assignment to a trainable variable made inside the step) and torch (eager:
no compiled step to join); global scope, block and N:M patterns, custom
scores; distributed variables; `steps_per_execution > 1`, gradient
accumulation and loss scaling (the iteration counter then differs from the
callback's step count); `run_eagerly`; epochs of unknown length.
"""

import numbers
import weakref

import keras
import numpy as np
from keras import ops

from keras_prune import backend

_DTYPES = ("float32", "float16", "bfloat16")


def available():
    """Whether the backend can update masks inside its train step."""
    return backend.compiles_updates()


# Updates further apart stay on the host (and `SteadyUpdates`): the in-step
# path writes the variables at every step, due or not (see `_add_update`),
# which only pays when every step is an update.
MAX_FREQUENCY = 1


def eligible(wrapper):
    """Whether `wrapper`'s updates can run inside the train step."""
    frequency = getattr(wrapper.pruning_schedule, "frequency", None)
    return (
        wrapper.built  # a Sequential without Input builds in its first step
        and available()
        and isinstance(frequency, numbers.Integral)
        and 0 < frequency <= MAX_FREQUENCY
        and wrapper._plain_magnitude
        and all(
            keras.backend.standardize_dtype(v.dtype) in _DTYPES
            for v in wrapper._prunable
        )
        and not any(backend.is_distributed(v) for v in wrapper._prunable)
    )


def model_allows(model):
    """Whether `model`'s fit counts steps as the callback does."""
    if not available() or getattr(model, "run_eagerly", False):
        return False
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or getattr(optimizer, "iterations", None) is None:
        return False
    if int(getattr(model, "steps_per_execution", 1) or 1) != 1:
        return False
    if getattr(optimizer, "gradient_accumulation_steps", None):
        return False
    return not isinstance(optimizer, keras.optimizers.LossScaleOptimizer)


class InStepUpdates:
    """A model's in-step mask updates for its optimizer (TensorFlow).

    Holds two TensorFlow variables outside Keras's tracking (never saved):
    the table of counts (rows: steps from `start`; columns: the prunable
    weights of `wrappers`, in order) and `start`. Inactive (one row of -1)
    outside a fit. The first wrapper called in a traced train step adds the
    update of all of them (one set of conditionals per step, not per
    layer); the later ones find it there.
    """

    def __init__(self, wrappers, iterations):
        import tensorflow as tf

        self.wrappers = list(wrappers)
        self.iterations = iterations
        self.columns = sum(len(w._prunable) for w in self.wrappers)
        self.traced = False
        self._graphs = weakref.WeakSet()
        self.table = tf.Variable(
            self._idle(), shape=tf.TensorShape([None, self.columns]),
            trainable=False, name="in_step_table",
        )
        self.start = tf.Variable(
            np.int64(0), trainable=False, name="in_step_start"
        )
        self._compiled = tf.function(
            self._update, jit_compile=True, autograph=False
        )

    def _idle(self):
        return np.full((1, self.columns), -1, np.int32)

    def activate(self, start, rows):
        """Counts for the steps `start, start + 1, ...` (int32 `rows`)."""
        self.start.assign(np.int64(start))
        self.table.assign(np.asarray(rows, np.int32).reshape(-1, self.columns))

    def deactivate(self):
        self.table.assign(self._idle())

    def run(self):
        """Adds the step's update to the graph being traced, once."""
        import tensorflow as tf
        from keras.src.backend.common.variables import AutocastScope

        graph = tf.compat.v1.get_default_graph()
        if graph in self._graphs:
            return
        self._graphs.add(graph)
        self.traced = True
        # Inside a mixed-precision layer's call, float32 variables read as
        # float16/bfloat16: the update must see (and write) their own values.
        with AutocastScope(None):
            self._add_update()

    def _add_update(self):
        """The update as graph ops: pure conditionals, then the writes.

        Measured inside a LeNet-300-100 train step (1 thread, per step):
        a `tf.cond` whose branches read or assign a trainable variable is
        recorded by the train step's gradient tape (its intermediates kept
        as outputs) and cost ~0.7 ms even when it did nothing; XLA's CPU
        reductions run ~0.3 ms per max or min over 235 K weights, and an
        XLA call that reads and assigns resource variables ~0.2 ms per
        variable. So: the conditionals only see gradient-stopped values
        (never recorded), the check is plain TensorFlow kernels (~0.1 ms for
        LeNet's three in a bare `tf.function`), XLA only computes the rare
        selection, and the kernels and thresholds are assigned outside,
        unconditionally (the old values where nothing is due); the masks
        only when the selection ran.
        """
        import tensorflow as tf

        step = tf.cast(self.iterations.value, tf.int64) - self.start
        rows = tf.shape(self.table, out_type=tf.int64)[0]
        inside = tf.logical_and(step >= 0, step < rows)
        row = tf.gather(self.table, tf.clip_by_value(step, 0, rows - 1))
        counts = tf.where(inside, row, -1)
        self._apply(counts, tf.cast(self.iterations.value, tf.int32))

    def _apply(self, counts, step):
        """Updates the weights whose count is >= 0 to it; records `step`."""
        import tensorflow as tf

        slots = self._slots()
        values = [tf.stop_gradient(v.value) for v, _, _ in slots]
        keeps = [mask.value for _, mask, _ in slots]
        cuts = [threshold.value for _, _, threshold in slots]
        new_values, new_keeps, new_cuts, selected = tf.cond(
            tf.reduce_any(counts >= 0),
            lambda: self._compute(counts, values, keeps, cuts),
            lambda: (values, keeps, cuts, tf.constant(False)),
        )
        for (variable, _, threshold), value, cut in zip(
            slots, new_values, new_cuts
        ):
            variable.assign(value)
            threshold.assign(cut)

        def write_masks():
            for (_, mask, _), keep in zip(slots, new_keeps):
                mask.assign(keep)
            return tf.constant(True)

        # Masks change only where the selection ran; a bool mask's write
        # costs ~0.3 ms a step inside LeNet's train step (instep_cost.py).
        # Not recorded by the gradient tape: masks are not trainable.
        tf.cond(selected, write_masks, lambda: tf.constant(False))
        column = 0
        for wrapper in self.wrappers:
            width = len(wrapper._prunable)
            due = tf.reduce_any(counts[column:column + width] >= 0)
            wrapper.pruning_step.assign(
                tf.where(due, step, wrapper.pruning_step.value)
            )
            column += width
        return tf.constant(True)

    def _slots(self):
        return [
            (variable, mask, threshold)
            for wrapper in self.wrappers
            for variable, mask, threshold in zip(
                wrapper._prunable, wrapper.masks, wrapper.thresholds
            )
        ]

    def _compute(self, counts, values, keeps, cuts):
        """What to write (pure): the steady masks, else the selection."""
        import tensorflow as tf

        checks, largest = [], []
        for i, (value, keep) in enumerate(zip(values, keeps)):
            ok, largest_pruned = _steady(value, keep, counts[i])
            checks.append(tf.logical_or(ok, counts[i] < 0))
            largest.append(largest_pruned)

        def steady():
            # The masks stay: bake (+0.0 where pruned), new thresholds.
            out_values, out_cuts = [], []
            for i, (value, keep, cut) in enumerate(zip(values, keeps, cuts)):
                due = counts[i] >= 0
                baked = tf.where(keep, value, tf.zeros_like(value))
                out_values.append(tf.where(due, baked, value))
                out_cuts.append(tf.where(due, largest[i], cut))
            return out_values, list(keeps), out_cuts, tf.constant(False)

        def selected():
            out_values, out_keeps, out_cuts = self._compiled(
                counts, values, keeps, cuts
            )
            return out_values, out_keeps, out_cuts, tf.constant(True)

        return tf.cond(tf.reduce_all(tf.stack(checks)), steady, selected)

    @staticmethod
    def _update(counts, values, keeps, cuts):
        """The XLA-compiled body: per weight, check, else select.

        Returns the values to write: the baked weights, masks and
        thresholds where `counts` names an update (>= 0), else the old ones.
        """
        import tensorflow as tf

        out_values, out_keeps, out_cuts = [], [], []
        for i, (value, keep, cut) in enumerate(zip(values, keeps, cuts)):
            k = counts[i]
            new_keep, new_cut = _steady_or_selected(value, keep, k)
            due = k >= 0
            out_values.append(tf.where(due, _baked(value, new_keep), value))
            out_keeps.append(tf.where(due, new_keep, keep))
            out_cuts.append(tf.where(due, new_cut, cut))
        return out_values, out_keeps, out_cuts


def _steady(value, keep, k):
    """Whether the exact selection of `k` would keep `keep`, in plain ops.

    It would iff the mask prunes exactly `k` (>= 1) weights and the largest
    pruned |w| is below the smallest kept |w| (strictly: then no tie-break
    matters), all |w| finite (their float32 sum is: an overflow only sends
    the update to the exact selection). Returns `(ok, largest pruned |w|)`
    (float32).
    """
    import tensorflow as tf

    score = tf.cast(tf.abs(value), tf.float32)
    size = int(np.prod(value.shape))
    kept = tf.reduce_sum(tf.cast(keep, tf.int32))
    largest_pruned = tf.reduce_max(tf.where(keep, 0.0, score))
    smallest_kept = tf.reduce_min(tf.where(keep, score, float("inf")))
    ok = tf.logical_and(
        tf.logical_and(k >= 1, tf.equal(kept, size - k)),
        tf.logical_and(
            tf.math.is_finite(tf.reduce_sum(score)),
            largest_pruned < smallest_kept,
        ),
    )
    return ok, largest_pruned


def _steady_or_selected(value, keep, k):
    """`(keep, threshold)` of the exact selection of `k` smallest |w|."""
    import tensorflow as tf

    ok, largest_pruned = _steady(value, keep, k)
    return tf.cond(
        ok, lambda: (keep, largest_pruned), lambda: _select(tf.abs(value), k)
    )


def _select(score, k):
    """`patterns.prune_smallest` of |w| on the device, bit for bit.

    The k-th smallest score is found by a binary search over the bits of
    the (non-negative) float32 scores, whose order as int32 is their order
    as floats, NaN after +inf (where `np.partition` puts NaN): 31 counting
    passes. Then, as on the host: keep the scores above it (NaN compares
    false: pruned) and, of those equal to it, all but the first `k - below`
    in flat order.
    """
    import tensorflow as tf

    shape = score.shape
    flat = tf.reshape(tf.cast(score, tf.float32), [-1])
    key = tf.bitcast(flat, tf.int32)

    def body(i, lo, hi):
        mid = lo + (hi - lo) // 2
        enough = tf.reduce_sum(tf.cast(key <= mid, tf.int32)) >= k
        return i + 1, tf.where(enough, lo, mid + 1), tf.where(enough, mid, hi)

    _, _, kth = tf.while_loop(
        lambda i, lo, hi: i < 31,
        body,
        (tf.constant(0), tf.constant(0, tf.int32),
         tf.constant(2**31 - 1, tf.int32)),
    )
    threshold = tf.bitcast(kth, tf.float32)
    below = tf.reduce_sum(tf.cast(flat < threshold, tf.int32))
    tie = tf.equal(flat, threshold)
    rank = tf.cumsum(tf.cast(tie, tf.int32), exclusive=True)
    keep = tf.logical_or(
        flat > threshold, tf.logical_and(tie, rank >= k - below)
    )
    keep = tf.logical_or(keep, k <= 0)  # k = 0: nothing pruned
    threshold = tf.where(k > 0, threshold, 0.0)
    return tf.reshape(keep, shape), threshold


def _baked(value, keep):
    """The host's `weights * keep + 0` (`wrapper._baked`), elementwise.

    Written out, because XLA folds `x + 0.0` (keeping -0.0). Kept: the
    weight, +0.0 for either zero; pruned: +0.0 for a finite weight, and
    for NaN or inf the same `w * 0` the host computes (NaN).
    """
    import tensorflow as tf

    zero = tf.zeros_like(value)
    kept = tf.where(tf.equal(value, 0.0), zero, value)
    pruned = tf.where(tf.math.is_finite(value), zero, value * zero)
    return tf.where(keep, kept, pruned)


class SteadyUpdates:
    """Mask updates that leave the masks as they are, in one compiled call.

    At a schedule step whose target count equals the previous update's
    (a constant sparsity; the steps after a polynomial ramp), the exact
    selection usually picks the same weights again: the pruned ones are
    baked zeros and the kept ones lie above them. Whether it does is
    checkable on the device without a selection: the update would keep
    the masks exactly iff, for every prunable weight, the mask prunes `k`
    weights and the largest pruned |w| is below the smallest kept |w|
    (strictly, so the tie-break cannot matter; all |w| finite). Where that
    holds, one call writes what the host update would have written
    (threshold = the largest pruned |w|, `w * mask` baked with +0.0, the
    step); every other layer gets the host update. TensorFlow only
    (`backend.compiled_update`): there the host update's dozen eager reads
    and assigns per layer cost ~1 ms a step at frequency 1.

    Only for updates at most `MAX_INTERVAL` steps apart: the call is
    compiled once per model (XLA: 0.6 s for LeNet-300-100, 6 s for
    ResNet50), and it saves ~0.3 ms (LeNet) to ~65 ms (ResNet50) per
    update, so it pays for itself within ~100-1,700 updates; at the
    default frequency of 100 that would be 10,000+ steps.
    """

    MAX_INTERVAL = 10

    def __init__(self):
        self._calls = {}

    @classmethod
    def _eligible(cls, wrapper, pruned, step):
        last = wrapper._last_step
        return (
            last is not None
            and 0 <= step - last <= cls.MAX_INTERVAL
            and wrapper._plain_magnitude
            and all(pruned)  # k = 0: the host path's bake turns -0.0 to +0.0
            and wrapper._last_pruned == pruned
            and not any(backend.is_distributed(v) for v in wrapper._prunable)
        )

    def apply(self, wrappers, sparsities, step):
        """Settles what it can; returns the wrappers that need the host.

        Args:
            wrappers: due `PruneLowMagnitude` layers (layer scope).
            sparsities: each one's target sparsity at `step`.
            step: the training step of this update (recorded).
        """
        if not backend.compiles_updates():
            return list(wrappers)
        chosen, counts, rest = [], [], []
        for wrapper, sparsity in zip(wrappers, sparsities):
            pruned = wrapper._num_pruned(sparsity)
            if self._eligible(wrapper, pruned, step):
                chosen.append(wrapper)
                counts.extend(pruned)
            else:
                rest.append(wrapper)
        if not chosen:
            return rest
        key = tuple(id(w) for w in chosen)
        if key not in self._calls:
            self._calls[key] = backend.compiled_update(
                lambda counts, step: _settle(chosen, counts, step)
            )
        call = self._calls[key]
        settled = ops.convert_to_numpy(
            call(np.asarray(counts, "int32"), np.int32(step))
        )
        for wrapper, ok in zip(chosen, settled):
            if ok:
                wrapper._last_step = int(step)
        return rest + [w for w, ok in zip(chosen, settled) if not ok]


# Below this many weights the pruned count is summed in float32, exactly.
_FLOAT_COUNT_LIMIT = 2**24


def _settle(wrappers, counts, step):
    """The traced body of `SteadyUpdates` (keras.ops; assigns inside).

    The pruned count is a float32 sum below 2**24 weights (exact: every
    partial sum is an integer there; a third cheaper than an int32 sum on
    XLA's CPU backend), with `|w| * 0` added to each term: 0 for finite
    weights, NaN for a NaN or infinite one, so that such a weight always
    goes to the host (XLA's max/min do not propagate NaN; this costs no
    extra pass).
    """
    settled = []
    index = 0
    for wrapper in wrappers:
        checks, writes = [], []
        for variable, mask, threshold in zip(
            wrapper._prunable, wrapper.masks, wrapper.thresholds
        ):
            k = counts[index]
            index += 1
            value = variable.value
            score = ops.abs(value)
            keep = mask.value
            inf = ops.cast(float("inf"), score.dtype)
            largest_pruned = ops.max(ops.where(keep, -inf, score))
            smallest_kept = ops.min(ops.where(keep, score, inf))
            poison = ops.cast(ops.multiply(score, 0.0), "float32")
            if int(np.prod(variable.shape)) < _FLOAT_COUNT_LIMIT:
                zero, one = ops.zeros((), "float32"), ops.ones((), "float32")
                pruned = ops.sum(ops.add(ops.where(keep, zero, one), poison))
                k_pruned = ops.cast(k, "float32")
            else:  # int32 count; a separate NaN check
                pruned = ops.sum(ops.cast(ops.logical_not(keep), "int32"))
                pruned = ops.where(
                    ops.equal(ops.sum(poison), 0.0), pruned, -1
                )
                k_pruned = k
            checks.append(
                ops.logical_and(
                    ops.equal(pruned, k_pruned),
                    ops.less(largest_pruned, smallest_kept),
                )
            )
            cut = ops.where(
                ops.greater(k, 0), ops.cast(largest_pruned, "float32"), 0.0
            )
            baked = ops.where(keep, value, ops.zeros_like(value))
            writes.append((variable, baked, threshold, cut))
        ok = ops.all(ops.stack(checks))
        for variable, baked, threshold, cut in writes:
            variable.assign(ops.where(ok, baked, variable.value))
            threshold.assign(ops.where(ok, cut, threshold.value))
        wrapper.pruning_step.assign(
            ops.where(ok, step, wrapper.pruning_step.value)
        )
        settled.append(ok)
    return ops.stack(settled)
