"""Swapping layers where a model holds them.

`clone_model` rebuilds a model around new layers, but only when every
layer's config round-trips, only for the layers of its graphs (not those a
custom layer holds and calls from its own `call`), and it rebuilds a
Functional subclass (a keras-hub backbone or task) as a plain `Functional`,
losing its class and methods (`generate`). So the layers a wrapper goes
around are also swapped in place: everywhere a model holds them.

- In the attributes of a layer (how custom layers and subclassed models
  hold their sub-layers, private attributes included: what their `call`
  uses), also inside lists, tuples and dicts, and in Keras's own list of
  tracked sub-layers.
- In the graph of a Functional model: its nodes run the new layer (what
  `Functional.call` runs), which takes over the old one's nodes, so the
  graph still serializes; a Sequential's layer list, its graph rebuilt.

A layer held in several places (a token embedding that is both a graph
node and an attribute used for the output projection) is swapped for the
same new layer everywhere. Keras has no public way to replace a layer in
a built Functional graph: the graph part edits its node and operation
lists, and is tested on every backend.
"""

import keras
from keras.src.models.functional import Functional
from keras.src.utils import tracking

from keras_prune import backend
from keras_prune.core.walk import walk

# Attributes through which Keras itself refers to layers: kept in step by
# the tracker and the graph edit, never swapped as plain attributes.
_KERAS_OWNED = frozenset({
    "_layers", "_operations", "_operations_by_depth", "_nodes",
    "_nodes_by_depth", "_functional", "_inbound_nodes", "_outbound_nodes",
    "_tracker", "_parent",
})


class Swap:
    """What `replace_layers` did.

    Attributes:
        swapped: `{id(old): new}` for every layer swapped.
        unreached: the chosen layers that were not found anywhere they could
            be swapped (held in some other object): they stay as they are.
    """

    def __init__(self):
        self.swapped = {}
        self.unreached = []


def replace_layers(root, chooses, make, descend=None):
    """Swaps layers inside `root` (itself excluded) for new ones, in place.

    Args:
        root: a layer or model; it is modified.
        chooses: `fn(layer) -> bool`: whether `layer` is swapped (its own
            sub-layers are then not searched).
        make: `fn(layer) -> new layer`, called once per chosen layer that
            is found held somewhere (returning the layer itself swaps
            nothing: a dry run that finds `unreached`).
        descend: optional `fn(layer) -> bool`: False keeps the search out
            of a layer that stays (its sub-layers stay as they are).

    Returns:
        A `Swap`.
    """
    swap = Swap()
    chosen = {}

    def is_chosen(layer):
        if id(layer) not in chosen:
            chosen[id(layer)] = layer is not root and bool(chooses(layer))
        return chosen[id(layer)]

    def searched(layer):
        return not is_chosen(layer) and (
            layer is root or descend is None or descend(layer)
        )

    def new_for(layer):
        if not is_chosen(layer):
            return None
        if id(layer) not in swap.swapped:
            swap.swapped[id(layer)] = make(layer)
        return swap.swapped[id(layer)]

    visited = list(walk(root, descend=searched))
    for owner, _ in visited:
        if not searched(owner):
            continue
        if isinstance(owner, Functional):
            _replace_in_graph(owner, new_for)
        elif isinstance(owner, keras.Sequential):
            _replace_in_sequential(owner, new_for)
        _replace_attributes(owner, new_for)
    swap.unreached = [
        layer for layer, _ in visited
        if is_chosen(layer) and id(layer) not in swap.swapped
    ]
    return swap


def _is_layer(value):
    return isinstance(value, keras.layers.Layer)


def _replace_attributes(owner, new_for):
    for name, value in _attributes(owner):
        new = _swapped_value(owner, value, new_for)
        if new is not value:
            setattr(owner, name, new)


def _swapped_value(owner, value, new_for):
    """`value` with the chosen layers in it swapped: lists and dicts are
    changed in place, a layer or a tuple comes back new."""
    if _is_layer(value):
        if value is owner:
            return value
        new = new_for(value)
        if new is None or new is value:
            return value
        _swap_tracked(owner, value, new)
        return new
    if isinstance(value, list):
        for i, item in enumerate(list(value)):
            new = _swapped_value(owner, item, new_for)
            if new is not item:
                _set_item(value, i, new)
    elif isinstance(value, dict):
        for key, item in list(value.items()):
            new = _swapped_value(owner, item, new_for)
            if new is not item:
                _set_item(value, key, new)
    elif isinstance(value, tuple) and not hasattr(value, "_fields"):
        items = [_swapped_value(owner, item, new_for) for item in value]
        if any(new is not old for new, old in zip(items, value)):
            return type(value)(items)
    return value


def _set_item(container, key, value):
    # Through the container's own __setitem__ (TensorFlow keeps a layer's
    # lists in wrappers whose items are not the list's own), with Keras's
    # tracking off: the tracked slot is swapped by `_swap_tracked`.
    with tracking.DotNotTrackScope():
        container[key] = value


def _attributes(owner):
    """`(name, value)` of the attributes that may hold a sub-layer."""
    found = dict(vars(owner))
    found.update(backend.sub_modules(owner))
    return [(k, v) for k, v in found.items() if k not in _KERAS_OWNED]


def _swap_tracked(owner, old, new):
    layers = owner._layers
    for i, layer in enumerate(layers):
        if layer is not old:
            continue
        tracker = owner._tracker
        if tracker.is_in_store("layers", old):
            tracker.replace_tracked_value("layers", old, new)
            return
        # An object copy's tracker may still hold its original's ids: the
        # list holds the copy's layer, so swap it there and fix the ids.
        with tracking.DotNotTrackScope():
            layers[i] = new
        ids = tracker.stored_ids["layers"]
        ids.discard(id(old))
        ids.add(id(new))
        return


def _replace_in_graph(model, new_for):
    """Makes a Functional model's graph run the new layers."""
    renamed = {}
    for operation in model._operations:
        if _is_layer(operation):
            new = new_for(operation)
            if new is not None and new is not operation:
                renamed[id(operation)] = (operation, new)
    if not renamed:
        return
    for nodes in model._nodes_by_depth.values():
        for node in nodes:
            if id(node.operation) in renamed:
                node.operation = renamed[id(node.operation)][1]
    for old, new in renamed.values():
        # The new layer takes over the old one's place in the graph: its
        # nodes (what get_config serializes) and its tracked slot.
        new._inbound_nodes = old._inbound_nodes
        new._outbound_nodes = old._outbound_nodes
        _swap_tracked(model, old, new)

    def renew(operations):
        return [
            renamed[id(op)][1] if id(op) in renamed else op
            for op in operations
        ]

    model._operations = renew(model._operations)
    model._operations_by_depth = {
        depth: renew(ops) for depth, ops in model._operations_by_depth.items()
    }


def _replace_in_sequential(model, new_for):
    """Swaps layers of a Sequential's list and rebuilds its graph."""
    changed = False
    for layer in list(model._layers):
        new = new_for(layer) if _is_layer(layer) else None
        if new is not None and new is not layer:
            _swap_tracked(model, layer, new)
            changed = True
    if changed:
        model._maybe_rebuild()
