"""The one walker over a model's layers.

Keras tracks sub-layers in `_layers` (a model's layers, a custom layer's
Dense attributes, an RNN's cell); `walk` visits them depth first, parents
before children, each layer once, and says who encloses each one. Every
module that looks for layers (pruning, reports, sensitivity, checks, QAT)
goes through it. It imports nothing of keras_prune, so every module can.
"""

import keras
from keras.src.models.functional import Functional


def _children(layer):
    return layer._flatten_layers(include_self=False, recursive=False)


def walk(root, include_self=True, descend=None):
    """Yields `(layer, ancestors)` for every layer inside `root`.

    Depth first, parents before children, once each (a shared layer where
    it is first met), in Keras's own order (`Layer._flatten_layers`).

    Args:
        root: a `keras.layers.Layer` or `keras.Model`.
        include_self: also yield `root` itself (with no ancestors).
        descend: optional `fn(layer) -> bool`; the children of a layer for
            which it is False are not visited (`root`'s always are).

    Example:

    ```python
    for layer, ancestors in walk(model):
        print("/".join(a.name for a in ancestors), layer.name)
    ```
    """
    if not isinstance(root, keras.layers.Layer):
        raise TypeError(f"Expected a keras Layer or Model, got {root!r}.")
    seen = {id(root)}
    stack = [(child, (root,)) for child in reversed(_children(root))]
    if include_self:
        yield root, ()
    while stack:
        layer, ancestors = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        yield layer, ancestors
        if descend is None or descend(layer):
            stack.extend(
                (child, ancestors + (layer,))
                for child in reversed(_children(layer))
            )


def all_layers(model):
    """Every layer inside `model` (itself included), depth first, once each."""
    return [layer for layer, _ in walk(model)]


def is_graph_model(model):
    """Whether `model` is Functional or Sequential (so it can be cloned)."""
    return isinstance(model, (Functional, keras.Sequential))
