"""Model copies with layers wrapped for pruning, and without them.

The model the user gave is never modified: it is copied, weights included.
Functional and Sequential models are copied with `keras.models.clone_model`
(each layer rebuilt from its config, or copied as an object where its
config does not rebuild it). A Functional subclass, which `clone_model`
would rebuild as a plain Functional (keras-hub's backbones and tasks,
losing their methods), is copied whole, keeping its class
(`core.copying`). Either way, layers held inside other layers (a
transformer block's projections) are then wrapped in place in the copy
(`core.inplace`). Subclassed models are wrapped in place only when the user
asks for it. `strip_pruning` is the way back: plain layers, baked zeros.
"""

import warnings

import keras

from keras_prune.core import inplace
from keras_prune.core import registry
from keras_prune.core.copying import copy_layer
from keras_prune.core.copying import copy_model
from keras_prune.core.copying import copy_operation
from keras_prune.core.copying import copy_weights
from keras_prune.core.copying import rebuilt_or_copied
from keras_prune.core.copying import why_not_clone
from keras_prune.core.layers import pruned_layers
from keras_prune.core.scored import wrapper_for
from keras_prune.core.walk import is_graph_model
from keras_prune.core.walk import walk
from keras_prune.core.wrapper import PruneLowMagnitude


def copy_wrapping(model, spec_for):
    """A copy of a model with layers wrapped, at any depth.

    Args:
        model: a built model (any kind: Functional, Sequential, a
            Functional subclass, subclassed) or layer.
        spec_for: `fn(layer) -> PruningSpec or None`: the layers it gives a
            spec for are wrapped in a `PruneLowMagnitude` with it.

    Returns:
        `(copy, notes, unreached)`: the copy (every weight copied, nothing
        shared with `model`), notes on how it was made where it was not
        plainly cloned (empty otherwise), and the chosen layers held nowhere
        a wrapper could take their place (left dense).
    """
    reason = why_not_clone(model)
    if reason is None:
        copied, notes = _clone_wrapping(model, spec_for)
    else:
        copied, note = copy_model(model)
        notes = [f"copied whole: {reason}"] + ([note] if note else [])
    unreached = wrap_in_place(copied, spec_for).unreached
    return copied, notes, unreached


def _clone_wrapping(model, spec_for):
    """`clone_model` with the chosen graph layers wrapped; `(copy, notes)`."""
    pairs, notes = [], []

    def clone(layer):
        if not isinstance(layer, keras.layers.Layer):
            return copy_operation(layer)
        spec = spec_for(layer)
        new, note = rebuilt_or_copied(layer)
        if note is None:
            pairs.append((layer, new))
        else:
            notes.append(note)
        return new if spec is None else wrapper_for(new, spec)

    copied = keras.models.clone_model(
        model,
        clone_function=clone,
        call_function=None if isinstance(model, keras.Sequential) else _call,
        recursive=True,
    )
    for old, new in pairs:
        copy_weights(old, new)
    return copied, notes


def _not_a_wrapper(layer):
    return not isinstance(layer, PruneLowMagnitude)


def wrap_in_place(model, spec_for):
    """Wraps, in place, the layers inside `model` (at any depth: in graphs,
    attributes, lists, tuples and dicts) that `spec_for` gives a spec for.

    Returns:
        The `core.inplace.Swap`: what was wrapped, and the chosen layers
        found nowhere they could be swapped (left dense).
    """
    specs = {}

    def chooses(layer):
        if isinstance(layer, PruneLowMagnitude) or not layer.built:
            return False
        specs[id(layer)] = spec_for(layer)
        return specs[id(layer)] is not None

    return inplace.replace_layers(
        model,
        chooses,
        lambda layer: wrapper_for(layer, specs[id(layer)]),
        _not_a_wrapper,
    )


def _unwrap_in_place(model):
    inplace.replace_layers(
        model,
        lambda layer: isinstance(layer, PruneLowMagnitude),
        lambda wrapper: wrapper.layer,
    )


def strip_pruning(model):
    """Removes the pruning wrappers, leaving plain Keras layers.

    The weights are baked (`w * mask`, exact zeros). For Functional and
    Sequential models (Functional subclasses such as keras-hub's included)
    the result is a new model of the same class sharing no variable with
    `model`, with bit-identical outputs, that loads with plain
    `keras.saving.load_model`. Subclassed models pruned in place are
    stripped in place.

    Args:
        model: a model returned by `prune_low_magnitude`, or a single
            `PruneLowMagnitude` layer.

    Returns:
        The stripped model (or layer), not compiled (so that its `.keras`
        file holds no optimizer state; compile it to train or evaluate). An
        unpruned model is returned unchanged with a warning.

    Example:

    ```python
    final = keras_prune.strip_pruning(pruned)
    final.save("pruned.keras")
    ```
    """
    if isinstance(model, PruneLowMagnitude):
        model.bake()
        new = copy_layer(model.layer)
        copy_weights(model.layer, new)
        return new
    if not isinstance(model, keras.layers.Layer):
        raise ValueError(
            f"strip_pruning expects a keras Model, got {type(model).__name__}."
        )
    if not pruned_layers(model):
        warnings.warn(
            f"strip_pruning: {model.name!r} has no pruning wrappers; it is "
            "returned unchanged.",
            stacklevel=2,
        )
        return model
    for layer in pruned_layers(model):
        layer.bake()
    if not is_graph_model(model):
        _unwrap_in_place(model)
        return model
    if why_not_clone(model) is not None or _holds_nested_wrappers(model):
        return _copy_unwrapped(model)
    pairs = []

    def clone(layer):
        if not isinstance(layer, keras.layers.Layer):
            return copy_operation(layer)
        source = layer.layer if isinstance(layer, PruneLowMagnitude) else layer
        new = copy_layer(source)
        pairs.append((source, new))
        return new

    stripped = keras.models.clone_model(
        model,
        clone_function=clone,
        call_function=None if isinstance(model, keras.Sequential) else _call,
        recursive=True,
    )
    for old, new in pairs:
        copy_weights(old, new)
    return uncompiled(stripped) if stripped.compiled else stripped


def uncompiled(model):
    """The same layers in a model that is not compiled.

    `clone_model` compiles the copy of a compiled model, and a compiled
    model saves its optimizer's state: a stripped LeNet-300-100 was a 2.9 MB
    `.keras` file instead of 1.0 MB. A stripped model is for shipping, like
    tfmot's: compile it again to train or evaluate it.
    """
    if isinstance(model, keras.Sequential):
        new = keras.Sequential(name=model.name)
        spec = model.inputs[0]
        new.add(keras.Input(batch_shape=spec.shape, dtype=spec.dtype))
        for layer in model.layers:
            new.add(layer)
        return new
    return keras.Model(model.inputs, model.outputs, name=model.name)


def _call(layer, *args, **kwargs):
    # A wrapper's node records `mask=None`, which e.g. Dense.call rejects.
    if "mask" in kwargs and not layer._call_has_mask_arg:
        kwargs.pop("mask")
    return layer(*args, **kwargs)


def unreached_layers(model):
    """Layers with prunable weights that are not wrapped and are held
    nowhere a wrapper could take their place (so no setting would prune
    them)."""
    return inplace.replace_layers(
        model,
        lambda layer: (
            not isinstance(layer, (PruneLowMagnitude, keras.Model))
            and bool(registry.prunable_weights(layer))
        ),
        lambda layer: layer,
        _not_a_wrapper,
    ).unreached


def _copy_unwrapped(model):
    """A copy of a pruned model without its wrappers, for models the
    wrapper-by-wrapper clone cannot strip (wrappers inside other layers, a
    Functional subclass): the wrappers are taken out of `model` for the
    time of the copy and put back after it, so `model` ends as it was."""
    wrapper_of = {id(w.layer): w for w in pruned_layers(model)}
    _unwrap_in_place(model)
    try:
        if why_not_clone(model) is None:
            copied, _ = _clone_wrapping(model, lambda layer: None)
        else:
            copied, _ = copy_model(model)
    finally:
        inplace.replace_layers(
            model,
            lambda layer: id(layer) in wrapper_of,
            lambda layer: wrapper_of[id(layer)],
        )
    return copied


def _holds_nested_wrappers(model):
    """Whether a wrapper sits inside a layer that is not a graph model
    (where `clone_model` cannot reach it)."""
    return any(
        isinstance(layer, PruneLowMagnitude)
        and not all(is_graph_model(a) for a in ancestors)
        for layer, ancestors in walk(model)
    )
