"""The pieces `find_ticket` works with: weights by layer, masks by weight,
the magnitude pruning of survivors, and a search directory on disk.

Weights travel as `{layer name: [arrays]}` of the unwrapped layers, so the
same state fits the dense copy and every pruned copy made from it; masks as
`{"layer/variable": bool array}`.
"""

import io
import json
import os

import keras
import numpy as np

from keras_prune.analysis import plots
from keras_prune.analysis.tickets import TicketRound
from keras_prune.core import patterns
from keras_prune.core.layers import pruned_layers
from keras_prune.core.walk import all_layers
from keras_prune.core.wrapper import PruneLowMagnitude


def weight_layers(model):
    """`{name: layer}` of the layers that own weights (wrappers and models
    skipped: their inner layers are listed)."""
    return {
        layer.name: layer for layer in all_layers(model)
        if not isinstance(layer, (PruneLowMagnitude, keras.Model))
        and layer.weights
    }


def get_state(model):
    return {
        name: [np.array(keras.ops.convert_to_numpy(v)) for v in layer.weights]
        for name, layer in weight_layers(model).items()
    }


def set_state(model, state):
    for name, layer in weight_layers(model).items():
        for variable, value in zip(layer.weights, state[name]):
            variable.assign(value)


def mask_key(wrapper, variable):
    return f"{wrapper.layer.name}/{variable.name}"


def prunable(model):
    """`[(key, wrapper, variable)]` of a pruned model, in model order."""
    return [
        (mask_key(w, v), w, v) for w in pruned_layers(model)
        for v in w.prunable_weights
    ]


def get_masks(model):
    return {
        key: np.array(keras.ops.convert_to_numpy(wrapper.masks[i]), bool)
        for wrapper in pruned_layers(model)
        for i, key in enumerate(
            mask_key(wrapper, v) for v in wrapper.prunable_weights)
    }


def set_masks(model, masks):
    """Assigns `masks` and bakes `w * mask` (pruned weights become 0)."""
    for wrapper in pruned_layers(model):
        wrapper.set_masks(
            [(masks[mask_key(wrapper, v)], 0.0)
             for v in wrapper.prunable_weights], 0,
        )


def prune_survivors(model, masks, targets, scope):
    """New masks: the smallest |w| of the survivors go, pruned ones stay.

    Args:
        model: the trained pruned model (its weights are read).
        masks: the current masks.
        targets: `{key: sparsity}`, the fraction of each weight pruned
            after this round (counted from the dense weight, so the counts
            are exact: `num_pruned(size, sparsity)`).
        scope: "layer" (each weight to its target) or "global" (one
            threshold over the weights sharing a target).

    Returns:
        The new masks, each a subset of the old one.
    """
    scores = {
        key: np.where(masks[key], np.abs(keras.ops.convert_to_numpy(v)), 0)
        for key, _, v in prunable(model)
    }
    found = {}
    if scope == "layer":
        for key, score in scores.items():
            found[key], _ = patterns.magnitude_mask(score, targets[key])
    else:
        for target in sorted(set(targets.values())):
            keys = [k for k in scores if targets[k] == target]
            keeps, _ = patterns.global_masks(
                [lambda k=k: scores[k] for k in keys],
                [scores[k].size for k in keys], target,
            )
            found.update(zip(keys, keeps))
    # A survivor whose trained value is exactly 0 ties with the pruned
    # weights; it may be chosen, a pruned weight never comes back.
    return {key: found[key] & masks[key] for key in masks}


def random_masks(like, seed):
    """Masks with each weight's kept count of `like`, positions at random."""
    rng = np.random.default_rng(seed)
    found = {}
    for key, keep in like.items():
        flat = np.zeros(keep.size, dtype=bool)
        flat[rng.permutation(keep.size)[: int(keep.sum())]] = True
        found[key] = flat.reshape(keep.shape)
    return found


# ---- the search directory ------------------------------------------------


def _round_name(directory, index, ext):
    return os.path.join(directory, f"round_{index:03d}.{ext}")


def _save_npz(path, arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    plots.write_atomically(path, buffer.getvalue())


def _flatten(state, prefix):
    # Stored by position, not name: a model built again (a resumed search
    # calling the builder) has new automatic layer names.
    return {
        f"{prefix}{i:04d}/{j:04d}": value
        for i, values in enumerate(state.values())
        for j, value in enumerate(values)
    }


def _unflatten(arrays, prefix, names):
    state = {}
    for key in sorted(k for k in arrays if k.startswith(prefix)):
        i, _ = key[len(prefix):].split("/")
        state.setdefault(names[int(i)], []).append(arrays[key])
    return state


def open_directory(directory, settings):
    """Creates `directory` with `settings`, or checks it holds the same
    search (a different one would mix two searches' rounds)."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "search.json")
    mine = json.loads(json.dumps(settings))
    if not os.path.exists(path):
        plots.write_atomically(path, json.dumps(mine, indent=1).encode())
        return
    with open(path, encoding="utf-8") as file:
        theirs = json.load(file)
    ignore = {"rounds"}
    differ = sorted(
        k for k in set(mine) | set(theirs)
        if k not in ignore and mine.get(k) != theirs.get(k)
    )
    if differ:
        raise ValueError(
            f"directory {directory!r} holds another search (different "
            + ", ".join(f"{k}: {theirs.get(k)!r} there, {mine.get(k)!r} now"
                        for k in differ)
            + "); use a new directory, or the same arguments to resume."
        )


def save_start(directory, name, state):
    _save_npz(os.path.join(directory, f"{name}.npz"), _flatten(state, "w:"))


def load_start(directory, name, model):
    path = os.path.join(directory, f"{name}.npz")
    if not os.path.exists(path):
        return None
    with np.load(path) as arrays:
        return _unflatten(dict(arrays), "w:", list(weight_layers(model)))


def save_round(directory, record, state, masks, extra):
    """Writes a finished round: weights and masks, then its JSON record
    (written last, so it marks the round as finished)."""
    arrays = _flatten(state, "w:")
    arrays.update(_flatten({k: [v] for k, v in masks.items()}, "m:"))
    _save_npz(_round_name(directory, record.index, "npz"), arrays)
    found = record.to_dict()
    found.pop("masks", None)
    found["extra"] = extra
    plots.write_atomically(
        _round_name(directory, record.index, "json"),
        json.dumps(found).encode(),
    )


def finished_rounds(directory):
    """The finished rounds' `(record, extra)`, in order, up to the first
    one missing."""
    found = []
    while os.path.exists(_round_name(directory, len(found), "json")):
        with open(_round_name(directory, len(found), "json"),
                  encoding="utf-8") as file:
            data = json.load(file)
        extra = data.pop("extra")
        found.append((TicketRound.from_dict(data), extra))
    return found


def load_round(directory, index, model):
    """`(trained state, masks)` of a finished round, under the names of
    `model` (a pruned copy of the search's model)."""
    with np.load(_round_name(directory, index, "npz")) as arrays:
        arrays = dict(arrays)
    masks = _unflatten(arrays, "m:", [k for k, _, _ in prunable(model)])
    masks = {k: v[0].astype(bool) for k, v in masks.items()}
    return _unflatten(arrays, "w:", list(weight_layers(model))), masks
