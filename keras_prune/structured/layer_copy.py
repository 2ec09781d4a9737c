"""New layers made from an old one's config, created with known weights.

Surgery (`surgery.py`) and BatchNormalization folding (`fold.py`) both build
new layers from a config and then give them computed weights.
"""

import keras
from keras import layers as L

# Initializer attribute of each variable name (DepthwiseConv's is "kernel").
_INITIALIZERS = {
    "kernel": ("kernel_initializer", "depthwise_initializer"),
    "bias": ("bias_initializer",),
    "depthwise_kernel": ("depthwise_initializer",),
    "pointwise_kernel": ("pointwise_initializer",),
    "gamma": ("gamma_initializer",),
    "beta": ("beta_initializer",),
    "moving_mean": ("moving_mean_initializer",),
    "moving_variance": ("moving_variance_initializer",),
}


class _Value(keras.initializers.Initializer):
    """Creates a variable with a known value.

    New shapes would otherwise run the random initializers once each (on
    JAX one compilation per shape: seconds for a MobileNet), only for the
    weights to be overwritten.
    """

    def __init__(self, value):
        self.value = value

    def __call__(self, shape, dtype=None):
        return keras.ops.cast(self.value.reshape(shape), dtype)


def from_config(layer, config):
    """A new layer of `layer`'s class from `config`.

    Args:
        layer: the layer to copy.
        config: its (possibly changed) config.

    Returns:
        The new, unbuilt layer.
    """
    if isinstance(layer, L.Lambda):
        # A fresh Lambda around the same Python function: from_config would
        # round-trip its bytecode, which loses the function's globals.
        return L.Lambda(
            layer.function,
            output_shape=layer._output_shape,
            mask=layer.mask,
            arguments=layer.arguments,
            name=layer.name,
            dtype=layer.dtype_policy,
        )
    return layer.__class__.from_config(config)


def initialize_with(new, values):
    """Point `new`'s initializers at known values until `restore`.

    Args:
        new: an unbuilt layer.
        values: iterable of `(variable name, NumPy value)`.

    Returns:
        What `restore` needs to put the original initializers back (so
        that the layer's config stays as it was).
    """
    undo = []
    for name, value in values:
        for attr in _INITIALIZERS.get(name, ()):
            if hasattr(new, attr):
                undo.append((attr, getattr(new, attr)))
                setattr(new, attr, _Value(value))
                break
    return new, undo


def restore(initialized):
    """Puts back the initializers `initialize_with` replaced."""
    new, undo = initialized
    for attr, initializer in undo:
        setattr(new, attr, initializer)
