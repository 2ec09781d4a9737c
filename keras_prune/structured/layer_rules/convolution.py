"""Rules of the convolutions: Conv, Conv*Transpose, SeparableConv and
DepthwiseConv (1D/2D/3D where Keras has them)."""

import math

from keras import layers as L

from keras_prune.structured.layer_rules.base import THROUGH
from keras_prune.structured.layer_rules.base import LayerRule
from keras_prune.structured.layer_rules.base import ProducerRule
from keras_prune.structured.layer_rules.base import product
from keras_prune.structured.layer_rules.base import register
from keras_prune.structured.layer_rules.base import zero_entries


@register(L.Conv1D, L.Conv2D, L.Conv3D)
class Convolution(ProducerRule):
    """Kernel `(taps..., in / groups, filters)`.

    With `groups` equal to its input and output channels (ConvNeXt's
    depthwise convolution) each channel is filtered on its own: channels
    pass through, as in a DepthwiseConv with depth_multiplier 1 (kernel
    `(taps..., 1, channels)`)."""

    kernels = {"out": "kernel", "through": "kernel"}

    def role_for(self, layer):
        return THROUGH if _depthwise(layer) else self.role

    def unsupported(self, layer, input_shape):
        if _depthwise(layer):
            return None
        return super().unsupported(layer, input_shape)

    def axes(self, layer, role):
        if _depthwise(layer):
            if role == "through":
                return {(None, "kernel"): (-1, 1), (None, "bias"): (0, 1)}
            return {}
        if role == "out":
            return {(None, "kernel"): (-1, 1), (None, "bias"): (0, 1)}
        if role == "in":
            return {(None, "kernel"): (-2, 1)}
        return {}

    def new_config(self, layer, cut):
        config = super().new_config(layer, cut)
        if _depthwise(layer):
            config["groups"] = len(cut.outputs)
        return config

    def macs(self, layer, input_shapes, output_shapes, arguments):
        inp, out = input_shapes[0], output_shapes[0]
        k = math.prod(layer.kernel_size)
        c_in = product(inp[-1:], "input channels") // layer.groups
        macs = product(out[1:-1], "output") * k * c_in * out[-1]
        return macs, "output positions x taps x in/groups x filters"

    def params(self, layer, input_shape, output_shape, arguments):
        c_in, c_out = input_shape[-1], output_shape[-1]
        k = math.prod(layer.kernel_size)
        return k * (c_in // layer.groups) * c_out + layer.use_bias * c_out


def _depthwise(layer):
    """A grouped convolution with one input and one output channel per
    group."""
    groups = getattr(layer, "groups", 1)
    return (groups > 1 and layer.filters == groups
            and layer.built and layer.kernel.shape[-2] == 1)


@register(L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)
class TransposedConvolution(ProducerRule):
    """Kernel `(taps..., filters, in)`: the output channels come first."""

    fold_axis = ("kernel", -2)

    def axes(self, layer, role):
        if role == "out":
            return {(None, "kernel"): (-2, 1), (None, "bias"): (0, 1)}
        if role == "in":
            return {(None, "kernel"): (-1, 1)}
        return {}

    def macs(self, layer, input_shapes, output_shapes, arguments):
        inp, out = input_shapes[0], output_shapes[0]
        k = math.prod(layer.kernel_size)
        macs = product(inp[1:], "input") * k * out[-1]
        return macs, "input positions x taps x in x filters"

    def params(self, layer, input_shape, output_shape, arguments):
        c_in, c_out = input_shape[-1], output_shape[-1]
        return (math.prod(layer.kernel_size) * c_in * c_out
                + layer.use_bias * c_out)


@register(L.SeparableConv1D, L.SeparableConv2D)
class SeparableConvolution(ProducerRule):
    """A depthwise kernel `(taps..., in, depth_multiplier)`, then a
    pointwise kernel `(1..., in * depth_multiplier, filters)` whose rows
    come `depth_multiplier` per input channel."""

    kernels = {"out": "pointwise_kernel"}
    fold_axis = ("pointwise_kernel", -1)

    def axes(self, layer, role):
        if role == "out":
            return {(None, "pointwise_kernel"): (-1, 1),
                    (None, "bias"): (0, 1)}
        if role == "in":
            return {(None, "depthwise_kernel"): (-2, 1),
                    (None, "pointwise_kernel"): (-2, layer.depth_multiplier)}
        return {}

    def zeroed_weights(self, layer, role, rows):
        # The pointwise rows are the only way from an input channel to the
        # output; the depthwise kernel is left as it is.
        key = (None, "pointwise_kernel")
        axes = {k: v for k, v in self.axes(layer, role).items() if k == key}
        return zero_entries(self, layer, axes, rows)

    def macs(self, layer, input_shapes, output_shapes, arguments):
        inp, out = input_shapes[0], output_shapes[0]
        k = math.prod(layer.kernel_size)
        middle = product(inp[-1:], "input channels") * layer.depth_multiplier
        positions = product(out[1:-1], "output")
        macs = positions * (k * middle + middle * out[-1])
        return macs, "depthwise taps + pointwise, per output position"

    def params(self, layer, input_shape, output_shape, arguments):
        middle = input_shape[-1] * layer.depth_multiplier
        c_out = output_shape[-1]
        return (math.prod(layer.kernel_size) * middle + middle * c_out
                + layer.use_bias * c_out)


@register(L.DepthwiseConv1D, L.DepthwiseConv2D)
class DepthwiseConvolution(LayerRule):
    """Kernel `(taps..., in, depth_multiplier)`: each channel is filtered
    on its own, so channels pass through (with depth_multiplier 1)."""

    role = THROUGH
    kernels = {"through": "kernel"}
    # Output channel c * depth_multiplier + m: the row-major order of the
    # last two axes, on every backend.
    fold_axis = ("kernel", (-2, -1))

    def unsupported(self, layer, input_shape):
        if layer.depth_multiplier != 1:
            return (f"has depth_multiplier {layer.depth_multiplier} (only 1 "
                    "is followed)")
        return None

    def axes(self, layer, role):
        if role == "through":
            return {(None, "kernel"): (-2, 1),
                    (None, "bias"): (0, layer.depth_multiplier)}
        return {}

    def macs(self, layer, input_shapes, output_shapes, arguments):
        k = math.prod(layer.kernel_size)
        macs = product(output_shapes[0][1:], "output") * k
        return macs, "output positions x taps x in x depth_multiplier"

    def params(self, layer, input_shape, output_shape, arguments):
        middle = input_shape[-1] * layer.depth_multiplier
        return (math.prod(layer.kernel_size) * middle
                + layer.use_bias * middle)
