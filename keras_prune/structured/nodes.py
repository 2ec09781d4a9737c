"""Reading a Functional or Sequential model's graph, node by node.

The one place that reads Keras' private graph attributes (`_functional`,
`_nodes_by_depth`) and the private `Functional` class.
"""

import keras
from keras.src.models.functional import Functional

from keras_prune.core.layers import pruned_layers
from keras_prune.core.walk import all_layers

# The MultiHeadAttention inputs whose shapes a call record keeps.
_ATTENTION_ARGUMENTS = ("query", "value", "key")


def is_graph_model(layer):
    """True for a Functional or Sequential model (whose graph can be read)."""
    return isinstance(layer, (Functional, keras.Sequential))


def check_model(model):
    """Raises a ValueError saying what to do unless `model` is a built
    Functional or Sequential model."""
    if not is_graph_model(model):
        raise ValueError(
            f"Structured pruning needs a Functional or Sequential model; "
            f"{type(model).__name__} is a subclassed model (or not a model), "
            "whose graph cannot be read. Build it with the Functional API "
            "(keras.Model(inputs, outputs)) or as a keras.Sequential."
        )
    if not model.built or not model.inputs:
        raise ValueError(
            f"Model {model.name!r} is not built: give it an Input (or call "
            "it once) before structured pruning."
        )
    wrappers = pruned_layers(model)
    if wrappers:
        raise ValueError(
            f"Model {model.name!r} holds pruning wrappers ({len(wrappers)} "
            "PruneLowMagnitude layers, e.g. "
            f"{wrappers[0].name!r}): structured pruning reads plain layers. "
            "Call keras_prune.strip_pruning(model) first and plan on the "
            "stripped model."
        )
    quantized = sorted(
        f"{layer.name!r} ({layer.quantization_mode})"
        for layer in all_layers(model)
        if layer is not model and getattr(layer, "quantization_mode", None))
    if quantized:
        raise ValueError(
            f"Model {model.name!r} holds layers quantized by Keras "
            f"({', '.join(quantized[:3])}"
            f"{', ...' if len(quantized) > 3 else ''}): structured pruning "
            "slices float kernels. Plan and apply on the float model, then "
            "quantize the smaller one (small.quantize('int8'))."
        )


def nodes_in_order(model):
    """The model's own nodes, inputs first.

    Keras 3 keeps a Functional graph's nodes in `_nodes_by_depth` (depth 0 =
    outputs); a Sequential holds its graph in `_functional`.
    """
    graph = model._functional if isinstance(model, keras.Sequential) else model
    by_depth = graph._nodes_by_depth
    for depth in sorted(by_depth, reverse=True):
        for node in by_depth[depth]:
            if not node.is_input:
                yield node


def call_record(node):
    """`(input shapes, output shapes, arguments)` of one call; `arguments`
    holds the shapes of a MultiHeadAttention's query, value and key."""
    found = dict(zip(_ATTENTION_ARGUMENTS, node.arguments.args))
    found.update({k: v for k, v in node.arguments.kwargs.items()
                  if k in _ATTENTION_ARGUMENTS})
    return (_shapes(node.input_tensors), _shapes(node.output_tensors),
            {k: tuple(v.shape) for k, v in found.items()
             if hasattr(v, "shape")})


def _shapes(tensors):
    return [tuple(t.shape) for t in tensors]


def layer_calls(model):
    """dict layer path -> `(layer, [call_record, ...])`, one record per
    call, in call order (nested models walked through; plain operations
    included).

    Args:
        model: a built Functional or Sequential model.
    """
    check_model(model)
    found = {}
    _walk(model, "", found)
    return found


def _walk(model, prefix, found):
    for node in nodes_in_order(model):
        op = node.operation
        if is_graph_model(op):
            _walk(op, prefix + op.name + "/", found)
            continue
        found.setdefault(prefix + op.name, (op, []))[1].append(
            call_record(node))
