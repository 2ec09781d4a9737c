"""RigL (Evci et al. 2020): dynamic sparse training from a random start.

`sparse_init` makes a pruned copy of an untrained model with random masks
at per-layer sparsities ("erk" or "uniform"), fixed for training
(`FixedMasks`). The `RigL` callback then moves them during `model.fit`:
every `delta_t` optimizer steps until `end_fraction` of training, per
weight, it drops the `alpha * cosine` fraction of the active weights with
the smallest |w| and grows as many with the largest |dL/dw| of one seeded
batch of `data`, so every layer keeps its count of active weights exactly.

The gradient of inactive weights needs no custom train step: the loss is
differentiated statelessly (`backend.stateless_loss_gradients`) at the
masked weights `w * m` (inactive weights exactly 0) with all-ones masks
substituted for the wrapper's mask variables, so the gradient w.r.t. each
raw weight equals dL/d(w * m), the gradient of the weight had it been
active. All selections are NumPy on the host, with exact counts and ties
broken by the lower flat index: the same weights, gradients and seed give
the same masks on every backend.
"""

import math
import numbers
import time

import keras
import numpy as np

from keras_prune import backend
from keras_prune.analysis.report import SparsityReport
from keras_prune.core.layers import pruned_layers
from keras_prune.core.patterns import num_pruned
from keras_prune.core.schedules import FixedMasks
from keras_prune.methods.gradual import prune_low_magnitude

DISTRIBUTIONS = ("erk", "uniform")


def sparse_init(model, sparsity, distribution="erk", *, exclude=None,
                seed=0):
    """A sparse copy of an untrained model: random masks, per-layer sizes.

    The start of sparse training (RigL, or static sparse training when no
    callback moves the masks). Each prunable weight gets a random mask
    (seeded NumPy, the same on every backend) with exactly its share of
    the pruned weights:

    - "erk" (Erdős-Rényi-Kernel, RigL's default): the density of a weight
      of shape `(d1, ..., dk)` is proportional to `(d1 + ... + dk) / (d1 *
      ... * dk)` (a Dense kernel: `(fan_in + fan_out) / (fan_in *
      fan_out)`; a Conv kernel adds its kernel dimensions), so small layers
      stay denser. A weight whose density would exceed 1 is kept dense and
      the others are rescaled, as in the paper's code.
    - "uniform": every weight at `sparsity`.

    The per-weight counts are the real targets rounded (largest remainder)
    so that the total is exactly `round(total * sparsity)`. Every prunable
    layer is pruned, the first and the output layer included: on small
    nets ERK leaves the small output layer denser by itself (LeNet-300-100's
    is kept dense at 90 %); pass `exclude=[name]` to keep a layer dense, as
    the paper does with ResNet-50's first convolution (excluded layers do
    not count in `sparsity`).

    Args:
        model: a built Functional or Sequential Keras model (not modified).
        sparsity: fraction in [0, 1) of the prunable weights to prune.
        distribution: "erk" or "uniform".
        exclude: layer names or callables `fn(layer) -> bool` left dense.
        seed: seed of the masks.

    Returns:
        `(pruned, report)`: a pruned copy whose masks are fixed
        (`FixedMasks`: a plain `fit` keeps them; add `keras_prune.RigL` to
        move them) and its `SparsityReport`.

    Example:

    ```python
    import keras
    import keras_prune

    model = keras.Sequential([keras.Input((64,)),
                              keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(10)])
    sparse, report = keras_prune.sparse_init(model, 0.9, "erk")
    ```
    """
    _check_model(model)
    if (not isinstance(sparsity, numbers.Real) or isinstance(sparsity, bool)
            or not 0 <= sparsity < 1):
        raise ValueError(
            f"sparse_init: sparsity must be a fraction in [0, 1), got "
            f"{sparsity!r}; e.g. 0.9 keeps 10 % of the weights."
        )
    if distribution not in DISTRIBUTIONS:
        raise ValueError(
            f"sparse_init: distribution must be one of {list(DISTRIBUTIONS)}"
            f", got {distribution!r}."
        )
    pruned = prune_low_magnitude(model, FixedMasks(sparsity), exclude=exclude,
                                 criterion=None)
    wrappers = pruned_layers(pruned)
    if not wrappers:
        raise ValueError(
            f"sparse_init: model {model.name!r} has no layer with prunable "
            "weights left to prune (Dense, Conv, Embedding, ...); check "
            "exclude=, or pass the model whose layers should be sparse."
        )
    shapes = [tuple(v.shape) for w in wrappers for v in w.prunable_weights]
    counts = iter(pruned_counts(shapes, sparsity, distribution))
    rng = np.random.default_rng(seed)
    for wrapper in wrappers:
        masks, gone, total = [], 0, 0
        for variable in wrapper.prunable_weights:
            size = int(np.prod(variable.shape))
            k = next(counts)
            keep = np.ones(size, bool)
            keep[rng.permutation(size)[:k]] = False
            masks.append((keep.reshape(variable.shape), 0.0))
            gone, total = gone + k, total + size
        wrapper.set_masks(masks, 0)
        wrapper.pruning_schedule = FixedMasks(gone / total)
    return pruned, SparsityReport(pruned)


def layer_densities(shapes, sparsity, distribution="erk"):
    """The real-valued density (kept fraction) of each weight shape.

    "uniform": `1 - sparsity` each. "erk": `eps * sum(shape) / prod(shape)`
    with `eps` such that the kept weights total `(1 - sparsity) * N`;
    weights whose density would exceed 1 are kept dense (those with the
    largest ratio first, then `eps` is solved again for the others).
    """
    sizes = np.array([int(np.prod(s)) for s in shapes], np.float64)
    if distribution == "uniform" or sparsity == 0:
        return [1.0 - float(sparsity)] * len(shapes)
    ratio = np.array([sum(s) / np.prod(s) for s in shapes], np.float64)
    dense = np.zeros(len(shapes), bool)
    while True:
        budget = (1 - sparsity) * sizes.sum() - sizes[dense].sum()
        eps = budget / float(np.sum(ratio[~dense] * sizes[~dense]))
        over = ~dense & (eps * ratio > 1)
        if not over.any():
            break
        dense |= ~dense & (ratio == ratio[~dense].max())
    return [1.0 if d else float(eps * r) for d, r in zip(dense, ratio)]


def pruned_counts(shapes, sparsity, distribution="erk"):
    """How many weights of each shape to prune: `layer_densities` rounded
    by largest remainder (ties: the earlier weight) so that the total is
    exactly `num_pruned(N, sparsity)`; every weight keeps at least one."""
    sizes = [int(np.prod(s)) for s in shapes]
    target = [n * (1 - d) for n, d in
              zip(sizes, layer_densities(shapes, sparsity, distribution))]
    counts = [min(int(math.floor(t + 1e-9)), n - 1)
              for t, n in zip(target, sizes)]
    extra = num_pruned(sum(sizes), sparsity) - sum(counts)
    order = sorted(range(len(sizes)), key=lambda i: (counts[i] - target[i], i))
    while extra > 0:
        progressed = False
        for i in order:
            if extra and counts[i] < sizes[i] - 1 and target[i] > 0:
                counts[i] += 1
                extra -= 1
                progressed = True
        if not progressed:
            break
    return counts


def drop_and_grow(weights, keep, gradient, fraction):
    """RigL's update of one weight's mask (NumPy).

    `k = floor(fraction * active)` active weights with the smallest |w|
    are dropped; then, among all weights not kept (the inactive ones and
    the k just dropped, as in the paper's code), the k with the largest
    |gradient| are grown. Ties go to the lower flat index. A dropped weight
    that is grown again stays active with its value; the others grown are
    new.

    Returns:
        `(new_keep, grown, threshold)`: the new mask, the weights newly
        activated (to be set to 0) and the largest dropped |w|.
    """
    flat_keep = np.asarray(keep, bool).reshape(-1)
    magnitude = np.abs(np.asarray(weights)).reshape(-1)
    score = np.abs(np.asarray(gradient)).reshape(-1)
    active = np.flatnonzero(flat_keep)
    k = int(math.floor(fraction * active.size))
    if k == 0:
        return np.asarray(keep, bool), np.zeros(np.shape(keep), bool), 0.0
    dropped = active[_smallest(magnitude[active], k)]
    kept = flat_keep.copy()
    kept[dropped] = False
    candidates = np.flatnonzero(~kept)
    grown = candidates[_smallest(-score[candidates], k)]
    new_keep = kept
    new_keep[grown] = True
    shape = np.shape(keep)
    return (new_keep.reshape(shape), (new_keep & ~flat_keep).reshape(shape),
            float(magnitude[dropped].max()))


def _smallest(values, k):
    """Indices of the k smallest `values`, ties to the lower index; O(n)."""
    if k >= values.size:
        return np.arange(values.size)
    cut = np.partition(values, k - 1)[k - 1]
    below = np.flatnonzero(values < cut)
    ties = np.flatnonzero(values == cut)[:k - below.size]
    return np.sort(np.concatenate([below, ties]))


def _check_model(model):
    if not isinstance(model, keras.Model) or not model.built:
        raise ValueError(
            f"sparse_init expects a built keras Model, got "
            f"{type(model).__name__}: {model!r}; give it an Input first."
        )


class RigL(keras.callbacks.Callback):
    """Moves the masks of a sparse model during `fit`: RigL's drop and grow.

    At every optimizer step `t` with `t % delta_t == 0`, `0 < t < end_step`
    (`end_step = floor(end_fraction * total_steps)`), before that step's
    training, for each pruned weight: `floor(f(t) * active)` active weights
    with the smallest |w| are dropped and as many with the largest |dL/dw|
    grown (`drop_and_grow`), `f(t) = alpha / 2 * (1 + cos(pi * t /
    end_step))` (the paper's cosine decay). Each layer's count of active
    weights stays exactly what it was. The gradient is the mean loss's on
    one batch of `data` (`batch_size` samples drawn without replacement by
    `np.random.default_rng((seed, t))`, sorted), with `training=False`
    (BatchNorm on its moving statistics, no dropout), at the masked weights
    `w * m` with all-ones masks: the gradient of every weight as if it were
    active (module docstring). Newly grown weights start at exactly 0, and
    their optimizer moments (every slot variable of the weight, e.g.
    Adam's momentum and velocity) are reset to 0 there, as the paper's code
    does. On JAX it touches variables only at update steps, through
    `self.model` (which syncs the trainer's state).

    Start from `keras_prune.sparse_init` (masks fixed, `FixedMasks`): this
    callback refuses a model whose masks follow a moving schedule.

    Args:
        data: `(x, y)` arrays the grow gradients are taken from (e.g. the
            training set).
        total_steps: the optimizer steps of the whole training (epochs x
            steps per epoch).
        delta_t: steps between updates (100 in the paper).
        alpha: the initial drop fraction, in (0, 1) (0.3 in the paper).
        end_fraction: the fraction of `total_steps` after which the masks
            stay fixed, in (0, 1] (0.75 in the paper).
        loss: the loss of the gradients (default: the model's compiled
            loss).
        batch_size: samples of the gradient's batch.
        seed: seed of the batches.

    Attributes:
        updates: one dict per update: `step`, `drop_fraction`, `moved`
            (`{layer name: weights newly activated}`, as many were
            deactivated) and `seconds` (the update's wall time).

    Example:

    ```python
    sparse, _ = keras_prune.sparse_init(model, 0.9)
    sparse.compile("adam", "sparse_categorical_crossentropy")
    steps = 3 * (len(x) // 32)
    sparse.fit(x, y, epochs=3, batch_size=32, callbacks=[
        keras_prune.RigL(data=(x, y), total_steps=steps, delta_t=10)])
    ```
    """

    def __init__(self, data=None, total_steps=None, delta_t=100, alpha=0.3,
                 end_fraction=0.75, *, loss=None, batch_size=32, seed=0):
        super().__init__()
        if data is None:
            raise ValueError(
                "RigL: data is missing: pass data=(x, y), the arrays the "
                "grow gradients are computed on (e.g. the training set)."
            )
        if not isinstance(data, tuple) or len(data) != 2:
            raise ValueError(
                f"RigL: data must be a tuple (x, y) of arrays, got "
                f"{type(data).__name__}; pass data=(x_train, y_train)."
            )
        n_x, n_y = _length(data[0]), _length(data[1])
        if n_x != n_y or n_x == 0:
            raise ValueError(
                f"RigL: data=(x, y) must hold the same number (> 0) of "
                f"samples; got {n_x} inputs and {n_y} targets."
            )
        if not _integer(total_steps) or total_steps < 1:
            raise ValueError(
                f"RigL: total_steps must be an integer >= 1, got "
                f"{total_steps!r}; pass the training's optimizer steps "
                "(epochs x steps per epoch)."
            )
        if not _integer(delta_t) or delta_t < 1:
            raise ValueError(
                f"RigL: delta_t must be an integer >= 1, got {delta_t!r}; "
                "the paper updates every 100 steps."
            )
        if not _real(alpha) or not 0 < alpha < 1:
            raise ValueError(
                f"RigL: alpha must be a fraction in (0, 1), got {alpha!r}; "
                "the paper uses 0.3."
            )
        if not _real(end_fraction) or not 0 < end_fraction <= 1:
            raise ValueError(
                f"RigL: end_fraction must be in (0, 1], got "
                f"{end_fraction!r}; the paper stops updating at 0.75."
            )
        if not _integer(batch_size) or batch_size < 1:
            raise ValueError(
                f"RigL: batch_size must be a positive integer, got "
                f"{batch_size!r}."
            )
        self.end_step = int(math.floor(end_fraction * total_steps))
        if self.end_step <= delta_t:
            raise ValueError(
                f"RigL: no update would happen: the first is at step "
                f"delta_t={delta_t} and updates stop before step "
                f"{self.end_step} (end_fraction x total_steps); lower "
                "delta_t or raise end_fraction."
            )
        self.data = (keras.tree.map_structure(np.asarray, data[0]),
                     np.asarray(data[1]))
        self.total_steps = int(total_steps)
        self.delta_t = int(delta_t)
        self.alpha = float(alpha)
        self.end_fraction = float(end_fraction)
        self.loss = loss
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.updates = []
        self._wrappers = None
        self._gradients = None
        self._gradients_of = None
        self._slots = None
        self._step = None
        self._batch_begin = 0

    def is_update_step(self, step):
        """Whether the masks move before optimizer step `step`."""
        return 0 < step < self.end_step and step % self.delta_t == 0

    def drop_fraction(self, step):
        """`alpha / 2 * (1 + cos(pi * step / end_step))`."""
        return self.alpha / 2 * (1 + math.cos(math.pi * step / self.end_step))

    def batch_indices(self, step):
        """The samples of `data` whose gradient grows weights at `step`."""
        n = _length(self.data[1])
        rng = np.random.default_rng((self.seed, int(step)))
        return np.sort(rng.choice(n, min(self.batch_size, n), replace=False))

    # ---- fit ---------------------------------------------------------------

    def on_train_begin(self, logs=None):
        model = self.model
        wrappers = pruned_layers(model)
        if not wrappers:
            raise ValueError(
                f"RigL: model {model.name!r} has no pruned layers; start "
                "from keras_prune.sparse_init(model, sparsity)."
            )
        for wrapper in wrappers:
            if wrapper.needs_mask_driver:
                raise ValueError(
                    f"RigL: the masks of {wrapper.name!r} follow a "
                    f"{type(wrapper.pruning_schedule).__name__} schedule, "
                    "which moves them too; start from "
                    "keras_prune.sparse_init(model, sparsity) (fixed masks)."
                )
        if self.loss is None and getattr(model, "loss", None) is None:
            raise ValueError(
                "RigL needs a loss for its gradients: pass loss= (e.g. "
                "'sparse_categorical_crossentropy') or compile the model "
                "with one."
            )
        _check_inputs(model, self.data[0])
        self._wrappers = wrappers
        if self._gradients_of is not model:  # kept across fits (compiled)
            self._gradients, self._gradients_of = None, model
        self._slots = None  # a new compile makes a new optimizer
        self._step = None

    def on_train_batch_begin(self, batch, logs=None):
        if self._step is None:
            # Read lazily: BackupAndRestore restores the optimizer in its own
            # on_train_begin, which may run after ours.
            self._step = int(keras.ops.convert_to_numpy(
                self.model.optimizer.iterations))
        self._batch_begin = batch
        per_call = int(getattr(self.model, "steps_per_execution", 1) or 1)
        for step in range(self._step, self._step + per_call):
            if self.is_update_step(step):
                self.update(step)
                return

    def on_train_batch_end(self, batch, logs=None):
        self._step += batch - self._batch_begin + 1

    def on_train_end(self, logs=None):
        self.model  # On JAX, syncs the trainer's state into the variables.
        for wrapper in self._wrappers or ():
            wrapper.bake()

    # ---- the update ----------------------------------------------------------

    def update(self, step):
        """Drops and grows the weights of every pruned layer for `step`."""
        start = time.perf_counter()
        model = self.model  # On JAX, syncs the trainer's state first.
        fraction = self.drop_fraction(step)
        gradients = self._dense_gradients(model, self.batch_indices(step))
        moved = {}
        for wrapper in self._wrappers:
            masks = []
            count = 0
            for variable, mask in zip(wrapper.prunable_weights,
                                      wrapper.masks):
                weights = np.array(backend.host_view(variable))
                keep = np.array(backend.host_view(mask), bool)
                gradient = gradients[id(variable)]
                if not np.isfinite(gradient).all():
                    raise ValueError(
                        f"RigL: the gradient of {variable.path!r} holds NaN "
                        f"or inf at step {step} (a diverged training); lower "
                        "the learning rate."
                    )
                new_keep, grown, threshold = drop_and_grow(
                    weights * keep, keep, gradient, fraction)
                survivors = keep & new_keep
                if not survivors.all():
                    baked = weights * survivors
                    baked += baked.dtype.type(0)  # -0.0 -> +0.0
                    variable.assign(baked)
                if grown.any():
                    self._reset_moments(model, variable, grown)
                masks.append((new_keep, threshold))
                count += int(np.count_nonzero(grown))
            wrapper.set_masks(masks, step)
            moved[wrapper.layer.name] = count
        self.updates.append({"step": int(step), "drop_fraction": fraction,
                             "moved": moved,
                             "seconds": time.perf_counter() - start})

    def _dense_gradients(self, model, indices):
        """{id(prunable variable): dL/d(w * m)} on the batch `indices`."""
        if self._gradients is None:
            loss_fn = keras.losses.get(
                model.loss if self.loss is None else self.loss)

            def mean_loss(y, y_pred):
                return keras.ops.mean(loss_fn(y, y_pred))

            self._gradients = backend.stateless_loss_gradients(model,
                                                               mean_loss)
        masks = {id(v): m for w in self._wrappers
                 for v, m in zip(w.prunable_weights, w.masks)}
        ones = {id(m) for m in masks.values()}
        trainable = [
            np.asarray(backend.host_view(v))
            * np.asarray(backend.host_view(masks[id(v)]), v.dtype)
            if id(v) in masks else v.value
            for v in model.trainable_variables]
        non_trainable = [np.ones(v.shape, bool) if id(v) in ones else v.value
                         for v in model.non_trainable_variables]
        x = keras.tree.map_structure(lambda t: t[indices], self.data[0])
        y = self.data[1][indices]
        _, grads = self._gradients(trainable, non_trainable, x, y)
        return {id(v): g for v, g in zip(model.trainable_variables, grads)
                if id(v) in masks}

    def _reset_moments(self, model, variable, grown):
        """Zeroes the optimizer's slots of `variable` where `grown`."""
        if self._slots is None:
            self._slots = _optimizer_slots(model)
        for slot in self._slots.get(id(variable), ()):
            value = np.array(backend.host_view(slot))
            if value[grown].any():
                value[grown] = 0
                slot.assign(value)


def _optimizer_slots(model):
    """{id(trainable variable): its optimizer slot variables}.

    Keras names a slot `{variable.path with '/' -> '_'}_{slot name}`
    (`Optimizer.add_variable_from_reference`); a slot goes to the variable
    with the longest such prefix and the same shape.
    """
    prefixes = [(v.path.replace("/", "_") + "_", v)
                for v in model.trainable_variables]
    found = {}
    for slot in model.optimizer.variables:
        owners = [(len(p), v) for p, v in prefixes
                  if slot.name.startswith(p)
                  and tuple(slot.shape) == tuple(v.shape)]
        if owners:
            owner = max(owners, key=lambda o: o[0])[1]
            found.setdefault(id(owner), []).append(slot)
    return found


def _check_inputs(model, x):
    inputs = getattr(model, "inputs", None) or []
    arrays = keras.tree.flatten(x)
    if len(inputs) != len(arrays):
        raise ValueError(
            f"RigL: data's x holds {len(arrays)} input array(s), model "
            f"{model.name!r} takes {len(inputs)}; pass its training inputs."
        )
    for tensor, array in zip(inputs, arrays):
        expected = tuple(tensor.shape[1:])
        got = tuple(array.shape[1:])
        if len(expected) != len(got) or any(
                e is not None and e != g for e, g in zip(expected, got)):
            raise ValueError(
                f"RigL: data's inputs have shape {got} per sample, model "
                f"{model.name!r} expects {expected}; pass its training "
                "inputs."
            )


def _length(x):
    return int(np.shape(keras.tree.flatten(x)[0])[0])


def _integer(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
