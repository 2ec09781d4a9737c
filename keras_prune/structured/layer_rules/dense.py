"""Rules of Dense (a producer) and EinsumDense (costed, not followed)."""

from keras import layers as L

from keras_prune.structured.layer_rules.base import LayerRule
from keras_prune.structured.layer_rules.base import ProducerRule
from keras_prune.structured.layer_rules.base import product
from keras_prune.structured.layer_rules.base import register


@register(L.Dense)
class Dense(ProducerRule):
    """Kernel `(in, units)`. A Dense reads a flattened tensor (channel c
    at every position) as well as channels."""

    reads_flattened = True

    def channels(self, layer):
        return layer.units

    def new_config(self, layer, cut):
        return dict(layer.get_config(), units=len(cut.outputs))

    def axes(self, layer, role):
        if role == "out":
            return {(None, "kernel"): (1, 1), (None, "bias"): (0, 1)}
        if role == "in":
            return {(None, "kernel"): (0, 1)}
        return {}

    def macs(self, layer, input_shapes, output_shapes, arguments):
        macs = product(input_shapes[0][1:], "input") * output_shapes[0][-1]
        return macs, "positions x in x units"

    def params(self, layer, input_shape, output_shape, arguments):
        c_in, c_out = input_shape[-1], output_shape[-1]
        return c_in * c_out + layer.use_bias * c_out


@register(L.EinsumDense)
class EinsumDense(LayerRule):
    """Costed only: its equation may put the channels anywhere."""

    def macs(self, layer, input_shapes, output_shapes, arguments):
        return (einsum_macs(layer.equation, input_shapes[0],
                            tuple(layer.kernel.shape)),
                "einsum: product of all letter sizes")


def einsum_macs(equation, input_shape, kernel_shape):
    """Multiply-accumulates of `einsum(equation, x, kernel)` for batch 1."""
    left = equation.split("->")[0]
    x_letters, k_letters = left.split(",")
    shape = (1,) + tuple(input_shape[1:])
    sizes = {}
    extra = 1
    if "..." in x_letters:
        head, tail = x_letters.split("...")
        middle = shape[len(head):len(shape) - len(tail)]
        extra = product(middle, "input")
        x_letters = head + tail
        shape = shape[:len(head)] + shape[len(shape) - len(tail):]
    for letter, size in zip(x_letters, shape):
        sizes[letter] = size
    for letter, size in zip(k_letters, kernel_shape):
        sizes.setdefault(letter, size)
    return extra * product(list(sizes.values()), "input")
