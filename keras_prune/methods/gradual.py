"""Gradual pruning: `prune_low_magnitude` and tfmot's `prune_scope`.

The masks move during training, driven by `UpdatePruningStep` in `fit` or
`update_masks` in a custom loop (`keras_prune.training`). Functional and
Sequential models (also nested ones) are copied, weights included, so the
model the user gave is never modified (`core.models`). Subclassed models
cannot be cloned: they are pruned in place, only when the user asks for it
with `inplace=True`.
"""

import contextlib
import warnings

import keras

from keras_prune.core import registry
from keras_prune.core.walk import all_layers
from keras_prune.core.walk import is_graph_model
from keras_prune.core.layers import pruned_layers
from keras_prune.core.models import copy_wrapping
from keras_prune.core.models import wrap_in_place
from keras_prune.core.scored import wrapper_for
from keras_prune.core.spec import PruningSpec
from keras_prune.core.wrapper import PruneLowMagnitude
from keras_prune.methods.selection import Selection


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
    criterion="magnitude",
):
    """Makes a layer, a list of layers or a model prunable, gradually.

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
        criterion: which weights go at each update: "magnitude" (|w|,
            tfmot's; the default), another registered criterion's name
            (`keras_prune.criteria.available()`), or a registered
            `keras_prune.criteria.Criterion`. Criteria that need data (e.g.
            "taylor") get it from `UpdatePruningStep(data=...)`.

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
    if pruning_policy is not None and not isinstance(
        pruning_policy, registry.PruningPolicy
    ):
        raise ValueError(
            "pruning_policy must be a keras_prune.PruningPolicy, got "
            f"{pruning_policy!r}."
        )
    spec = PruningSpec(
        pruning_schedule=pruning_schedule,
        block_size=block_size,
        block_pooling_type=block_pooling_type,
        sparsity_m_by_n=sparsity_m_by_n,
        prune_depthwise=prune_depthwise,
        scope=scope,
        global_weighting=global_weighting,
        criterion=criterion,
    )
    selection = Selection(spec, _reachable(to_prune), per_layer, exclude)
    if scope == "global":
        _check_global_has_layers(to_prune, selection, pruning_policy)

    if isinstance(to_prune, (list, tuple)):
        return [_wrap_single(layer, selection) for layer in to_prune]
    if isinstance(to_prune, keras.Model):
        kept = pruned_layers(to_prune)
        if kept:
            _warn_kept(kept, to_prune.name, stacklevel=3)
        if pruning_policy is not None:
            pruning_policy.ensure_model_supports_pruning(to_prune)
        if (isinstance(to_prune, keras.Sequential) and not to_prune.built
                and not inplace):
            return _prune_unbuilt_sequential(to_prune, selection,
                                             pruning_policy)
        if is_graph_model(to_prune) and not inplace:
            return _prune_graph_model(to_prune, selection, pruning_policy)
        if not inplace:
            raise ValueError(
                f"{type(to_prune).__name__} is a subclassed model, which "
                "cannot be copied. Pass inplace=True to wrap its prunable "
                "sub-layers in place (the model you pass is modified), or "
                "build it as a Functional or Sequential model."
            )
        _prune_inplace(to_prune, selection, pruning_policy)
        return to_prune
    if isinstance(to_prune, keras.layers.Layer):
        return _wrap_single(to_prune, selection)
    raise ValueError(
        "prune_low_magnitude expects a keras Layer, a list of layers or a "
        f"keras Model, got {type(to_prune).__name__}: {to_prune!r}."
    )


def _wrap_single(layer, selection):
    if not isinstance(layer, keras.layers.Layer):
        raise ValueError(
            "prune_low_magnitude expects keras layers, got "
            f"{type(layer).__name__}: {layer!r}."
        )
    if isinstance(layer, PruneLowMagnitude):
        _warn_kept([layer], layer.name, stacklevel=4)
        return layer
    if isinstance(layer, keras.Model):
        raise ValueError(
            f"{layer.name!r} is a model: pass it as `to_prune` itself, not "
            "in a list of layers."
        )
    if not registry.has_rule(layer):
        if _nothing_to_prune(layer):
            # tfmot wraps these and never prunes them: left as they are.
            return layer
        raise ValueError(
            f"Layer {layer.name!r} ({type(layer).__name__}) has no prunable "
            "weights: keras_prune has no pruning rule for this class. Leave "
            "it unwrapped, or implement get_prunable_weights() "
            "(keras_prune.PrunableLayer) to prune it."
        )
    spec = selection.spec_for(layer)
    if spec is None:
        return layer
    return wrapper_for(layer, spec)


def _nothing_to_prune(layer):
    """A Keras layer that holds no kernel (Dropout, pooling, Flatten,
    normalization, activations, ...): tfmot's registry wraps these without
    pruning anything; a custom layer without a rule is not one of them."""
    return type(layer).__module__.startswith("keras.") and not any(
        len(v.shape) >= 2 for v in layer.weights)


def _warn_kept(wrappers, where, stacklevel):
    names = ", ".join(repr(w.name) for w in wrappers[:5])
    more = "" if len(wrappers) <= 5 else f" and {len(wrappers) - 5} more"
    warnings.warn(
        f"prune_low_magnitude: {where!r} already holds {len(wrappers)} "
        f"pruned layer(s) ({names}{more}): kept as they are, with their "
        "schedules and masks (tfmot's behaviour); the other layers are "
        "wrapped. To re-prune with other settings, strip_pruning() first.",
        stacklevel=stacklevel,
    )


def _check_global_has_layers(to_prune, selection, policy):
    for layer in _reachable(to_prune):
        if isinstance(layer, keras.Model) or isinstance(
            layer, PruneLowMagnitude
        ):
            continue
        if policy is not None and not policy.allow_pruning(layer):
            continue
        spec = selection.spec_for(layer)
        if (
            spec is not None
            and spec.scope == "global"
            and registry.prunable_weights(layer, spec.prune_depthwise)
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


def _spec_for(selection, policy):
    """`fn(layer) -> PruningSpec or None`: which layers get wrapped."""

    def spec_for(layer):
        if isinstance(layer, (PruneLowMagnitude, keras.Model)):
            return None
        if policy is not None and not policy.allow_pruning(layer):
            return None
        spec = selection.spec_for(layer)
        if spec is None or not registry.prunable_weights(
            layer, spec.prune_depthwise
        ):
            return None
        return spec

    return spec_for


def _prune_unbuilt_sequential(model, selection, policy):
    """A Sequential without an Input (tfmot's usual model, built by its
    first call or `fit`): a new Sequential of copies of its layers, each
    prunable one wrapped; nothing to copy but the configs (no weights yet).
    """
    layers = []
    for layer in model.layers:
        # Copies from the configs (an unbuilt layer holds no weights), a
        # pruned layer's too: the new model shares nothing with `model`.
        new = layer.__class__.from_config(layer.get_config())
        if isinstance(layer, PruneLowMagnitude):
            layers.append(new)
            continue
        spec = None
        if not isinstance(layer, keras.Model) and (
                policy is None or policy.allow_pruning(layer)):
            spec = selection.spec_for(layer)
        if spec is not None and not registry.names_weights(
                layer, spec.prune_depthwise):
            spec = None
        layers.append(new if spec is None else wrapper_for(new, spec))
    pruned = keras.Sequential(layers, name=model.name)
    if not pruned_layers(pruned):
        _warn_if_left_out(model, pruned, [])
    return pruned


def _prune_graph_model(model, selection, policy):
    if not model.built:
        raise ValueError(
            f"Model {model.name!r} is not built: give it an Input (or call "
            "it on data) before pruning, so that its weights exist."
        )
    pruned, notes, unreached = copy_wrapping(
        model, _spec_for(selection, policy)
    )
    if notes:
        warnings.warn(
            f"prune_low_magnitude: model {model.name!r} " + "; ".join(notes)
            + ". The pruned model is that copy (the model you passed is not "
            "modified); inplace=True wraps the model's own layers instead.",
            stacklevel=3,
        )
    _warn_if_left_out(model, pruned, unreached)
    return pruned


def _prune_inplace(model, selection, policy):
    unreached = wrap_in_place(model, _spec_for(selection, policy)).unreached
    _warn_if_left_out(model, model, unreached)


def _warn_if_left_out(model, pruned, unreached):
    """Says loudly when nothing was wrapped, and when layers the settings
    select could not be (held where no wrapper can take their place)."""
    if not pruned_layers(pruned):
        warnings.warn(
            f"Model {model.name!r} has no prunable layers; nothing was "
            "wrapped. See keras_prune.SparsityReport for why each weight is "
            "not prunable.",
            stacklevel=4,
        )
    elif unreached:
        shown = ", ".join(
            f"{l.name!r} ({type(l).__name__})" for l in unreached[:8]
        )
        more = "" if len(unreached) <= 8 else f" and {len(unreached) - 8} more"
        warnings.warn(
            f"prune_low_magnitude could not wrap {len(unreached)} layer(s) "
            f"with prunable weights in model {model.name!r}: {shown}{more}, "
            "held where no wrapper can take their place (not in an "
            "attribute, list, tuple, dict or graph). They stay dense; "
            "SparsityReport lists them.",
            stacklevel=4,
        )


@contextlib.contextmanager
def prune_scope():
    """tfmot compatibility: a scope in which pruned models deserialize.

    Not needed with keras-prune: importing `keras_prune` registers
    `PruneLowMagnitude` and the schedules, so `keras.saving.load_model`
    works directly.
    """
    with keras.saving.custom_object_scope({"PruneLowMagnitude": PruneLowMagnitude}):
        yield
