"""Rules of the layers without a kernel: elementwise layers, pooling,
merges, concatenation, flattening and reshaping, and the others whose work
is no multiply-accumulate."""

from keras import layers as L
from keras.src.ops import numpy as numpy_ops

from keras_prune.structured.layer_rules.base import CONCATENATE
from keras_prune.structured.layer_rules.base import ELEMENTWISE
from keras_prune.structured.layer_rules.base import FLATTEN
from keras_prune.structured.layer_rules.base import GLOBAL_POOLING
from keras_prune.structured.layer_rules.base import MERGE
from keras_prune.structured.layer_rules.base import RESHAPE
from keras_prune.structured.layer_rules.base import LayerRule
from keras_prune.structured.layer_rules.base import register


@register(L.PReLU, L.Softmax, L.Masking, L.Rescaling, L.Permute,
          L.RepeatVector, L.Embedding, L.InputLayer)
class NoMultiplyAccumulate(LayerRule):
    """Elementwise work, data movement or lookups: 0 MACs. The graph does
    not follow these (a PReLU's slopes, a Permute's axes)."""

    def macs(self, layer, input_shapes, output_shapes, arguments):
        return 0, "0: no multiply-accumulate"


@register(
    L.Activation, L.ReLU, L.LeakyReLU, L.ELU, L.Dropout, L.SpatialDropout1D,
    L.SpatialDropout2D, L.SpatialDropout3D, L.GaussianNoise,
    L.GaussianDropout, L.AlphaDropout, L.ActivityRegularization, L.Identity,
    L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D, L.AveragePooling1D,
    L.AveragePooling2D, L.AveragePooling3D, L.ZeroPadding1D,
    L.ZeroPadding2D, L.ZeroPadding3D, L.Cropping1D, L.Cropping2D,
    L.Cropping3D, L.UpSampling1D, L.UpSampling2D, L.UpSampling3D,
    L.Resizing,
)
class Elementwise(NoMultiplyAccumulate):
    """Channel c of the output is computed from channel c of the input."""

    role = ELEMENTWISE


@register(
    L.GlobalAveragePooling1D, L.GlobalAveragePooling2D,
    L.GlobalAveragePooling3D, L.GlobalMaxPooling1D, L.GlobalMaxPooling2D,
    L.GlobalMaxPooling3D,
)
class GlobalPooling(NoMultiplyAccumulate):
    """Channels pass; the positions of a flattened tensor would not."""

    role = GLOBAL_POOLING


@register(L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum,
          numpy_ops.Add, numpy_ops.Subtract, numpy_ops.Multiply)
class Merge(NoMultiplyAccumulate):
    """Channel c of every input meets channel c of the others (also the
    operations `+`, `-` and `*` of Keras tensors, as in `inputs + x`)."""

    role = MERGE


@register(L.Concatenate)
class Concatenate(NoMultiplyAccumulate):
    """On the channel axis: the inputs' channels side by side."""

    role = CONCATENATE


@register(L.Flatten)
class Flatten(NoMultiplyAccumulate):
    """Channel c becomes feature c of every position."""

    role = FLATTEN


@register(L.Reshape)
class Reshape(NoMultiplyAccumulate):
    """A Flatten, or a reshape that keeps the channel axis."""

    role = RESHAPE

    def new_config(self, layer, cut):
        config = layer.get_config()
        config["target_shape"] = tuple(config["target_shape"][:-1]) + (
            len(cut.outputs),)
        return config
