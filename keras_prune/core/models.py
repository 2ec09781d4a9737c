"""Model copies with layers wrapped for pruning, and without them.

Functional and Sequential models (also nested ones) are copied with
`keras.models.clone_model`, weights included, so the model the user gave is
never modified. Subclassed models cannot be cloned: their sub-layers are
wrapped in place (`wrap_in_place`), only when the user asks for it.
`strip_pruning` is the way back: plain layers, baked zeros.
"""

import warnings

import keras

from keras_prune import backend
from keras_prune.core.walk import all_layers
from keras_prune.core.walk import is_graph_model
from keras_prune.core.layers import pruned_layers
from keras_prune.core.wrapper import PruneLowMagnitude


def copy_layer(layer):
    """A new layer with the same config, built like `layer` (weights later)."""
    new = layer.__class__.from_config(layer.get_config())
    build_config = layer.get_build_config() if layer.built else None
    if build_config:
        new.build_from_config(build_config)
    return new


def copy_operation(operation):
    # Functional graphs also hold plain operations, e.g. the `NotEqual` that
    # Embedding(mask_zero=True) records for its mask: no weights to copy.
    return operation.__class__.from_config(operation.get_config())


def copy_wrapping(model, spec_for):
    """A copy of a Functional or Sequential `model` with layers wrapped.

    Args:
        model: a built Functional or Sequential model (nested ones too).
        spec_for: `fn(layer) -> PruningSpec or None`: the layers it gives a
            spec for are wrapped in a `PruneLowMagnitude` with it.

    Returns:
        The copy; every weight is copied, nothing is shared with `model`.
    """
    pairs = []

    def clone(layer):
        if not isinstance(layer, keras.layers.Layer):
            return copy_operation(layer)
        spec = spec_for(layer)
        if spec is not None:
            new = copy_layer(layer)
            pairs.append((layer, new))
            return PruneLowMagnitude(new, spec=spec)
        if not is_graph_model(layer) and isinstance(layer, keras.Model):
            raise ValueError(
                f"Model {model.name!r} contains the subclassed model "
                f"{layer.name!r}, which cannot be copied. Prune it on its "
                "own with inplace=True first."
            )
        new = copy_layer(layer)
        pairs.append((layer, new))
        return new

    copied = keras.models.clone_model(
        model, clone_function=clone, recursive=True
    )
    for old, new in pairs:
        new.set_weights(old.get_weights())
    return copied


def wrap_in_place(model, spec_for):
    """Wraps the sub-layers of `model` that `spec_for` gives a spec for, in
    place (the layers a subclassed model holds as attributes or in lists).

    Returns:
        How many layers were wrapped.
    """
    wrapped = 0
    for owner in all_layers(model):
        if isinstance(owner, PruneLowMagnitude) or (
            owner is not model and is_graph_model(owner)
        ):
            continue
        for name, value in backend.public_attributes(owner):
            wrapped += _replace_attribute(owner, name, value, spec_for)
    return wrapped


def _replace_attribute(owner, name, value, spec_for):
    def swap(layer, spec):
        wrapper = PruneLowMagnitude(layer, spec=spec)
        owner._tracker.replace_tracked_value("layers", layer, wrapper)
        return wrapper

    if isinstance(value, keras.layers.Layer):
        spec = spec_for(value)
        if spec is not None and value.built:
            setattr(owner, name, swap(value, spec))
            return 1
        return 0
    if isinstance(value, list):
        count = 0
        for i, item in enumerate(value):
            if not isinstance(item, keras.layers.Layer):
                continue
            spec = spec_for(item)
            if spec is not None:
                list.__setitem__(value, i, swap(item, spec))
                count += 1
        return count
    return 0


def strip_pruning(model):
    """Removes the pruning wrappers, leaving plain Keras layers.

    The weights are baked (`w * mask`, exact zeros). For Functional and
    Sequential models the result is a new model sharing no variable with
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
        new.set_weights(model.layer.get_weights())
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
        _strip_inplace(model)
        return model
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
        new.set_weights(old.get_weights())
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


def _strip_inplace(model):
    for owner in all_layers(model):
        for name, value in backend.public_attributes(owner):
            if isinstance(value, PruneLowMagnitude):
                owner._tracker.replace_tracked_value("layers", value, value.layer)
                setattr(owner, name, value.layer)
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, PruneLowMagnitude):
                        owner._tracker.replace_tracked_value(
                            "layers", item, item.layer
                        )
                        list.__setitem__(value, i, item.layer)
