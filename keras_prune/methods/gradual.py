"""`prune_low_magnitude`, `strip_pruning`, `prune_scope` and the custom-loop API.

Functional and Sequential models (also nested ones) are copied with
`keras.models.clone_model`, weights included, so the model the user gave is
never modified. Subclassed models cannot be cloned: they are pruned in place,
only when the user asks for it with `inplace=True`.
"""

import contextlib
import warnings

import keras

from keras_prune.core import backend
from keras_prune.core import registry
from keras_prune.core.layers import all_layers
from keras_prune.core.layers import is_graph_model
from keras_prune.core.layers import pruned_layers
from keras_prune.methods.selection import Selection
from keras_prune.core.wrapper import PruneLowMagnitude
from keras_prune.core.wrapper import default_schedule
from keras_prune.core.wrapper import validate_arguments


def _copy_layer(layer):
    """A new layer with the same config, built like `layer` (weights later)."""
    new = layer.__class__.from_config(layer.get_config())
    build_config = layer.get_build_config() if layer.built else None
    if build_config:
        new.build_from_config(build_config)
    return new


def _copy_operation(operation):
    # Functional graphs also hold plain operations, e.g. the `NotEqual` that
    # Embedding(mask_zero=True) records for its mask: no weights to copy.
    return operation.__class__.from_config(operation.get_config())


def prune_low_magnitude(
    to_prune,
    pruning_schedule=None,
    block_size=(1, 1),
    block_pooling_type="AVG",
    pruning_policy=None,
    sparsity_m_by_n=None,
    prune_depthwise=False,
    inplace=False,
    *,
    scope="layer",
    global_weighting=None,
    per_layer=None,
    exclude=None,
):
    """Makes a layer, a list of layers or a model prunable by magnitude.

    Same name and arguments as `tfmot.sparsity.keras.prune_low_magnitude`,
    returning Keras 3 objects that train on TensorFlow, JAX and PyTorch.

    Args:
        to_prune: a `keras.layers.Layer`, a list of layers, or a Sequential /
            Functional model (nested models included). A subclassed model
            needs `inplace=True`.
        pruning_schedule: a `PruningSchedule`; default
            `ConstantSparsity(0.5, begin_step=0)` (with `sparsity_m_by_n`:
            `ConstantSparsity(m / n, 0)`, one-shot N:M at step 0).
        block_size: `(1, 1)` (unstructured) or `(r, c)`: prune whole r x c
            blocks of each weight viewed as a `(-1, last axis)` matrix (a
            Conv kernel `(kh, kw, in, out)` as `(kh * kw * in, out)`).
            Partial edge blocks are scored over the weights they cover.
        block_pooling_type: "AVG" or "MAX": a block's score is the mean or
            the max of its |w|.
        pruning_policy: a `PruningPolicy` choosing which layers to prune
            (e.g. `PruneForLatencyOnXNNPack()`).
        sparsity_m_by_n: `(m, n)`: m zeros in every n consecutive weights
            along each weight's input dimension (tfmot's meaning; `(2, 4)`
            is the 2:4 pattern). It follows the schedule: below m / n only
            the smallest candidates of the pattern are pruned (gradual),
            and from m / n on the pattern is exact. The schedule must end at
            m / n. An input dimension that is not a multiple of n ends in a
            partial group that keeps at most n - m weights (as if padded
            with zeros, tfmot's rule).
        prune_depthwise: also prune depthwise kernels (DepthwiseConv,
            SeparableConv's depthwise part), which are left dense by default.
        inplace: for subclassed models, wrap their prunable sub-layers in
            place (the model is modified and returned).
        scope: "layer" (default, tfmot's: every weight reaches the
            schedule's sparsity) or "global": one magnitude threshold across
            all pruned weights of the model, so the total is exact and the
            per-layer sparsities follow from the weights.
        global_weighting: with scope="global", None (plain |w|) or "size":
            scores divided by sqrt(weight size), so large layers lose more.
        per_layer: a dict from a layer name (or a callable `fn(layer) ->
            bool`) to that layer's own settings: a sparsity (float: the
            schedule with that final sparsity), a `PruningSchedule`, or a
            dict with any of `pruning_schedule`, `sparsity`, `block_size`,
            `block_pooling_type`, `sparsity_m_by_n`, `prune_depthwise`.
            Names are matched first, then callables in order. A layer with
            its own sparsity, schedule or pattern is pruned on its own
            (scope "layer"), also when `scope="global"`.
        exclude: layer names or callables `fn(layer) -> bool`: left dense.

    Returns:
        A wrapped layer, a list of them, or a new model whose prunable layers
        are wrapped in `PruneLowMagnitude`. Weights are copied; the input is
        not modified (unless `inplace=True`). Layers with nothing to prune are
        left as they are (see `SparsityReport` for the reasons).

    Example:

    ```python
    pruned = keras_prune.prune_low_magnitude(
        model,
        pruning_schedule=keras_prune.PolynomialDecay(
            initial_sparsity=0.0, final_sparsity=0.8,
            begin_step=0, end_step=1000),
    )
    pruned.compile("adam", "sparse_categorical_crossentropy")
    pruned.fit(x, y, callbacks=[keras_prune.UpdatePruningStep()])
    final = keras_prune.strip_pruning(pruned)
    ```
    """
    if pruning_schedule is None:
        pruning_schedule = default_schedule(sparsity_m_by_n)
    if pruning_policy is not None and not isinstance(
        pruning_policy, registry.PruningPolicy
    ):
        raise ValueError(
            "pruning_policy must be a keras_prune.PruningPolicy, got "
            f"{pruning_policy!r}."
        )
    block_size, sparsity_m_by_n = validate_arguments(
        pruning_schedule,
        block_size,
        block_pooling_type,
        sparsity_m_by_n,
        scope,
        global_weighting,
    )
    base = dict(
        pruning_schedule=pruning_schedule,
        block_size=block_size,
        block_pooling_type=block_pooling_type,
        prune_depthwise=prune_depthwise,
        sparsity_m_by_n=sparsity_m_by_n,
        scope=scope,
        global_weighting=global_weighting,
    )
    wrap_args = Selection(base, _reachable(to_prune), per_layer, exclude)
    if scope == "global":
        _check_global_has_layers(to_prune, wrap_args, pruning_policy)

    if isinstance(to_prune, (list, tuple)):
        return [_wrap_single(layer, wrap_args) for layer in to_prune]
    if isinstance(to_prune, keras.Model):
        if pruning_policy is not None:
            pruning_policy.ensure_model_supports_pruning(to_prune)
        if is_graph_model(to_prune):
            return _prune_graph_model(to_prune, wrap_args, pruning_policy)
        if not inplace:
            raise ValueError(
                f"{type(to_prune).__name__} is a subclassed model, which "
                "cannot be copied. Pass inplace=True to wrap its prunable "
                "sub-layers in place (the model you pass is modified), or "
                "build it as a Functional or Sequential model."
            )
        _prune_inplace(to_prune, wrap_args, pruning_policy)
        return to_prune
    if isinstance(to_prune, keras.layers.Layer):
        return _wrap_single(to_prune, wrap_args)
    raise ValueError(
        "prune_low_magnitude expects a keras Layer, a list of layers or a "
        f"keras Model, got {type(to_prune).__name__}: {to_prune!r}."
    )


def _wrap_single(layer, wrap_args):
    if not isinstance(layer, keras.layers.Layer):
        raise ValueError(
            "prune_low_magnitude expects keras layers, got "
            f"{type(layer).__name__}: {layer!r}."
        )
    if isinstance(layer, PruneLowMagnitude):
        raise ValueError(
            f"Layer {layer.name!r} is already wrapped for pruning; "
            "prune_low_magnitude must not be applied twice."
        )
    if isinstance(layer, keras.Model):
        raise ValueError(
            f"{layer.name!r} is a model: pass it as `to_prune` itself, not "
            "in a list of layers."
        )
    if not registry.has_rule(layer):
        raise ValueError(
            f"Layer {layer.name!r} ({type(layer).__name__}) has no prunable "
            "weights: keras_prune has no pruning rule for this class. Leave "
            "it unwrapped, or implement get_prunable_weights() "
            "(keras_prune.PrunableLayer) to prune it."
        )
    args = wrap_args.args_for(layer)
    if args is None:
        return layer
    return PruneLowMagnitude(layer, **args)


def _check_global_has_layers(to_prune, wrap_args, policy):
    for layer in _reachable(to_prune):
        if isinstance(layer, keras.Model) or isinstance(
            layer, PruneLowMagnitude
        ):
            continue
        if policy is not None and not policy.allow_pruning(layer):
            continue
        args = wrap_args.args_for(layer)
        if (
            args is not None
            and args["scope"] == "global"
            and registry.prunable_weights(layer, args["prune_depthwise"])
        ):
            return
    raise ValueError(
        "scope='global' found no prunable weight to rank: every layer is "
        "excluded, has its own per_layer settings, or has nothing prunable "
        f"({_describe(to_prune)}). Check exclude / per_layer, or use "
        "scope='layer'."
    )


def _describe(to_prune):
    if isinstance(to_prune, (list, tuple)):
        return f"{len(to_prune)} layers given"
    return f"{type(to_prune).__name__} {getattr(to_prune, 'name', '')!r}"


def _reachable(to_prune):
    """The layers `per_layer` / `exclude` may name."""
    if isinstance(to_prune, (list, tuple)):
        return [l for l in to_prune if isinstance(l, keras.layers.Layer)]
    if isinstance(to_prune, keras.Model):
        return [l for l in all_layers(to_prune) if l is not to_prune]
    if isinstance(to_prune, keras.layers.Layer):
        return all_layers(to_prune)
    return []


def _should_wrap(layer, wrap_args, policy):
    if isinstance(layer, PruneLowMagnitude):
        raise ValueError(
            f"Layer {layer.name!r} is already wrapped for pruning; "
            "prune_low_magnitude must not be applied twice. Use "
            "strip_pruning() first to re-prune with other settings."
        )
    if isinstance(layer, keras.Model):
        return False
    if policy is not None and not policy.allow_pruning(layer):
        return False
    args = wrap_args.args_for(layer)
    return args is not None and bool(
        registry.prunable_weights(layer, args["prune_depthwise"])
    )


def _prune_graph_model(model, wrap_args, policy):
    if not model.built:
        raise ValueError(
            f"Model {model.name!r} is not built: give it an Input (or call "
            "it on data) before pruning, so that its weights exist."
        )
    pairs = []

    def clone(layer):
        if not isinstance(layer, keras.layers.Layer):
            return _copy_operation(layer)
        if _should_wrap(layer, wrap_args, policy):
            new = _copy_layer(layer)
            pairs.append((layer, new))
            return PruneLowMagnitude(new, **wrap_args.args_for(layer))
        if not is_graph_model(layer) and isinstance(layer, keras.Model):
            raise ValueError(
                f"Model {model.name!r} contains the subclassed model "
                f"{layer.name!r}, which cannot be copied. Prune it on its "
                "own with inplace=True first."
            )
        new = _copy_layer(layer)
        pairs.append((layer, new))
        return new

    pruned = keras.models.clone_model(model, clone_function=clone, recursive=True)
    for old, new in pairs:
        new.set_weights(old.get_weights())
    if not pruned_layers(pruned):
        warnings.warn(
            f"Model {model.name!r} has no prunable layers; it is returned "
            "unchanged (as a copy). See keras_prune.SparsityReport for why "
            "each weight is not prunable.",
            stacklevel=3,
        )
    return pruned


def _prune_inplace(model, wrap_args, policy):
    wrapped = 0
    for owner in all_layers(model):
        if isinstance(owner, PruneLowMagnitude) or (
            owner is not model and is_graph_model(owner)
        ):
            continue
        for name, value in backend.public_attributes(owner):
            wrapped += _replace_attribute(owner, name, value, wrap_args, policy)
    if not wrapped and not pruned_layers(model):
        warnings.warn(
            f"Model {model.name!r} has no prunable layers reachable as "
            "attributes; nothing was wrapped.",
            stacklevel=3,
        )


def _replace_attribute(owner, name, value, wrap_args, policy):
    def swap(layer):
        wrapper = PruneLowMagnitude(layer, **wrap_args.args_for(layer))
        owner._tracker.replace_tracked_value("layers", layer, wrapper)
        return wrapper

    if isinstance(value, keras.layers.Layer):
        if _should_wrap(value, wrap_args, policy) and value.built:
            setattr(owner, name, swap(value))
            return 1
        return 0
    if isinstance(value, list):
        count = 0
        for i, item in enumerate(value):
            if isinstance(item, keras.layers.Layer) and _should_wrap(
                item, wrap_args, policy
            ):
                list.__setitem__(value, i, swap(item))
                count += 1
        return count
    return 0


def _bake_all(model):
    for layer in pruned_layers(model):
        layer.bake()


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
        new = _copy_layer(model.layer)
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
    _bake_all(model)
    if not is_graph_model(model):
        _strip_inplace(model)
        return model
    pairs = []

    def clone(layer):
        if not isinstance(layer, keras.layers.Layer):
            return _copy_operation(layer)
        source = layer.layer if isinstance(layer, PruneLowMagnitude) else layer
        new = _copy_layer(source)
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


@contextlib.contextmanager
def prune_scope():
    """tfmot compatibility: a scope in which pruned models deserialize.

    Not needed with keras-prune: importing `keras_prune` registers
    `PruneLowMagnitude` and the schedules, so `keras.saving.load_model`
    works directly.
    """
    with keras.saving.custom_object_scope({"PruneLowMagnitude": PruneLowMagnitude}):
        yield


# ---- custom training loops: the two-call API -------------------------------


def update_masks(model, step):
    """Call before each training step of a custom loop.

    Marks the model as tracked and, when a layer's schedule says so at `step`,
    recomputes its masks (and bakes them into the weights). Cheap otherwise.

    Args:
        model: the pruned model (or any layer containing pruned layers).
        step: the optimizer's iteration count before this step
            (`int(optimizer.iterations)`), so a resumed run continues the
            schedule where it stopped.

    Returns:
        The list of wrapper names whose masks changed at this step.

    Example:

    ```python
    for x, y in dataset:
        keras_prune.update_masks(model, int(optimizer.iterations))
        train_step(x, y)
    keras_prune.finalize_pruning(model)
    ```
    """
    from keras_prune.training.callbacks import _Pruner

    return _Pruner(model).update(int(step))


def finalize_pruning(model):
    """Call once after a custom training loop: bakes `w * mask` everywhere.

    Optimizer momentum moves masked weights slightly between mask updates;
    this writes exact zeros back, as `UpdatePruningStep` does at train end.
    """
    _bake_all(model)
