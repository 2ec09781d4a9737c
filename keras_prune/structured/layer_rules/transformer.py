"""Rules of keras-hub's transformer blocks: the channels of their MLPs.

The channel graph does not enter a block (a custom layer); for the block
classes below it knows where the MLP is. A block owns one group: its MLP's
intermediate channels, the outputs of the expanding projections (gate and
up of a gated MLP, coupled) and the rows of the output projection. Those
sizes are one config field of the backbone (`intermediate_dim`), so a
backbone is rebuilt from its config with the new size (`rebuild.py`) and
every block must keep the same number.

Attention heads and the residual width stay whole: these blocks derive the
head size from `hidden_dim // num_heads`, so a config with fewer heads
would rebuild heads of another size; the residual stream starts in the
token embedding, which is shared with the output projection when tied.
"""

import numpy as np

from keras_prune.structured.layer_rules.base import BLOCK
from keras_prune.structured.layer_rules.base import LayerRule
from keras_prune.structured.layer_rules.base import numpy
from keras_prune.structured.layer_rules.base import register_by_name


class TransformerBlock(LayerRule):
    """A block whose MLP is `expand` projections (kernels `(hidden, n)`,
    optional biases `(n,)`), then `output` (kernel `(n, hidden)`).

    Attributes:
        expand: attribute names of the expanding projections.
        output: attribute name of the output projection.
        config_field: the backbone's config field of the MLP width.
        config_scale: the field's value per kept channel (Gemma's
            `intermediate_dim` counts gate and up together: 2).
    """

    role = BLOCK
    expand = ()
    output = None
    config_field = "intermediate_dim"
    config_scale = 1

    def sublayers(self, layer):
        """`([expanding projections], output projection)` of a block."""
        return [getattr(layer, a) for a in self.expand], getattr(
            layer, self.output)

    def channels(self, layer):
        expand, _ = self.sublayers(layer)
        return expand[0].kernel.shape[-1]

    def channel_kernel(self, layer, role):
        if role != "mlp":
            return None
        expand, output = self.sublayers(layer)
        n = self.channels(layer)
        parts = [numpy(p.kernel, np.float64).reshape(-1, n) for p in expand]
        parts.append(numpy(output.kernel, np.float64).reshape(n, -1).T)
        return np.concatenate(parts, axis=0)

    def sliced(self, layer, kept):
        """dict `id(variable)` -> its value keeping the MLP channels
        `kept`."""
        expand, output = self.sublayers(layer)
        found = {}
        for p in expand:
            found[id(p.kernel)] = numpy(p.kernel).take(kept, axis=-1)
            if getattr(p, "bias", None) is not None:
                found[id(p.bias)] = numpy(p.bias).take(kept, axis=0)
        found[id(output.kernel)] = numpy(output.kernel).take(kept, axis=0)
        return found

    def zero_channels(self, layer, removed):
        """Nothing of the MLP channels `removed` reaches the block's output:
        zeros in those rows of the output projection (in place)."""
        _, output = self.sublayers(layer)
        value = numpy(output.kernel).copy()
        value[list(removed)] = 0
        output.kernel.assign(value)


@register_by_name("keras_hub", "TransformerEncoder", "TransformerDecoder")
class KerasHubTransformer(TransformerBlock):
    """BERT, GPT-2, ... (keras_hub.layers.TransformerEncoder/Decoder)."""

    expand = ("_feedforward_intermediate_dense",)
    output = "_feedforward_output_dense"


@register_by_name("keras_hub", "LlamaTransformerDecoder")
class LlamaDecoder(TransformerBlock):
    """Llama's gated MLP: gate and up projections, then down."""

    expand = ("_feedforward_intermediate_dense", "_feedforward_gate_dense")
    output = "_feedforward_output_dense"


@register_by_name("keras_hub", "GemmaDecoderBlock")
class GemmaDecoder(TransformerBlock):
    """Gemma's gated MLP (EinsumDense); `intermediate_dim` is twice the
    width of each projection."""

    expand = ("gating_ffw", "gating_ffw_2")
    output = "ffw_linear"
    config_scale = 2
