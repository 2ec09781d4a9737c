"""Sparsity-preserving quantization-aware training (tfmot's "PQAT").

`prune_preserving_qat(model)` returns a copy of a pruned model whose masks
hold (schedule `FixedMasks`) and whose `Dense`, `EinsumDense` and
`Embedding` layers compute with fake-quantized int8 weights (and inputs)
exactly as Keras's `model.quantize("int8")` will quantize them:

- kernels: symmetric abs-max per output slice, `scale = 127 / (max|w| +
  eps)` over the contracted axes (Dense: axis 0; EinsumDense: the kernel
  axes the equation sums over), `q = clip(round(w * scale), -127, 127)`;
- embeddings: the same per row (`axis=-1`);
- inputs of Dense / EinsumDense: abs-max per row over the contracted axes,
  as Keras's default `AbsMaxQuantizer` does at inference.

Gradients pass straight through the rounding (`w + stop_gradient(q/s - w)`).
A pruned weight is zero before quantization, so it stays exactly zero after
it: fine-tune with a plain `fit` (no callback), then `strip_pruning` and
`quantize("int8")`; the int8 model keeps every zero and computes what the
fine-tuned model computed. Other layers (convolutions, which Keras 3.15 does
not quantize) train with their masks held and no fake quantization.
"""

import keras
import numpy as np
from keras import ops

MODES = ("int8",)
_RANGE = 127.0


def quantized_by_keras(layer):
    """Whether `model.quantize("int8")` quantizes `layer` (exact classes:
    Keras refuses subclasses)."""
    return type(layer) in (
        keras.layers.Dense,
        keras.layers.EinsumDense,
        keras.layers.Embedding,
    )


def _einsum_axes(layer):
    """(input axes, kernel axes) that the EinsumDense equation contracts.

    Input axes count from the end (an ellipsis leads the input)."""
    inputs, rest = layer.equation.split(",")
    kernel, output = rest.split("->")
    inputs = inputs.replace("...", "")
    input_axes = tuple(
        i - len(inputs) for i, c in enumerate(inputs) if c not in output
    )
    kernel_axes = tuple(i for i, c in enumerate(kernel) if c not in output)
    return input_axes, kernel_axes


def _fake_quant(x, axis):
    """`x` rounded to the int8 abs-max grid along `axis`; straight-through
    gradient."""
    scale = ops.divide(
        _RANGE,
        ops.add(
            ops.max(ops.abs(x), axis=axis, keepdims=True),
            keras.config.epsilon(),
        ),
    )
    q = ops.clip(ops.round(ops.multiply(x, scale)), -_RANGE, _RANGE)
    return ops.add(x, ops.stop_gradient(ops.subtract(ops.divide(q, scale), x)))


def weight_axis(layer, variable):
    """The axes Keras reduces over when it quantizes `variable` of `layer`,
    or None if it does not quantize it."""
    if not quantized_by_keras(layer):
        return None
    if isinstance(layer, keras.layers.Embedding):
        return -1 if variable is layer.embeddings else None
    if variable is not layer.kernel:
        return None
    if isinstance(layer, keras.layers.EinsumDense):
        return _einsum_axes(layer)[1]
    return 0


def fake_quant_weight(layer, variable, value):
    axis = weight_axis(layer, variable)
    return value if axis is None else _fake_quant(value, axis)


def fake_quant_inputs(layer, inputs):
    if not quantized_by_keras(layer) or isinstance(
        layer, keras.layers.Embedding
    ):
        return inputs
    if isinstance(layer, keras.layers.EinsumDense):
        axis = _einsum_axes(layer)[0]
    else:
        axis = -1
    return _fake_quant(inputs, axis)


def prune_preserving_qat(model, mode="int8"):
    """A copy of a pruned model for sparsity-preserving quantization-aware
    fine-tuning.

    The copy is wrapped with masks that hold the model's zeros (schedule
    `FixedMasks`; the masks of an already wrapped model are kept) and trains
    `Dense`, `EinsumDense` and `Embedding` layers under int8 fake
    quantization matching `model.quantize("int8")`. Fine-tune it with plain
    `fit` (no `UpdatePruningStep` needed), then `strip_pruning(...)` and
    `.quantize("int8")`: the int8 model keeps exactly the pruned zeros.

    Args:
        model: a built Sequential or Functional model: pruned (wrapped by
            `prune_low_magnitude` / `prune_now`, or stripped); not modified.
            A wrapped model is stripped first (its masks become the
            zeros to hold).
        mode: "int8" (the only mode: Keras's int4 packs weights in a way
            that fake quantization here does not reproduce).

    Returns:
        The wrapped copy, not compiled.

    Example:

    ```python
    qat = keras_prune.prune_preserving_qat(pruned)   # pruned: 90 % zeros
    qat.compile("adam", "sparse_categorical_crossentropy")
    qat.fit(x, y, epochs=1)                           # zeros held
    final = keras_prune.strip_pruning(qat)
    final.quantize("int8")                            # zeros kept, int8
    ```
    """
    from keras_prune.methods.gradual import prune_low_magnitude
    from keras_prune.core.layers import pruned_layers
    from keras_prune.methods.gradual import strip_pruning
    from keras_prune.core.schedules import FixedMasks

    if mode not in MODES:
        raise ValueError(
            f"mode must be one of {list(MODES)}, got {mode!r}. "
            "Keras's int4 and float8 modes are not emulated; prune, strip "
            "and call model.quantize('int4') for post-training int4."
        )
    if not isinstance(model, keras.Model):
        raise ValueError(
            "prune_preserving_qat expects a keras.Model, got "
            f"{type(model).__name__}."
        )
    if any(getattr(layer, "quantization_mode", None)
           for layer in model._flatten_layers()):
        raise ValueError(
            f"Model {model.name!r} is quantized already; pass the float "
            "model (prune, strip, then fine-tune with prune_preserving_qat "
            "before model.quantize)."
        )
    if pruned_layers(model):
        model = strip_pruning(model)
    qat = prune_low_magnitude(model, FixedMasks(0.0))
    for wrapper in pruned_layers(qat):
        keeps = []
        for variable in wrapper.prunable_weights:
            keep = ops.convert_to_numpy(variable) != 0
            keeps.append((keep, np.float32(0.0)))
        wrapper.set_masks(keeps, 0)
        total = sum(k.size for k, _ in keeps)
        zeros = total - sum(int(k.sum()) for k, _ in keeps)
        wrapper.pruning_schedule = FixedMasks(min(zeros / total, 0.999999))
        wrapper.qat_mode = mode if any(
            weight_axis(wrapper.layer, v) is not None
            for v in wrapper.prunable_weights
        ) else None
    return qat


_KERAS_MODES = ("int8", "int4", "float8", "gptq", "awq")
# Modes that move every weight to compensate the others' quantization
# error, pruned ones included.
_REFILLING = ("gptq", "awq")


def _pruned_kernels(model):
    """`{layer path: zeros}` of the Dense / EinsumDense / Embedding kernels
    Keras would quantize that hold exact zeros."""
    found = {}
    for layer in model._flatten_layers():
        if not quantized_by_keras(layer) or not layer.built:
            continue
        if getattr(layer, "quantization_mode", None):
            continue
        variable = (
            layer.embeddings
            if isinstance(layer, keras.layers.Embedding)
            else layer.kernel
        )
        zeros = int(np.sum(ops.convert_to_numpy(variable) == 0))
        if zeros:
            found[layer.path] = (zeros, int(np.prod(variable.shape)))
    return found


def quantize(model, mode=None, config=None, filters=None):
    """Keras's `model.quantize` on a stripped copy, keeping the pruned zeros.

    The model is stripped (if it has pruning wrappers) or copied, and the
    copy is quantized with `copy.quantize(mode, config=config,
    filters=filters)`; the input model is not modified. "int8" and "int4"
    keep every pruned zero (symmetric abs-max: `round(0 * s) = 0`);
    "gptq" and "awq" are refused on a pruned model before any work: they
    correct each weight's quantization error by updating the weights not
    yet quantized, pruned ones included, which refills the zeros.

    Args:
        model: a built Sequential or Functional model, pruned or not.
        mode, config, filters: as in `keras.Model.quantize`.

    Returns:
        The quantized copy.

    Example:

    ```python
    small = keras_prune.quantize(pruned, "int8")   # pruned is untouched
    ```
    """
    from keras_prune.core.layers import pruned_layers
    from keras_prune.methods.gradual import strip_pruning

    if not isinstance(model, keras.Model):
        raise ValueError(
            f"quantize expects a keras.Model, got {type(model).__name__}."
        )
    name = mode if mode is not None else getattr(config, "mode", None)
    if name not in _KERAS_MODES:
        raise ValueError(
            f"mode must be one of {list(_KERAS_MODES)} (or a config), got "
            f"{mode!r}."
        )
    if pruned_layers(model):
        copy = strip_pruning(model)
    else:
        copy = keras.models.clone_model(model)
        copy.set_weights(model.get_weights())
    if name in _REFILLING:
        pruned = _pruned_kernels(copy)
        if pruned:
            listed = ", ".join(
                f"{path} ({zeros:,} of {total:,})"
                for path, (zeros, total) in sorted(pruned.items())
            )
            raise ValueError(
                f"mode={name!r} would refill the pruned zeros of {listed}: "
                f"{name.upper()} corrects each weight's quantization error "
                "by updating the weights not yet quantized, pruned ones "
                "included. Use mode='int8' or 'int4' (zeros kept), after "
                "keras_prune.prune_preserving_qat fine-tuning for accuracy."
            )
    copy.quantize(mode, config=config, filters=filters)
    return copy
