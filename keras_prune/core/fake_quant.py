"""Int8 fake quantization as `model.quantize("int8")` will quantize.

The maths of sparsity-preserving quantization-aware training (see
`keras_prune.prune_preserving_qat`), used by the wrapper's forward pass
when its `qat_mode` is "int8":

- kernels: symmetric abs-max per output slice, `scale = 127 / (max|w| +
  eps)` over the contracted axes (Dense: axis 0; EinsumDense: the kernel
  axes the equation sums over), `q = clip(round(w * scale), -127, 127)`;
- embeddings: the same per row (`axis=-1`);
- inputs of Dense / EinsumDense: abs-max per row over the contracted axes,
  as Keras's default `AbsMaxQuantizer` does at inference.

Gradients pass straight through the rounding (`w + stop_gradient(q/s - w)`).
A pruned weight is zero before quantization, so it stays exactly zero.
"""

import keras
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
