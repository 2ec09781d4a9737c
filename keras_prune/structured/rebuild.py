"""Surgery by config: a keras-hub model rebuilt with smaller blocks.

keras-hub builds every transformer block of a backbone from the backbone's
own config (`intermediate_dim`, `num_query_heads`, ...), and some blocks'
configs do not rebuild them, so `clone_model` cannot make a block smaller.
Instead the model's config gets the new sizes and the model is made again
from it (`from_config` of its class: a task rebuilds its backbone too), then
every variable is set from the original's, the blocks' MLP and attention
projections sliced to the kept channels and heads. The new model saves,
reloads and generates like any keras-hub model; the config holds one size
of each, so every block keeps the same numbers.
"""

import keras

from keras_prune.core import copying
from keras_prune.structured.layer_rules import numpy
from keras_prune.structured.layer_rules import rule_for


def block_cuts(graph, plan):
    """dict `(block path, role)` -> kept channels of that group of the
    block (`"mlp"`, `"heads"`), for the groups the plan cuts (empty when it
    cuts none).

    Raises:
        ValueError: if the plan also removes channels the walker follows
            outside blocks (two kinds of surgery in one plan).
    """
    keep = plan.kept()
    cuts, others = {}, []
    for g in plan.groups:
        if all(g["keep"]):
            continue
        blocks = [(m[0], m[1]) for m in g["members"]
                  if m[1] in _BLOCK_ROLES and m[0] in graph.blocks]
        if blocks:
            cuts[blocks[0]] = keep[g["id"]]
        else:
            others.append(g["name"])
    if cuts and others:
        raise ValueError(
            f"The plan removes channels of transformer blocks and "
            f"channels of {', '.join(repr(n) for n in others[:4])}: a model "
            "with transformer blocks is rebuilt from its config, which does "
            "not hold those. Keep those groups whole (plan.keep) and prune "
            "them in a second plan on the result."
        )
    return cuts


_BLOCK_ROLES = ("mlp", "heads")
_WHAT = {"mlp": "MLP widths", "heads": "numbers of key/value heads"}


def _kept_counts(graph, plan, cuts):
    """dict role -> the one count every block keeps of that group."""
    sizes = {}
    for g in plan.groups:
        for path, role, *_ in g["members"]:
            if role in _BLOCK_ROLES and path in graph.blocks:
                sizes.setdefault(role, {})[path] = len(
                    cuts.get((path, role), range(g["size"])))
    for role, by_block in sizes.items():
        if len(set(by_block.values())) > 1:
            shown = ", ".join(f"{p!r}: {n}"
                              for p, n in list(by_block.items())[:6])
            raise ValueError(
                f"The plan keeps different {_WHAT[role]} in the transformer "
                f"blocks of model {graph.model.name!r} ({shown}), but its "
                "config holds one value for every block. Plan with "
                "scope='layer' (the default for a ratio) or edit the plan so "
                "that every block keeps the same number."
            )
    return {role: next(iter(by_block.values()))
            for role, by_block in sizes.items()}


def _rewritten(config, field, old, new):
    """`config` with every `field` equal to `old` set to `new` (nested
    configs included: a task's backbone)."""
    if isinstance(config, dict):
        return {
            k: new if k == field and v == old else _rewritten(v, field, old,
                                                              new)
            for k, v in config.items()
        }
    if isinstance(config, list):
        return [_rewritten(v, field, old, new) for v in config]
    return config


def apply_block_cuts(model, graph, plan, cuts):
    """`model` rebuilt from its config with the sizes the plan keeps, its
    weights set from `model`'s (the cut blocks' projections sliced)."""
    counts = _kept_counts(graph, plan, cuts)
    first = graph.layers[next(iter(graph.blocks))]
    rule = rule_for(first)
    config = model.get_config()
    for role, kept in counts.items():
        for field, old, new_value in rule.config_values(first, role, kept):
            if old == new_value:
                continue
            rewritten = _rewritten(config, field, old, new_value)
            if rewritten == config:
                raise ValueError(
                    f"Model {model.name!r} ({type(model).__name__}) has no "
                    f"config field {field!r} = {old}: it cannot be rebuilt "
                    "with smaller blocks."
                )
            config = rewritten
    new = type(model).from_config(config)
    sliced = {}
    for (path, role), kept in cuts.items():
        layer = graph.layers[path]
        sliced.update(rule_for(layer).sliced(layer, role, kept))
    values = [sliced.get(id(v), None) for v in model.weights]
    values = [numpy(v) if s is None else s
              for v, s in zip(model.weights, values)]
    if len(new.weights) != len(values) or any(
            tuple(w.shape) != tuple(v.shape)
            for w, v in zip(new.weights, values)):
        raise ValueError(
            f"{type(model).__name__} {model.name!r} rebuilt from its config "
            "does not hold the same variables in the same order: its blocks "
            "cannot be cut by config."
        )
    new.set_weights(values)
    return new


def zeroed_blocks(model, graph, cuts):
    """A copy of `model` (of its class) where nothing of the removed
    channels and heads reaches a block's output."""
    copied, _ = copying.copy_model(model)
    for (path, role), kept in cuts.items():
        layer = _at(copied, path)
        size = rule_for(layer).groups(layer)[role]
        removed = sorted(set(range(size)) - set(kept))
        rule_for(layer).zero_channels(layer, role, removed)
    return copied


def _at(model, path):
    layer = model
    for name in path.split("/"):
        layer = layer.get_layer(name) if isinstance(layer, keras.Model) else (
            _sub_layer(layer, name))
    return layer


def _sub_layer(layer, name):
    for sub in layer._flatten_layers(include_self=False, recursive=False):
        if sub.name == name:
            return sub
    raise ValueError(f"No layer {name!r} in {layer.name!r}.")
