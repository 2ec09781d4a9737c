"""One rule per layer class: everything structured pruning knows about it.

| classes | role in the graph | weights sliced | MACs | BN folds in |
|---|---|---|---|---|
| Conv1D/2D/3D | producer (`groups=1`) | kernel, bias | yes | yes |
| Conv1D/2D/3DTranspose | producer | kernel, bias | yes | yes |
| SeparableConv1D/2D | producer | depthwise, pointwise, bias | yes | yes |
| Dense | producer (also reads flattened) | kernel, bias | yes | yes |
| DepthwiseConv1D/2D | through (`depth_multiplier=1`) | kernel, bias | yes | yes |
| BatchNormalization | through (channel axis) | all four | 0 | - |
| LayerNormalization | through (channel axis only) | gamma, beta | 0 | - |
| MultiHeadAttention (exactly) | attention: heads + projections | all | yes | - |
| activations, dropout, pooling, padding, cropping, upsampling, Resizing | elementwise | - | 0 | - |
| GlobalPooling1D/2D/3D | global pooling | - | 0 | - |
| Add, Subtract, Multiply, Average, Maximum, Minimum | merge | - | 0 | - |
| Concatenate, Flatten, Reshape | concatenate, flatten, reshape | - | 0 | - |
| EinsumDense | not followed | - | yes | - |
| keras-hub TransformerEncoder/Decoder, LlamaTransformerDecoder, GemmaDecoderBlock | block: its MLP channels, Gemma's key/value heads (rebuilt from the backbone's config) | MLP and attention projections | not counted | - |
| other normalizations, PReLU, Softmax, Masking, Rescaling, Permute, RepeatVector, Embedding | not followed | - | 0 | - |

A layer of any other class (Lambda, recurrent layers, custom layers) is not
followed (the channels reaching it stay whole) and its MACs are not
counted. To add a class: a `LayerRule` subclass and `@register(cls)` in
one of these modules (or your own, imported before pruning).
"""

from keras_prune.structured.layer_rules import attention  # noqa: F401
from keras_prune.structured.layer_rules import convolution  # noqa: F401
from keras_prune.structured.layer_rules import dense  # noqa: F401
from keras_prune.structured.layer_rules import normalization  # noqa: F401
from keras_prune.structured.layer_rules import shape  # noqa: F401
from keras_prune.structured.layer_rules import transformer  # noqa: F401
from keras_prune.structured.layer_rules.attention import head_kernel
from keras_prune.structured.layer_rules.base import ATTENTION
from keras_prune.structured.layer_rules.base import ATTENTION_INPUTS
from keras_prune.structured.layer_rules.base import BLOCK
from keras_prune.structured.layer_rules.base import CONCATENATE
from keras_prune.structured.layer_rules.base import ELEMENTWISE
from keras_prune.structured.layer_rules.base import FLATTEN
from keras_prune.structured.layer_rules.base import GLOBAL_POOLING
from keras_prune.structured.layer_rules.base import MERGE
from keras_prune.structured.layer_rules.base import PRODUCER
from keras_prune.structured.layer_rules.base import RESHAPE
from keras_prune.structured.layer_rules.base import ROLES
from keras_prune.structured.layer_rules.base import THROUGH
from keras_prune.structured.layer_rules.base import Cut
from keras_prune.structured.layer_rules.base import LayerRule
from keras_prune.structured.layer_rules.base import NotCounted
from keras_prune.structured.layer_rules.base import ProducerRule
from keras_prune.structured.layer_rules.base import exact_rule
from keras_prune.structured.layer_rules.base import numpy
from keras_prune.structured.layer_rules.base import register
from keras_prune.structured.layer_rules.base import rule_for

__all__ = [
    "ATTENTION",
    "ATTENTION_INPUTS",
    "BLOCK",
    "CONCATENATE",
    "ELEMENTWISE",
    "FLATTEN",
    "GLOBAL_POOLING",
    "MERGE",
    "PRODUCER",
    "RESHAPE",
    "ROLES",
    "THROUGH",
    "Cut",
    "LayerRule",
    "NotCounted",
    "ProducerRule",
    "exact_rule",
    "head_kernel",
    "numpy",
    "register",
    "rule_for",
]
