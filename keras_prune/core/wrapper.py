"""`PruneLowMagnitude`: the mask mechanism.

One generic `keras.layers.Wrapper` holds a non-trainable boolean mask per
prunable variable of the wrapped layer and computes the layer with
`w * mask` substituted for `w` through a `keras.StatelessScope` (what
`Layer.stateless_call` does), so the forward pass sees exact zeros on every
backend, inside `jit`/`tf.function`, under distribution strategies and mixed
precision. Its settings are one `PruningSpec`.

The wrapper knows no driver: something above it (`UpdatePruningStep`,
`update_masks`, `prune_now`) decides when masks move and passes the step;
the wrapper scores its weights with its criterion, turns scores into masks
with its pattern (`core.patterns`) and writes them. Pruned weights are also
baked to zero in the raw variables then, because optimizer momentum makes
them drift a little.
"""


import keras
import numpy as np
from keras import ops

from keras_prune import backend
from keras_prune.core import calls
from keras_prune.core import fake_quant
from keras_prune.core import guard
from keras_prune.core import patterns
from keras_prune.core import registry
from keras_prune.core.schedules import FixedMasks
from keras_prune.core.spec import PruningSpec
from keras_prune.criteria.base import ScoringContext


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


def _untracked(layer, name, variables):
    object.__setattr__(layer, name, tuple(variables))


def _spec_setting(name):
    """A wrapper property reading (and replacing) one field of its spec."""

    def get(self):
        return getattr(self.spec, name)

    def set_(self, value):
        self.spec = self.spec.replace(**{name: value})
        if name == "pruning_schedule" and isinstance(value, FixedMasks):
            self._step_tracked = True

    return property(get, set_, doc=f"The spec's `{name}` (settable).")


@keras.saving.register_keras_serializable(package="keras_prune")
class PruneLowMagnitude(keras.layers.Wrapper):
    """Wraps a layer so that its prunable weights are masked.

    Usually created by `keras_prune.prune_low_magnitude`, not directly.

    Args:
        layer: the `keras.layers.Layer` to prune.
        pruning_schedule, block_size, block_pooling_type, prune_depthwise,
        sparsity_m_by_n, scope, global_weighting, qat_mode, criterion: the
            settings of a `PruningSpec` (see there): when and how much,
            which pattern, which ranking, which criterion.
        spec: a `PruningSpec` instead of those settings.
        **kwargs: base `Layer` arguments (`name`, ...).

    Example:

    ```python
    layer = keras_prune.PruneLowMagnitude(
        keras.layers.Dense(10), keras_prune.ConstantSparsity(0.5, 0)
    )
    ```
    """

    # Whether the prunable weights carry learned scores (PruneWithScores).
    learns_scores = False

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
        criterion="magnitude",
        spec=None,
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
        if spec is None:
            spec = PruningSpec(
                pruning_schedule=pruning_schedule,
                block_size=block_size,
                block_pooling_type=block_pooling_type,
                sparsity_m_by_n=sparsity_m_by_n,
                prune_depthwise=prune_depthwise,
                scope=scope,
                global_weighting=global_weighting,
                criterion=criterion,
                qat_mode=qat_mode,
            )
        elif not isinstance(spec, PruningSpec):
            raise ValueError(f"spec must be a PruningSpec, got {spec!r}.")
        if spec.criterion is not None and spec.criterion.learned and not (
            self.learns_scores
        ):
            raise ValueError(
                f"criterion {spec.criterion.name!r} learns its scores: wrap "
                "with PruneWithScores (prune_low_magnitude does)."
            )
        kwargs.setdefault("name", f"prune_low_magnitude_{layer.name}")
        kwargs.setdefault("dtype", layer.dtype_policy)
        super().__init__(layer, **kwargs)
        self.spec = spec
        self.supports_masking = layer.supports_masking
        # Set by the driver (UpdatePruningStep / update_masks): training
        # without one would silently never prune. Masks that no schedule
        # step changes (one-shot pruning) need none.
        self._step_tracked = isinstance(spec.pruning_schedule, FixedMasks)
        guard.install()
        self._forwarded = {
            name: calls.accepts(layer.call, name) for name in ("training", "mask")
        }
        self._first_input = calls.first_parameter(layer.call)
        # Keras checks and splits a call's arguments by the signature of
        # `call`; this one's `**kwargs` would be one dict mixing tensors and
        # Python values (MultiHeadAttention's `value=x, use_causal_mask=False`),
        # which Keras refuses. The wrapped layer's own parameters are what
        # it is called with.
        self._call_signature = calls.signature_with_context(layer.call)
        # Run at the start of every training call (a driver's update that
        # joins the compiled train step); set with `set_train_step_hook`.
        object.__setattr__(self, "_train_step_hook", None)
        # Sees the wrapped layer's inputs at every call (calibration
        # statistics); set with `set_input_observer`.
        object.__setattr__(self, "_input_observer", None)
        # How many weights of each prunable variable the last magnitude
        # update pruned (None: unknown, or masks set another way), and the
        # step of the last update made here: what the fast update paths
        # check (training/tf_fast_path.py).
        self._last_pruned = None
        self._last_step = None
        if layer.built:
            self._create_state()

    @property
    def needs_mask_driver(self):
        """Whether training needs a driver (`UpdatePruningStep`) to move
        the masks at schedule steps (False for `FixedMasks`)."""
        return not isinstance(self.spec.pruning_schedule, FixedMasks)

    def set_train_step_hook(self, hook):
        """`hook()` runs at the start of every training call (None: none).

        A driver uses it to put its mask update inside the compiled train
        step (`training.tf_fast_path.InStepUpdates`).
        """
        object.__setattr__(self, "_train_step_hook", hook)

    def set_input_observer(self, observer):
        """`observer(inputs)` sees the wrapped layer's first input at every
        call (None: none); calibration sets it for an eager pass
        (`criteria.calibrate`)."""
        object.__setattr__(self, "_input_observer", observer)

    pruning_schedule = _spec_setting("pruning_schedule")
    block_size = _spec_setting("block_size")
    block_pooling_type = _spec_setting("block_pooling_type")
    sparsity_m_by_n = _spec_setting("sparsity_m_by_n")
    prune_depthwise = _spec_setting("prune_depthwise")
    scope = _spec_setting("scope")
    global_weighting = _spec_setting("global_weighting")
    qat_mode = _spec_setting("qat_mode")
    criterion = _spec_setting("criterion")

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
            mask = self.add_weight(
                name=f"mask_{i}_{variable.name}",
                shape=variable.shape,
                dtype="bool",
                initializer="ones",
                trainable=False,
            )
            backend.lay_out_like(mask, variable)  # sharded as its kernel
            self.masks.append(mask)
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

    def __call__(self, *args, **kwargs):
        # Layers are also called with their first input by keyword (keras-
        # hub's blocks call `MultiHeadAttention(query=x, value=x)`); this
        # wrapper's `call` takes it as `inputs`, positionally.
        if not args and self._first_input in kwargs:
            args = (kwargs.pop(self._first_input),)
        return super().__call__(*args, **kwargs)

    def _masked(self, variable, index):
        value = variable.value
        if index is None:
            return value
        # A multiply, not `where`: torch's CPU `where` is a slow kernel
        # (forward+backward on LeNet's kernels: 1,138 vs 339 us a step).
        keep = backend.mask_as(self.masks[index].value, value.dtype)
        return ops.multiply(value, keep)

    def call(self, inputs, *args, training=None, mask=None, **kwargs):
        if training:
            if not self._step_tracked:
                raise ValueError(guard.MISSING_CALLBACK)
            if self._train_step_hook is not None:
                self._train_step_hook()
        if self._input_observer is not None:
            self._input_observer(inputs)
        kwargs = self._inner_kwargs(training, mask, kwargs)
        trainable = [
            self._masked(v, i)
            for v, i in zip(self._inner_trainable, self._mask_of)
        ]
        if self.qat_mode:
            # Sparsity-preserving QAT: masked weights (and the inputs) on
            # the int8 grid of model.quantize("int8"); zeros stay zero.
            trainable = [
                fake_quant.fake_quant_weight(self.layer, v, value)
                for v, value in zip(self._inner_trainable, trainable)
            ]
            inputs = fake_quant.fake_quant_inputs(self.layer, inputs)
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
            pattern = (f"sparsity_m_by_n={self.sparsity_m_by_n}"
                       if self.sparsity_m_by_n else "scope='row'")
            if (self.sparsity_m_by_n is not None or self.scope == "row") and (
                registry.input_axis(self.layer, variable) is None
            ):
                raise ValueError(
                    f"{pattern} needs an input "
                    f"dimension to group, and {where} has none (embedding "
                    "tables and depthwise kernels do not). Exclude this "
                    "layer (exclude=[...])."
                )

    def scores(self, context=None, criterion=None):
        """Per prunable weight, its NumPy importance scores.

        From the spec's criterion (|w| for "magnitude"). With
        `global_weighting="size"` in a global ranking, divided by the square
        root of the weight's size: large layers lose more.

        Args:
            context: a `ScoringContext` (data, step, seed) for criteria
                that need more than the weights; default: an empty one.
            criterion: another `Criterion` to score with (default: the
                spec's).
        """
        context = ScoringContext() if context is None else context
        return [self._weighted(s) for s in self._criterion_scores(
            self._prunable, context, criterion)]

    def variable_scores(self, variable, context):
        """`scores` of one prunable variable (recomputed at each call: a
        global ranking reads them twice rather than holding them all)."""
        return self._weighted(self._criterion_scores([variable], context)[0])

    def _criterion_scores(self, variables, context, criterion=None):
        criterion = self.spec.criterion if criterion is None else criterion
        if criterion is None:
            raise ValueError(
                f"The masks of {self.name!r} were set directly (criterion "
                "None, FixedMasks): pass scores to recompute them."
            )
        found = criterion.layer_scores(self.layer, list(variables), context)
        for variable, score in zip(variables, found):
            _check_scores(criterion, variable, score)
        return found

    def _weighted(self, score):
        if self.global_weighting == "size" and self.scope == "global":
            score = score / np.sqrt(score.size, dtype=score.dtype)
        return score

    def compute_masks(self, sparsity, scores=None, context=None):
        """The keep-masks and thresholds for `sparsity` (nothing assigned).

        Args:
            sparsity: target fraction in [0, 1) of each prunable weight
                (N:M: capped by the pattern; scope "row": of each row).
            scores: optional NumPy scores per prunable weight; default:
                the criterion's (`scores(context)`).
            context: the `ScoringContext` of the criterion.

        Returns:
            A list of `(keep, threshold)`, one per prunable weight.
        """
        if scores is None:
            scores = self._criterion_scores(
                self._prunable,
                ScoringContext() if context is None else context,
            )
        found = []
        for variable, score in zip(self._prunable, scores):
            score = np.asarray(score)
            if tuple(score.shape) != tuple(variable.shape):
                raise ValueError(
                    f"Scores of shape {score.shape} for weight "
                    f"{variable.path!r} of shape {tuple(variable.shape)}."
                )
            if self.scope == "row":
                axes = registry.input_axes(self.layer, variable)
                found.append(patterns.row_mask(score, sparsity, axes))
            elif self.sparsity_m_by_n is not None:
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

    def update_masks(self, sparsity, step, scores=None, context=None):
        """Recomputes every mask for `sparsity` and bakes `w * mask`.

        Args:
            sparsity: target fraction in [0, 1) of each prunable weight.
            step: the training step this update belongs to (recorded).
            scores: optional NumPy scores per prunable weight; default:
                the criterion's.
            context: the `ScoringContext` of the criterion.
        """
        self.set_masks(self.compute_masks(sparsity, scores, context), step)
        if scores is None and self.spec.plain_magnitude:
            self._last_pruned = self._num_pruned(sparsity)

    @property
    def _plain_magnitude(self):
        """Unstructured |w| masks of this layer alone: what the fast update
        paths compute."""
        return self.spec.plain_magnitude

    def _num_pruned(self, sparsity):
        return tuple(
            patterns.num_pruned(int(np.prod(v.shape)), sparsity)
            for v in self._prunable
        )

    def set_masks(self, masks, step):
        """Assigns `(keep, threshold)` per prunable weight; bakes `w * mask`.

        Only what changes is written: at frequency 1 with a constant
        sparsity the masks are usually the same as before, and each skipped
        assign saves 0.1-0.2 ms on TensorFlow and JAX (docs/architecture.md,
        "Fast paths"). The step is always recorded.

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
            weights = backend.host_view(variable)
            baked = _baked(weights, keep)
            if not np.array_equal(backend.host_view(mask), keep):
                writes.append((mask, keep))
            cut = np.float32(cut)
            if backend.host_view(threshold) != cut:
                writes.append((threshold, cut))
            if not _same_bits(baked, weights):
                writes.append((variable, baked))
        for variable, value in writes:
            backend.assign(variable, value)
        self.pruning_step.assign(int(step))

    def bake(self):
        """Writes `w * mask` into the raw variables (exact zeros)."""
        for variable, mask in zip(self._prunable, self.masks):
            keep = ops.convert_to_numpy(mask.value)
            if keep.all():
                continue
            weights = ops.convert_to_numpy(variable.value)
            backend.assign(variable, _baked(weights, keep))

    # ---- serialization ---------------------------------------------------

    def get_config(self):
        config = super().get_config()
        config.update(self.spec.get_config())
        return config


def _check_scores(criterion, variable, score):
    shape = tuple(np.shape(score))
    if shape != tuple(variable.shape):
        raise ValueError(
            f"criterion {criterion.name or criterion!r} returned scores of "
            f"shape {shape} for {variable.path!r}, whose shape is "
            f"{tuple(variable.shape)}."
        )
