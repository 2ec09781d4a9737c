"""`PruneLowMagnitude`: the mask mechanism.

One generic `keras.layers.Wrapper` holds a non-trainable boolean mask per
prunable variable of the wrapped layer and computes the layer with
`w * mask` substituted for `w` through a `keras.StatelessScope` (what
`Layer.stateless_call` does), so the forward pass sees exact zeros on every
backend, inside `jit`/`tf.function`, under distribution strategies and mixed
precision. Masks change only at schedule steps, on the host (see
`callbacks.UpdatePruningStep`); pruned weights are also baked to zero in the
raw variables then, because optimizer momentum makes them drift a little.
"""

import inspect

import keras
import numpy as np
from keras import ops

from keras_prune import backend
from keras_prune import patterns
from keras_prune import registry
from keras_prune.schedules import ConstantSparsity
from keras_prune.schedules import PruningSchedule

_POOLING_TYPES = ("AVG", "MAX")


def validate_arguments(pruning_schedule, block_size, block_pooling_type):
    """Checks the pruning arguments; returns `block_size` as a tuple."""
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
    if block_size != (1, 1):
        raise NotImplementedError(
            f"block_size={block_size}: block sparsity is not supported yet "
            "in this version of keras-prune; use block_size=(1, 1)."
        )
    return block_size


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


def _untracked(layer, name, variables):
    object.__setattr__(layer, name, tuple(variables))


@keras.saving.register_keras_serializable(package="keras_prune")
class PruneLowMagnitude(keras.layers.Wrapper):
    """Wraps a layer so that its prunable weights are masked.

    Usually created by `keras_prune.prune_low_magnitude`, not directly.

    Args:
        layer: the `keras.layers.Layer` to prune.
        pruning_schedule: a `PruningSchedule` (when and how much).
        block_size: `(1, 1)` for unstructured pruning.
        block_pooling_type: "AVG" or "MAX" (for block sparsity).
        prune_depthwise: also prune depthwise kernels.
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
            pruning_schedule = ConstantSparsity(0.5, 0)
        elif isinstance(pruning_schedule, dict):
            pruning_schedule = keras.saving.deserialize_keras_object(
                pruning_schedule
            )
        self.block_size = validate_arguments(
            pruning_schedule, block_size, block_pooling_type
        )
        kwargs.setdefault("name", f"prune_low_magnitude_{layer.name}")
        kwargs.setdefault("dtype", layer.dtype_policy)
        super().__init__(layer, **kwargs)
        self.pruning_schedule = pruning_schedule
        self.block_pooling_type = block_pooling_type
        self.prune_depthwise = bool(prune_depthwise)
        self.supports_masking = layer.supports_masking
        # Set by UpdatePruningStep / update_masks: training without them would
        # silently never prune.
        self._step_tracked = False
        self._forwarded = {
            name: _accepts(layer.call, name) for name in ("training", "mask")
        }
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
            from keras_prune.callbacks import MISSING_CALLBACK

            raise ValueError(MISSING_CALLBACK)
        kwargs = self._inner_kwargs(training, mask, kwargs)
        trainable = [
            self._masked(v, i)
            for v, i in zip(self._inner_trainable, self._mask_of)
        ]
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

    def update_masks(self, sparsity, step):
        """Recomputes every mask for `sparsity` and bakes `w * mask`.

        Args:
            sparsity: target fraction in [0, 1) of each prunable weight.
            step: the training step this update belongs to (recorded).
        """
        for variable, mask, threshold in zip(
            self._prunable, self.masks, self.thresholds
        ):
            weights = ops.convert_to_numpy(variable.value)
            keep, cut = patterns.magnitude_mask(np.abs(weights), sparsity)
            mask.assign(keep)
            threshold.assign(cut)
            variable.assign(_baked(weights, keep))
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
            }
        )
        return config
