"""Copying layers and models: from their configs, or as objects.

`copy_layer` rebuilds a layer from its config (what `clone_model` does);
some layers' configs do not rebuild them (keras-hub's Llama decoder and ViT
patching layers), and then `object_copy` copies the layer object itself,
state and variables, without its links to the graph it is in. `copy_model`
copies a whole model keeping its class: Keras's own deep copy (a save and
load in memory), else object by object.
"""

import copy

import keras
from keras.src.models.functional import Functional
from keras.src.models.functional import functional_like_constructor
from keras.src.utils import tracking

from keras_prune import backend
from keras_prune.core.walk import is_graph_model
from keras_prune.core.walk import walk

# What a model holds because it was compiled; a copy is compiled anew, so
# that its optimizer's step (the pruning schedule's step) starts at 0.
_COMPILE_STATE = (
    "optimizer", "_compile_loss", "_compile_metrics", "_loss_tracker",
    "_compile_config", "train_function", "test_function", "predict_function",
)
# A layer's links to the graphs it is called in: a copy starts with none.
_GRAPH_LINKS = ("_inbound_nodes", "_outbound_nodes")


def copy_layer(layer):
    """A new layer with the same config, built like `layer` (weights later)."""
    new = layer.__class__.from_config(layer.get_config())
    build_config = layer.get_build_config() if layer.built else None
    # Some layers build in their constructor (keras-hub's): building again
    # would add their state twice.
    if build_config and not new.built:
        new.build_from_config(build_config)
    return new


def copy_weights(source, target):
    """`target.set_weights(source.get_weights())`, variable to variable.

    Each value goes from the source variable to the target's on the
    backend's devices, keeping the target's layout: no NumPy round trip
    through the host (under `keras.distribution`, `get_weights` gathers
    every sharded kernel whole). A layer with its own get_weights /
    set_weights, or whose weights do not pair up, is copied the Keras way.
    """
    old, new = source.weights, target.weights
    plain = (type(source).get_weights is keras.layers.Layer.get_weights
             and type(target).set_weights is keras.layers.Layer.set_weights)
    if not plain or len(old) != len(new) or any(
            tuple(o.shape) != tuple(n.shape) for o, n in zip(old, new)):
        target.set_weights(source.get_weights())
        return
    for o, n in zip(old, new):
        n.assign(backend.unshared(o.value))


def copy_operation(operation):
    # Functional graphs also hold plain operations, e.g. the `NotEqual` that
    # Embedding(mask_zero=True) records for its mask: no weights to copy.
    return operation.__class__.from_config(operation.get_config())


def object_copy(layer):
    """A copy of the layer object (state, sub-layers, variables: nothing
    shared), without the graph nodes that link it to other layers.

    `copy.deepcopy` of a Keras layer saves and loads its config, which is
    what does not work here; this copies the objects themselves."""
    memo = {}
    for sub, _ in walk(layer):
        for name in _GRAPH_LINKS:
            links = vars(sub).get(name)
            if isinstance(links, list):
                memo[id(links)] = []
    for sub, _ in reversed(list(walk(layer))):
        _copy_object_into(sub, memo)
    return memo[id(layer)]


def rebuilt_or_copied(layer):
    """`(copy, note)`: `copy_layer(layer)`, else `object_copy(layer)` with
    a note of why (the layer's config does not rebuild it)."""
    try:
        return copy_layer(layer), None
    except Exception as error:  # whatever the layer's own code raises
        note = (
            f"{type(layer).__name__} {layer.name!r} does not rebuild from "
            f"its config ({_brief(error)}): copied as an object"
        )
        return object_copy(layer), note


def why_not_clone(model):
    """Why `clone_model` would not give back the same kinds of models, or
    None when it would."""
    for layer, _ in walk(model):
        if not is_graph_model(layer) and isinstance(layer, keras.Model):
            return f"{type(layer).__name__} {layer.name!r} is a subclassed model"
        if isinstance(layer, Functional) and not (
            type(layer) is Functional
            or functional_like_constructor(type(layer))
        ):
            return (
                f"clone_model would rebuild {type(layer).__name__} "
                f"{layer.name!r} as a plain Functional model, without its "
                "own methods"
            )
    if not is_graph_model(model):
        return f"{type(model).__name__} is not a Functional or Sequential model"
    return None


def copy_model(model):
    """A copy of a model, of its class, without its compile state.

    Keras's own deep copy (the model saved and loaded in memory: its config,
    then its variables) keeps the model's class and works where a layer's
    config does not rebuild that layer (keras-hub's backbones); every
    variable is then set from the original, since a layer may derive state
    when it is loaded (DINOv2's interpolated position embeddings). Where
    the model's config does not rebuild it either, the model is copied
    object by object.

    Returns:
        `(copy, note)`: the copy (compile it anew) and None, or a note of
        why it was copied as objects.
    """
    try:
        copied = copy.deepcopy(model, _compile_state_memo(model))
        copy_weights(model, copied)
        note = None
    except Exception as error:  # whatever the model's own code raises
        memo = _compile_state_memo(model)
        # Nested models first: copied as objects too, not by Keras's save.
        for layer, _ in reversed(list(walk(model))):
            if isinstance(layer, keras.Model):
                _copy_object_into(layer, memo)
        copied = memo[id(model)]
        note = (
            f"Keras cannot rebuild {type(model).__name__} {model.name!r} "
            f"from its saved form ({_brief(error)}): copied as objects"
        )
    if getattr(copied, "compiled", False):
        copied.compiled = False
    return copied, note


def _brief(error):
    """The gist of an error, in one short line: Keras nests the original
    message after "Exception encountered:" in long deserialization ones."""
    text = str(error).split("Exception encountered:")[-1].strip()
    text = text.splitlines()[0] if text else type(error).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _compile_state_memo(model):
    """A deepcopy memo that leaves every model's compile state behind."""
    memo = {}
    for layer, _ in walk(model):
        if isinstance(layer, keras.Model):
            for name in _COMPILE_STATE:
                value = vars(layer).get(name)
                if value is not None:
                    memo[id(value)] = None
    return memo


def _copy_object_into(obj, memo):
    """Copies `obj`'s attributes into a new object of its class (bypassing
    Keras's save-based copy of models), recorded in `memo`."""
    if id(obj) in memo:
        return memo[id(obj)]
    copied = object.__new__(type(obj))
    memo[id(obj)] = copied
    # The copied containers are already tracked: refilling them must not
    # track again (a built layer's tracker is locked).
    with tracking.DotNotTrackScope():
        copied.__dict__.update(copy.deepcopy(vars(obj), memo))
    return copied


