"""Rules of keras-hub's transformer blocks: their MLP channels and heads.

The channel graph does not enter a block (a custom layer); for the block
classes below it knows where the MLP is. A block owns a group of its MLP's
intermediate channels: the outputs of the expanding projections (gate and
up of a gated MLP, coupled) and the rows of the output projection. Where
the block's config says the head size (Gemma's `head_dim`), it owns a
group of its attention heads too: one channel per key/value head, removed
with the query heads that share it (grouped-query attention). Those sizes
are config fields of the backbone (`intermediate_dim`, `num_query_heads`,
`num_key_value_heads`), so a backbone is rebuilt from its config with the
new sizes (`rebuild.py`) and every block must keep the same numbers.

The other blocks' heads and every residual width stay whole: BERT's, GPT-2's
and Llama's blocks derive the head size from `hidden_dim // num_heads`, so
a config with fewer heads would rebuild heads of another size; the residual
stream starts in the token embedding, shared with the output projection
when tied.
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
    # Grouped-query attention: the attribute of the attention layer, its
    # query, key, value and output projections (kernels with the heads on
    # their first axis) and the config fields of the query and key/value
    # head counts; None: heads stay whole.
    attention = None
    projections = ("query_dense", "key_dense", "value_dense", "output_dense")
    head_fields = ("num_query_heads", "num_key_value_heads")
    # Attention layers whose heads stay whole (the block derives the head
    # size from hidden_dim // num_heads): attribute names.
    whole_attention = ()

    def left_whole(self, layer):
        """`[(attribute, sublayer, reason)]`: the block's attention layers
        whose heads stay whole, for the plan's list of what is not cut."""
        reason = (f"heads left whole: {type(layer).__name__} derives the "
                  "head size from hidden_dim // num_heads, so its config "
                  "cannot hold fewer heads of the same size (the block's "
                  "MLP channels are pruned)")
        return [(name, getattr(layer, name), reason)
                for name in self.whole_attention
                if getattr(layer, name, None) is not None]

    def groups(self, layer):
        """dict role -> channels of the groups the block owns."""
        found = {"mlp": self.channels(layer)}
        if self.attention is not None:
            found["heads"] = self.heads(layer)[0]
        return found

    def heads(self, layer):
        """`(key/value heads, query heads per key/value head)`."""
        attention = getattr(layer, self.attention)
        kv = attention.num_key_value_heads
        return kv, attention.num_query_heads // kv

    def _projections(self, layer):
        attention = getattr(layer, self.attention)
        return [getattr(attention, name) for name in self.projections]

    def sublayers(self, layer):
        """`([expanding projections], output projection)` of a block."""
        return [getattr(layer, a) for a in self.expand], getattr(
            layer, self.output)

    def channels(self, layer):
        expand, _ = self.sublayers(layer)
        return expand[0].kernel.shape[-1]

    def channel_kernel(self, layer, role):
        if role == "heads" and self.attention is not None:
            kv, _ = self.heads(layer)
            return np.concatenate(
                [numpy(p.kernel, np.float64).reshape(kv, -1).T
                 for p in self._projections(layer)], axis=0)
        if role != "mlp":
            return None
        expand, output = self.sublayers(layer)
        n = self.channels(layer)
        parts = [numpy(p.kernel, np.float64).reshape(-1, n) for p in expand]
        parts.append(numpy(output.kernel, np.float64).reshape(n, -1).T)
        return np.concatenate(parts, axis=0)

    def sliced(self, layer, role, kept):
        """dict `id(variable)` -> its value keeping the channels `kept` of
        the block's group `role` (`"mlp"` or `"heads"`)."""
        if role == "heads":
            _, per_kv = self.heads(layer)
            query, key, value, output = self._projections(layer)
            queries = [k * per_kv + g for k in kept for g in range(per_kv)]
            return {id(p.kernel): numpy(p.kernel).take(rows, axis=0)
                    for p, rows in ((query, queries), (key, kept),
                                    (value, kept), (output, queries))}
        expand, output = self.sublayers(layer)
        found = {}
        for p in expand:
            found[id(p.kernel)] = numpy(p.kernel).take(kept, axis=-1)
            if getattr(p, "bias", None) is not None:
                found[id(p.bias)] = numpy(p.bias).take(kept, axis=0)
        found[id(output.kernel)] = numpy(output.kernel).take(kept, axis=0)
        return found

    def zero_channels(self, layer, role, removed):
        """Nothing of the channels `removed` of the group `role` reaches
        the block's output: zeros in those rows of the output projection
        (in place; a head's rows are its query heads')."""
        if role == "heads":
            _, per_kv = self.heads(layer)
            output = self._projections(layer)[-1]
            removed = [k * per_kv + g for k in removed for g in range(per_kv)]
        else:
            _, output = self.sublayers(layer)
        value = numpy(output.kernel).copy()
        value[list(removed)] = 0
        output.kernel.assign(value)

    def config_values(self, layer, role, kept):
        """`[(config field, old value, new value)]` for keeping `kept`
        channels of the group `role` in every block."""
        if role == "heads":
            kv, per_kv = self.heads(layer)
            return [(self.head_fields[0], kv * per_kv, kept * per_kv),
                    (self.head_fields[1], kv, kept)]
        return [(self.config_field, self.channels(layer) * self.config_scale,
                 kept * self.config_scale)]


@register_by_name("keras_hub", "TransformerEncoder", "TransformerDecoder")
class KerasHubTransformer(TransformerBlock):
    """BERT, GPT-2, ... (keras_hub.layers.TransformerEncoder/Decoder)."""

    expand = ("_feedforward_intermediate_dense",)
    output = "_feedforward_output_dense"
    whole_attention = ("_self_attention_layer", "_cross_attention_layer")


@register_by_name("keras_hub", "LlamaTransformerDecoder")
class LlamaDecoder(TransformerBlock):
    """Llama's gated MLP: gate and up projections, then down."""

    expand = ("_feedforward_intermediate_dense", "_feedforward_gate_dense")
    output = "_feedforward_output_dense"
    whole_attention = ("_self_attention_layer",)


@register_by_name("keras_hub", "GemmaDecoderBlock")
class GemmaDecoder(TransformerBlock):
    """Gemma's gated MLP (EinsumDense; `intermediate_dim` is twice the
    width of each projection) and its grouped-query heads (`head_dim` is
    in the config)."""

    expand = ("gating_ffw", "gating_ffw_2")
    output = "ffw_linear"
    config_scale = 2
    attention = "attention"
