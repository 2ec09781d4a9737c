"""Rules of the normalization layers: BatchNormalization and
LayerNormalization on the channel axis pass channels through with
per-channel weights; the others are costed (0 MACs), not followed."""

from keras import layers as L
from keras.src.applications.convnext import LayerScale as ConvNeXtLayerScale

from keras_prune.structured.layer_rules.base import THROUGH
from keras_prune.structured.layer_rules.base import LayerRule
from keras_prune.structured.layer_rules.base import numpy
from keras_prune.structured.layer_rules.base import register

_NOTE = "0: normalization (elementwise; BN folds into the kernel)"


@register(L.GroupNormalization, L.UnitNormalization, L.RMSNormalization,
          L.Normalization)
class Normalization(LayerRule):
    """Elementwise work: no multiply-accumulate."""

    def macs(self, layer, input_shapes, output_shapes, arguments):
        return 0, _NOTE


@register(L.BatchNormalization)
class BatchNormalization(Normalization):
    """gamma, beta, moving mean and variance: one entry per channel."""

    role = THROUGH

    def unsupported(self, layer, input_shape):
        if layer.axis not in (-1, len(input_shape) - 1):
            return f"normalizes axis {layer.axis}, not the channel axis"
        return None

    def axes(self, layer, role):
        if role != "through":
            return {}
        return {(None, w.name): (0, 1) for w in layer.weights}

    def scale(self, layer, role):
        if role != "through" or layer.gamma is None:
            return None
        return numpy(layer.gamma, "float64")

    def params(self, layer, input_shape, output_shape, arguments):
        return input_shape[-1] * (2 + bool(layer.center) + bool(layer.scale))


@register(L.LayerNormalization)
class LayerNormalization(Normalization):
    """Over the channel axis alone: gamma and beta, one entry per channel."""

    role = THROUGH

    def unsupported(self, layer, input_shape):
        if not _channels_only(layer, len(input_shape)):
            return f"normalizes axes {layer.axis}, not only the channels"
        return None

    def axes(self, layer, role):
        if role != "through":
            return {}
        return {(None, w.name): (0, 1) for w in layer.weights}

    def params(self, layer, input_shape, output_shape, arguments):
        if not _channels_only(layer, len(input_shape)):
            return None
        return input_shape[-1] * (bool(layer.center) + bool(layer.scale))


def _channels_only(layer, rank):
    axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [
        layer.axis]
    return [a % rank for a in axes] == [rank - 1]


@register(ConvNeXtLayerScale)
class LayerScale(LayerRule):
    """keras.applications' ConvNeXt LayerScale: `x * gamma`, one gamma per
    channel."""

    role = THROUGH

    def axes(self, layer, role):
        if role != "through":
            return {}
        return {(None, w.name): (0, 1) for w in layer.weights}

    def new_config(self, layer, cut):
        return dict(layer.get_config(), projection_dim=len(cut.inputs))

    def macs(self, layer, input_shapes, output_shapes, arguments):
        return 0, "0: a per-channel scale (elementwise)"

    def params(self, layer, input_shape, output_shape, arguments):
        return input_shape[-1]
