"""Surgery: a new, smaller model with the plan's channels removed.

`apply_plan(model, plan)` clones the model with `keras.models.clone_model`,
creating every layer from its config with fewer channels (fewer `filters`,
`units`, `num_heads`: its rule's `new_config`, `layer_rules`) and with its
weights sliced to the kept channels (the rule's `slice_weights`). The input
model is not modified. `verify(model, plan, x)` checks the result against
the original whose consumers ignore the removed channels. A plan that
removes nothing gives a copy of the model's own class; one that cuts the
MLPs of keras-hub transformer blocks rebuilds the model from its config
(`rebuild.py`).

Both reuse the `ChannelGraph` the plan was made from when they are given
that same model (`PruningPlan.graph_for`).
"""

import keras
import numpy as np

from keras_prune.core import copying
from keras_prune.structured import layer_copy
from keras_prune.structured import rebuild
from keras_prune.structured.layer_rules import ATTENTION_INPUTS
from keras_prune.structured.layer_rules import Cut
from keras_prune.structured.layer_rules import numpy
from keras_prune.structured.layer_rules import rule_for
from keras_prune.structured.nodes import is_graph_model
from keras_prune.structured.plan import PruningPlan

# The members whose layer reads the group's channels through a kernel.
_READERS = ("in", "heads") + ATTENTION_INPUTS


def _cut(graph, path, keep):
    """What the layer at `path` keeps of `keep` (group id -> kept list),
    and whether that is everything."""
    maps = {"outputs": graph.output_maps[path]}
    if path in graph.input_maps:
        maps["inputs"] = graph.input_maps[path]
    attention = graph.attention.get(path, {})
    maps.update({k: attention[k] for k in ATTENTION_INPUTS if attention})
    kept = {k: graph.kept(m, keep) for k, m in maps.items()}
    # A map of unknown width (token ids) is never cut.
    whole = all(kept[k] is None or len(kept[k]) == graph.width(m)
                for k, m in maps.items())
    cut = Cut(inputs=kept.get("inputs") or [], outputs=kept["outputs"])
    if attention:
        heads = graph.group(attention["heads"])
        cut.reads = {k: kept[k] for k in ATTENTION_INPUTS}
        cut.heads = keep[heads.id]
        whole = whole and len(cut.heads) == heads.size
    return cut, whole


def _rebuild(model, graph, keep):
    """Clone `model` with the channels of `keep` (group id -> kept list)."""
    path_of = {id(layer): path for path, layer in graph.layers.items()}
    pairs = []
    initialized = []

    def clone(layer):
        path = path_of.get(id(layer))
        if path is None:
            return layer_copy.from_config(layer, layer.get_config())
        if is_graph_model(layer):
            return _clone_nested(layer, path)
        rule = rule_for(layer)
        cut, whole = _cut(graph, path, keep)
        # Nothing removed around the layer: its config and weights as they
        # are (also for layers the walker does not follow, whose rule may
        # not apply: a grouped convolution, a MultiHeadAttention subclass).
        if whole and layer._flatten_layers(include_self=False,
                                           recursive=False):
            # A layer made of layers (a custom block): copied whole, by its
            # config when it rebuilds from it, else as an object.
            # Its weights are set once the clone has called it: a layer
            # built from its config may create them only then.
            new, _ = copying.rebuilt_or_copied(layer)
            pairs.append((path, new, [numpy(w) for w in layer.weights]))
            return new
        if whole:
            config = layer.get_config()
            values = [numpy(w) for w in layer.weights]
        else:
            config = rule.new_config(layer, cut)
            values = rule.slice_weights(layer, cut)
        new = layer_copy.from_config(layer, config)
        if values:
            initialized.append(layer_copy.initialize_with(
                new, [(w.name, v) for w, v in zip(layer.weights, values)]))
        pairs.append((path, new, values))
        return new

    def _clone_nested(inner, path):
        inputs = []
        for t, channel_map in zip(inner.inputs, graph.model_inputs[path]):
            kept = graph.kept(channel_map, keep)
            n = t.shape[-1] if kept is None else len(kept)
            inputs.append(keras.Input(batch_shape=tuple(t.shape[:-1]) + (n,),
                                      dtype=t.dtype))
        if isinstance(inner, keras.Sequential):
            return keras.Sequential(
                inputs[:1] + [clone(layer) for layer in inner.layers],
                name=inner.name,
            )
        return keras.models.clone_model(
            inner,
            input_tensors=keras.tree.pack_sequence_as(inner.input, inputs),
            clone_function=clone,
        )

    new_model = keras.models.clone_model(model, clone_function=clone)
    for done in initialized:
        layer_copy.restore(done)
    for path, new, values in pairs:
        if values:
            new.set_weights(values)
    return new_model, {path: new for path, new, _ in pairs}


def apply_plan(model, plan):
    """A new, smaller model with the plan's removed channels cut out.

    Args:
        model: the Functional or Sequential model the plan was made for
            (not modified).
        plan: a `PruningPlan` (possibly edited or loaded from JSON).

    Returns:
        A new Keras model of the same class with sliced weights; it shares
        no variable with `model` and saves/loads as a plain Keras model.

    Example:

    ```python
    plan = plan_pruning(model, ratio=0.5)
    small = apply_plan(model, plan)
    print(verify(model, plan, x, small))  # max abs difference, ~1e-7
    ```
    """
    graph = _checked(plan, "apply_plan").graph_for(model)
    if _removes_nothing(plan):
        return _same_class_copy(model)
    cuts = rebuild.block_cuts(graph, plan)
    if cuts:
        return rebuild.apply_block_cuts(model, graph, plan, cuts)
    new_model, _ = _rebuild(model, graph, plan.kept())
    return new_model


def _checked(plan, what):
    """`plan`, or a ValueError naming it unless it is a `PruningPlan`."""
    if not isinstance(plan, PruningPlan):
        raise ValueError(
            f"{what}: plan must be a PruningPlan (from plan_pruning, or "
            f"PruningPlan.from_json(path) for a saved one), got "
            f"{type(plan).__name__}: {plan!r}."
        )
    return plan


def _removes_nothing(plan):
    return all(all(g["keep"]) for g in plan.groups)


def _same_class_copy(model):
    """Nothing removed: a copy of the model, of its own class (a keras-hub
    backbone stays one; clone_model would not keep it)."""
    copied, _ = copying.copy_model(model)
    return copied


def zeroed_reference(model, plan):
    """A copy of `model` whose consumers ignore the removed channels.

    Every layer that reads a group's channels (a kernel's input slice, an
    attention head's output slice) gets zeros for the removed ones, so they
    no longer reach anything; the channels stay, so the result has the
    original's shapes.
    """
    graph = _checked(plan, "zeroed_reference").graph_for(model)
    if _removes_nothing(plan):
        return _same_class_copy(model)
    cuts = rebuild.block_cuts(graph, plan)
    if cuts:
        return rebuild.zeroed_blocks(model, graph, cuts)
    everything = {g.id: list(range(g.size)) for g in graph.groups}
    copy, layers = _rebuild(model, graph, everything)
    for g in plan.groups:
        removed = [c for c, k in enumerate(g["keep"]) if not k]
        if not removed:
            continue
        for path, role, offset, width, tile in g["members"]:
            if role not in _READERS:
                continue
            layer = layers[path]
            rows = [p * width + offset + c
                    for p in range(tile) for c in removed]
            layer.set_weights(
                rule_for(layer).zeroed_weights(layer, role, rows))
    return copy


def verify(model, plan, x, pruned=None):
    """Max abs difference between the pruned model and the zeroed original.

    Args:
        model: the original model (not modified).
        plan: the `PruningPlan` applied to it.
        x: one batch of inputs (what `model.predict_on_batch` takes).
        pruned: the result of `apply_plan(model, plan)`; built if None.

    Returns:
        A float; ~1e-6 or less means the surgery removed exactly the planned
        channels and nothing else.
    """
    _checked(plan, "verify")
    if pruned is None:
        pruned = apply_plan(model, plan)
    reference = zeroed_reference(model, plan)
    expected = keras.tree.flatten(reference.predict_on_batch(x))
    got = keras.tree.flatten(pruned.predict_on_batch(x))
    return float(max(
        np.max(np.abs(numpy(a, np.float64) - numpy(b, np.float64)))
        for a, b in zip(expected, got)
    ))
