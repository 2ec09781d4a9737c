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

from keras_prune.core.fake_quant import MODES
from keras_prune.core.fake_quant import quantized_by_keras
from keras_prune.core.fake_quant import weight_axis
from keras_prune.core.walk import all_layers
from keras_prune.core.layers import pruned_layers
from keras_prune.core.models import strip_pruning
from keras_prune.core.schedules import FixedMasks
from keras_prune.methods.gradual import prune_low_magnitude


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
           for layer in all_layers(model)):
        raise ValueError(
            f"Model {model.name!r} is quantized already; pass the float "
            "model (prune, strip, then fine-tune with prune_preserving_qat "
            "before model.quantize)."
        )
    if pruned_layers(model):
        model = strip_pruning(model)
    # The masks are the model's zeros, set below: no criterion chose them.
    qat = prune_low_magnitude(model, FixedMasks(0.0), criterion=None)
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
    for layer in all_layers(model):
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
