"""`PruneLowMagnitude`: the mask mechanism.

One generic `keras.layers.Wrapper` holds a non-trainable boolean mask per
prunable variable of the wrapped layer and computes the layer with
`w * mask` substituted for `w` through a `keras.StatelessScope` (what
`Layer.stateless_call` does), so the forward pass sees exact zeros on every
backend, inside `jit`/`tf.function`, under distribution strategies and mixed
precision. Masks change only at schedule steps, on the host (see
`callbacks.UpdatePruningStep`; `SteadyUpdates` settles the steps that would
not change them in one compiled call, and on TensorFlow `instep` does so
inside the train step); pruned weights are also baked to zero
in the raw variables then, because optimizer momentum makes them drift a
little.
"""

import inspect

import keras
import numpy as np
from keras import ops

from keras_prune.core import backend
from keras_prune.training import tf_fast_path as instep
from keras_prune.core import patterns
from keras_prune.methods import qat
from keras_prune.core import registry
from keras_prune.core.schedules import ConstantSparsity
from keras_prune.core.schedules import FixedMasks
from keras_prune.core.schedules import PruningSchedule

_POOLING_TYPES = ("AVG", "MAX")


_SCOPES = ("layer", "global")
_WEIGHTINGS = (None, "size")


def validate_arguments(
    pruning_schedule,
    block_size,
    block_pooling_type,
    sparsity_m_by_n=None,
    scope="layer",
    global_weighting=None,
):
    """Checks the pruning arguments before any work.

    Returns:
        `(block_size, sparsity_m_by_n)` as tuples (m_by_n may be None).
    """
    if not isinstance(pruning_schedule, PruningSchedule):
        raise ValueError(
            "pruning_schedule must be a keras_prune.PruningSchedule (e.g. "
            f"ConstantSparsity(0.5, 0)), got {pruning_schedule!r}."
        )
    if block_pooling_type not in _POOLING_TYPES:
        raise ValueError(
            f"block_pooling_type must be 'AVG' or 'MAX', got "
            f"{block_pooling_type!r}."
        )
    block_size = tuple(block_size)
    if len(block_size) != 2 or not all(
        isinstance(b, (int, np.integer)) and b >= 1 for b in block_size
    ):
        raise ValueError(
            f"block_size must be two positive integers, got {block_size!r}."
        )
    block_size = tuple(int(b) for b in block_size)
    if scope not in _SCOPES:
        raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}.")
    if global_weighting not in _WEIGHTINGS:
        raise ValueError(
            "global_weighting must be None or 'size', got "
            f"{global_weighting!r}."
        )
    if sparsity_m_by_n is not None:
        sparsity_m_by_n = _check_m_by_n(sparsity_m_by_n, pruning_schedule)
        if block_size != (1, 1):
            raise ValueError(
                f"sparsity_m_by_n={sparsity_m_by_n} and block_size="
                f"{block_size} cannot be combined: choose one pattern."
            )
    if scope == "global" and (block_size != (1, 1) or sparsity_m_by_n):
        raise ValueError(
            "scope='global' ranks single weights across layers; it does not "
            "combine with block_size or sparsity_m_by_n (use scope='layer')."
        )
    return block_size, sparsity_m_by_n


def _check_m_by_n(m_by_n, schedule):
    try:
        m, n = (int(v) for v in m_by_n)
        valid = (m, n) == tuple(m_by_n) and 0 < m < n
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(
            "sparsity_m_by_n must be (m, n) with 0 < m < n: m zeros in every "
            f"n consecutive weights, e.g. (2, 4); got {m_by_n!r}."
        )
    final = None if schedule is None else _final_sparsity(schedule)
    if final is not None and not np.isclose(final, m / n):
        raise ValueError(
            f"sparsity_m_by_n=({m}, {n}) prunes exactly {m / n:.0%} of the "
            f"weights, but the pruning schedule ends at {final:.0%}. Give the "
            f"schedule a final sparsity of {m / n} (ConstantSparsity({m / n}, "
            f"begin_step) for one-shot {m}:{n}, PolynomialDecay(0.0, {m / n}, "
            "...) for gradual), or leave pruning_schedule out."
        )
    return m, n


def _final_sparsity(schedule):
    for name in ("final_sparsity", "target_sparsity"):
        if hasattr(schedule, name):
            return float(getattr(schedule, name))
    return None


def default_schedule(sparsity_m_by_n=None):
    """tfmot's default `ConstantSparsity(0.5, 0)`; for N:M, one-shot m/n."""
    if sparsity_m_by_n is None:
        return ConstantSparsity(0.5, 0)
    m, n = _check_m_by_n(sparsity_m_by_n, None)
    return ConstantSparsity(m / n, 0)


def _accepts(fn, name):
    params = inspect.signature(fn).parameters
    return name in params or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
    )


def _baked(weights, keep):
    """`weights` with exact +0.0 where `keep` is False (NumPy, host side).

    A multiply (75 us for 235 K weights, `np.where(...).astype` 411 us);
    `+= 0` turns the -0.0 of negative pruned weights into +0.0, so baked
    checkpoints hold no stray sign bits.
    """
    baked = weights * keep
    baked += baked.dtype.type(0)
    return baked


def _same_bits(a, b):
    """Whether two NumPy arrays hold the same bits (+0.0 differs from -0.0)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    unsigned = np.dtype(f"u{a.dtype.itemsize}")
    try:
        return bool(np.array_equal(a.view(unsigned), b.view(unsigned)))
    except ValueError:  # a view of another item size is impossible
        return False


def _host_value(variable):
    """`variable`'s value as a read-only NumPy array, if possible a view.

    `np.asarray` of the gradient-stopped value shares the backend's CPU
    buffer on TensorFlow, JAX and torch, where `ops.convert_to_numpy` copies
    it (`np.array`; on TensorFlow twice): 3 copies of every weight per
    global update saved. On torch the array is the parameter's own memory,
    which `assign` overwrites in place: it is read-only here, and must be
    read before the variable is assigned. Where no view exists (a GPU
    tensor, torch's bfloat16), a copy.
    """
    value = ops.stop_gradient(variable.value)
    try:
        array = np.asarray(value)
    except (TypeError, RuntimeError, ValueError):
        return ops.convert_to_numpy(value)
    array = array.view()
    array.flags.writeable = False
    return array


def _untracked(layer, name, variables):
    object.__setattr__(layer, name, tuple(variables))


@keras.saving.register_keras_serializable(package="keras_prune")
class PruneLowMagnitude(keras.layers.Wrapper):
    """Wraps a layer so that its prunable weights are masked.

    Usually created by `keras_prune.prune_low_magnitude`, not directly.

    Args:
        layer: the `keras.layers.Layer` to prune.
        pruning_schedule: a `PruningSchedule` (when and how much).
        block_size: `(1, 1)` for unstructured pruning, `(r, c)` to prune
            whole r x c blocks of each weight's `(-1, last axis)` view.
        block_pooling_type: "AVG" or "MAX": how a block's |w| is scored.
        prune_depthwise: also prune depthwise kernels.
        sparsity_m_by_n: `(m, n)`: m zeros in every n consecutive weights
            along the input dimension (tfmot's meaning; `(2, 4)` is 2:4).
        scope: "layer" (each weight reaches the schedule's sparsity) or
            "global" (one threshold across every globally scoped wrapper
            of the model; `UpdatePruningStep` computes it).
        global_weighting: None or "size" (global scores divided by
            sqrt(weight size): large layers are pruned more).
        qat_mode: None or "int8": train under the fake quantization of
            `model.quantize("int8")` (see `prune_preserving_qat`).
        **kwargs: base `Layer` arguments (`name`, ...).

    Example:

    ```python
    layer = keras_prune.PruneLowMagnitude(
        keras.layers.Dense(10), keras_prune.ConstantSparsity(0.5, 0)
    )
    ```
    """

    def __init__(
        self,
        layer,
        pruning_schedule=None,
        block_size=(1, 1),
        block_pooling_type="AVG",
        prune_depthwise=False,
        sparsity_m_by_n=None,
        scope="layer",
        global_weighting=None,
        qat_mode=None,
        **kwargs,
    ):
        if isinstance(layer, PruneLowMagnitude):
            raise ValueError(
                f"Layer {layer.name!r} is already wrapped for pruning; "
                "PruneLowMagnitude must not be applied twice."
            )
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(
                "PruneLowMagnitude expects a keras Layer, got "
                f"{type(layer).__name__}: {layer!r}."
            )
        if pruning_schedule is None:
            pruning_schedule = default_schedule(sparsity_m_by_n)
        elif isinstance(pruning_schedule, dict):
            pruning_schedule = keras.saving.deserialize_keras_object(
                pruning_schedule
            )
        self.block_size, self.sparsity_m_by_n = validate_arguments(
            pruning_schedule,
            block_size,
            block_pooling_type,
            sparsity_m_by_n,
            scope,
            global_weighting,
        )
        kwargs.setdefault("name", f"prune_low_magnitude_{layer.name}")
        kwargs.setdefault("dtype", layer.dtype_policy)
        super().__init__(layer, **kwargs)
        self.pruning_schedule = pruning_schedule
        self.block_pooling_type = block_pooling_type
        self.prune_depthwise = bool(prune_depthwise)
        self.scope = scope
        self.global_weighting = global_weighting
        if qat_mode not in (None,) + qat.MODES:
            raise ValueError(
                f"qat_mode must be None or one of {list(qat.MODES)}, got "
                f"{qat_mode!r}."
            )
        self.qat_mode = qat_mode
        self.supports_masking = layer.supports_masking
        # Set by UpdatePruningStep / update_masks: training without them would
        # silently never prune. Masks that no schedule step changes (one-shot
        # pruning) need no callback.
        self._step_tracked = isinstance(pruning_schedule, FixedMasks)
        self._forwarded = {
            name: _accepts(layer.call, name) for name in ("training", "mask")
        }
        # How many weights of each prunable variable the last magnitude
        # update pruned (None: unknown, or masks set another way), and the
        # step of the last update made here; see `SteadyUpdates`.
        self._last_pruned = None
        self._last_step = None
        if layer.built:
            self._create_state()

    # ---- state -----------------------------------------------------------

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        self._create_state()

    def get_build_config(self):
        return {"layer": self.layer.get_build_config()}

    def build_from_config(self, config):
        if not self.layer.built:
            self.layer.build_from_config(config["layer"])
        self._create_state()

    def _create_state(self):
        if self.built:
            return
        # Caches of the wrapped layer's variables are set with
        # object.__setattr__: Keras's attribute tracking would otherwise make
        # them the wrapper's own variables too (saved twice, reordered).
        _untracked(
            self,
            "_prunable",
            registry.prunable_weights(self.layer, self.prune_depthwise),
        )
        if not self._prunable:
            raise ValueError(
                f"Layer {self.layer.name!r} ({type(self.layer).__name__}) has "
                "no prunable weights, so wrapping it for pruning does nothing. "
                "Pass it unwrapped, or implement get_prunable_weights() "
                "(keras_prune.PrunableLayer) to say which weights to prune."
            )
        self._check_pattern_fits()
        self.masks = []
        self.thresholds = []
        for i, variable in enumerate(self._prunable):
            self.masks.append(
                self.add_weight(
                    name=f"mask_{i}_{variable.name}",
                    shape=variable.shape,
                    dtype="bool",
                    initializer="ones",
                    trainable=False,
                )
            )
            self.thresholds.append(
                self.add_weight(
                    name=f"threshold_{i}_{variable.name}",
                    shape=(),
                    dtype="float32",
                    initializer="zeros",
                    trainable=False,
                )
            )
        # The step of the last mask update; -1 before the first one.
        self.pruning_step = self.add_weight(
            name="pruning_step",
            shape=(),
            dtype="int32",
            initializer=keras.initializers.Constant(-1),
            trainable=False,
        )
        ids = {id(v): i for i, v in enumerate(self._prunable)}
        _untracked(self, "_inner_trainable", self.layer.trainable_variables)
        _untracked(
            self, "_inner_non_trainable", self.layer.non_trainable_variables
        )
        self._mask_of = [ids.get(id(v)) for v in self._inner_trainable]
        self._mask_of_nt = [ids.get(id(v)) for v in self._inner_non_trainable]
        self.built = True

    @property
    def prunable_weights(self):
        """The wrapped layer's variables that the masks apply to."""
        return list(self._prunable)

    # ---- forward ---------------------------------------------------------

    def _masked(self, variable, index):
        value = variable.value
        if index is None:
            return value
        # A multiply, not `where`: torch's CPU `where` is a slow kernel
        # (forward+backward on LeNet's kernels: 1,138 vs 339 us a step).
        keep = backend.mask_as(self.masks[index].value, value.dtype)
        return ops.multiply(value, keep)

    def call(self, inputs, *args, training=None, mask=None, **kwargs):
        if training and not self._step_tracked:
            from keras_prune.training.callbacks import MISSING_CALLBACK

            raise ValueError(MISSING_CALLBACK)
        if training:
            # The mask update of this step, inside the compiled train step
            # (TensorFlow; see `instep.InStepUpdates`).
            in_step = instep.ACTIVE.get(self)
            if in_step is not None:
                in_step.run()
        kwargs = self._inner_kwargs(training, mask, kwargs)
        trainable = [
            self._masked(v, i)
            for v, i in zip(self._inner_trainable, self._mask_of)
        ]
        if self.qat_mode:
            # Sparsity-preserving QAT: masked weights (and the inputs) on
            # the int8 grid of model.quantize("int8"); zeros stay zero.
            trainable = [
                qat.fake_quant_weight(self.layer, v, value)
                for v, value in zip(self._inner_trainable, trainable)
            ]
            inputs = qat.fake_quant_inputs(self.layer, inputs)
        non_trainable = [
            self._masked(v, i)
            for v, i in zip(self._inner_non_trainable, self._mask_of_nt)
        ]
        mapping = list(zip(self._inner_trainable, trainable)) + list(
            zip(self._inner_non_trainable, non_trainable)
        )
        # collect_losses: without it, `add_loss` calls of the wrapped layer and
        # its sub-layers (their activity regularizers) are silently dropped.
        with keras.StatelessScope(
            state_mapping=mapping, collect_losses=True
        ) as scope:
            outputs = self.layer.call(inputs, *args, **kwargs)
        # Write back state the layer updated (BatchNorm-like statistics, RNG
        # seeds); the enclosing scope or backend records the assignment.
        for variable, before in zip(self._inner_non_trainable, non_trainable):
            after = scope.get_current_value(variable)
            if after is not None and after is not before:
                variable.assign(after)
        self._forward_losses(scope)
        self._add_activity_regularization(outputs)
        return outputs

    def _forward_losses(self, scope):
        # Hand the losses the wrapped layer added on as if it had been called
        # directly. Inside an enclosing stateless scope (JAX's train step)
        # they go to that scope: the sub-layer that added one already claims
        # it there, so adding it as the wrapper's too would count it twice.
        outer = scope.original_scope
        for loss in scope.losses:
            if outer is None:
                self.add_loss(loss)
            elif outer.collect_losses:
                outer.add_loss(loss)

    def _add_activity_regularization(self, outputs):
        regularizer = self.layer.activity_regularizer
        if regularizer is None:
            return
        # As `Layer.__call__` does for the layer, which `call` bypasses.
        for output in keras.tree.flatten(outputs):
            if ops.is_tensor(output):
                loss = regularizer(output)
                if len(output.shape) > 0:
                    batch = ops.cast(ops.shape(output)[0], loss.dtype)
                    loss = ops.divide_no_nan(loss, batch)
                self.add_loss(loss)

    def compute_output_shape(self, *args, **kwargs):
        return self.layer.compute_output_shape(*args, **kwargs)

    def compute_output_spec(
        self, inputs, *args, training=None, mask=None, **kwargs
    ):
        kwargs = self._inner_kwargs(training, mask, kwargs)
        return self.layer.compute_output_spec(inputs, *args, **kwargs)

    def _inner_kwargs(self, training, mask, kwargs):
        # Only what the wrapped layer's call accepts: Embedding rejects
        # `training`, Dense rejects `mask`.
        if self._forwarded["training"]:
            kwargs["training"] = training
        if self._forwarded["mask"] and mask is not None:
            kwargs["mask"] = mask
        return kwargs

    def compute_mask(self, inputs, previous_mask=None):
        return self.layer.compute_mask(inputs, previous_mask)

    # ---- mask updates (host side, only at schedule steps) ----------------

    def _check_pattern_fits(self):
        for variable in self._prunable:
            where = (
                f"layer {self.layer.name!r}, weight {variable.path!r} of "
                f"shape {tuple(variable.shape)}"
            )
            if self.block_size != (1, 1):
                rows, cols = patterns.matrix_view(variable.shape)
                if self.block_size[0] > rows or self.block_size[1] > cols:
                    raise ValueError(
                        f"block_size={self.block_size} is larger than the "
                        f"({rows}, {cols}) matrix view of {where}. Use a "
                        "smaller block, or exclude this layer "
                        "(exclude=[...] or per_layer={name: {'block_size': "
                        "(1, 1)}})."
                    )
            if self.sparsity_m_by_n is not None and (
                registry.input_axis(self.layer, variable) is None
            ):
                raise ValueError(
                    f"sparsity_m_by_n={self.sparsity_m_by_n} needs an input "
                    f"dimension to group, and {where} has none (embedding "
                    "tables and depthwise kernels do not). Exclude this "
                    "layer (exclude=[...])."
                )

    def scores(self):
        """Per prunable weight, its NumPy importance scores (|w|).

        With `global_weighting="size"`, divided by the square root of the
        weight's size: in a global ranking, large layers lose more.
        """
        return [self._score(variable) for variable in self._prunable]

    def _score(self, variable):
        # np.abs of a view of the weights: one new array, never their memory.
        score = np.abs(_host_value(variable))
        if self.global_weighting == "size" and self.scope == "global":
            score /= np.sqrt(score.size, dtype=score.dtype)
        return score

    def compute_masks(self, sparsity, scores=None):
        """The keep-masks and thresholds for `sparsity` (nothing assigned).

        Args:
            sparsity: target fraction in [0, 1) of each prunable weight
                (with N:M: of the weights, capped by the pattern).
            scores: optional NumPy scores per prunable weight (default
                `|w|`), e.g. from another pruning criterion.

        Returns:
            A list of `(keep, threshold)`, one per prunable weight.
        """
        if scores is None:  # |w|: a new array, computed from a view
            scores = [np.abs(_host_value(v)) for v in self._prunable]
        found = []
        for variable, score in zip(self._prunable, scores):
            score = np.asarray(score)
            if tuple(score.shape) != tuple(variable.shape):
                raise ValueError(
                    f"Scores of shape {score.shape} for weight "
                    f"{variable.path!r} of shape {tuple(variable.shape)}."
                )
            if self.sparsity_m_by_n is not None:
                axis = registry.input_axis(self.layer, variable)
                found.append(
                    patterns.n_m_mask(
                        score, self.sparsity_m_by_n, sparsity, axis
                    )
                )
            elif self.block_size != (1, 1):
                found.append(
                    patterns.block_mask(
                        score, sparsity, self.block_size,
                        self.block_pooling_type,
                    )
                )
            else:
                found.append(patterns.magnitude_mask(score, sparsity))
        return found

    def update_masks(self, sparsity, step, scores=None):
        """Recomputes every mask for `sparsity` and bakes `w * mask`.

        Args:
            sparsity: target fraction in [0, 1) of each prunable weight.
            step: the training step this update belongs to (recorded).
            scores: optional NumPy scores per prunable weight (default |w|).
        """
        self.set_masks(self.compute_masks(sparsity, scores), step)
        if scores is None and self._plain_magnitude:
            self._last_pruned = self._num_pruned(sparsity)

    @property
    def _plain_magnitude(self):
        """Unstructured |w| masks of this layer alone (no block, N:M,
        global ranking)."""
        return (
            self.scope == "layer"
            and self.block_size == (1, 1)
            and self.sparsity_m_by_n is None
        )

    def _num_pruned(self, sparsity):
        return tuple(
            patterns.num_pruned(int(np.prod(v.shape)), sparsity)
            for v in self._prunable
        )

    def set_masks(self, masks, step):
        """Assigns `(keep, threshold)` per prunable weight; bakes `w * mask`.

        Only what changes is written: at frequency 1 with a constant
        sparsity the masks are usually the same as before, and each skipped
        assign saves 0.1-0.2 ms on TensorFlow and JAX (benchmarks/
        RESULTS.md, "Overhead"). The step is always recorded.

        Args:
            masks: a list of `(keep, threshold)`, one per prunable weight,
                `keep` a bool array of the weight's shape.
            step: the training step this update belongs to (recorded).
        """
        self._last_pruned = None
        self._last_step = int(step)
        writes = []
        for variable, mask, threshold, (keep, cut) in zip(
            self._prunable, self.masks, self.thresholds, masks
        ):
            keep = np.asarray(keep, dtype=bool)
            # Everything is read before anything is assigned: on torch the
            # views share the variables' memory.
            weights = _host_value(variable)
            baked = _baked(weights, keep)
            if not np.array_equal(_host_value(mask), keep):
                writes.append((mask, keep))
            cut = np.float32(cut)
            if _host_value(threshold) != cut:
                writes.append((threshold, cut))
            if not _same_bits(baked, weights):
                writes.append((variable, baked))
        for variable, value in writes:
            variable.assign(value)
        self.pruning_step.assign(int(step))

    def bake(self):
        """Writes `w * mask` into the raw variables (exact zeros)."""
        for variable, mask in zip(self._prunable, self.masks):
            keep = ops.convert_to_numpy(mask.value)
            if keep.all():
                continue
            weights = ops.convert_to_numpy(variable.value)
            variable.assign(_baked(weights, keep))

    # ---- serialization ---------------------------------------------------

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "pruning_schedule": keras.saving.serialize_keras_object(
                    self.pruning_schedule
                ),
                "block_size": list(self.block_size),
                "block_pooling_type": self.block_pooling_type,
                "prune_depthwise": self.prune_depthwise,
                "sparsity_m_by_n": (
                    list(self.sparsity_m_by_n)
                    if self.sparsity_m_by_n
                    else None
                ),
                "scope": self.scope,
                "global_weighting": self.global_weighting,
                "qat_mode": self.qat_mode,
            }
        )
        return config


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


def update_global_masks(wrappers, sparsity, step, scores=None):
    """One magnitude threshold across `wrappers`; exact total count.

    Prunes exactly `num_pruned(total, sparsity)` of all their prunable
    weights together (see `patterns.global_masks`), then sets each
    wrapper's masks and bakes them. O(n): each weight is read three times
    as a view of the backend's buffer (`_host_value`, no copy on CPU):
    twice for its |w| (the selection's two passes, one weight at a time)
    and once to bake it. Extra memory: the bool masks (1/4 of float32
    weights), one weight's scores and temporaries, and its baked copy
    (benchmarks/patterns.py, `--bench global`: <= 1x the weights at 100 M).

    Args:
        wrappers: `PruneLowMagnitude` layers with `scope="global"`.
        sparsity: fraction in [0, 1) of all their prunable weights.
        step: the training step of this update (recorded).
        scores: optional, one list of NumPy scores per wrapper (default:
            each wrapper's `scores()`).

    Returns:
        The global threshold (on the, possibly weighted, scores).
    """
    score_fns, sizes, owners = [], [], []
    for i, wrapper in enumerate(wrappers):
        for j, variable in enumerate(wrapper._prunable):
            if scores is None:
                # |w| computed again for each pass rather than held.

                def fn(wrapper=wrapper, variable=variable):
                    return wrapper._score(variable)

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
