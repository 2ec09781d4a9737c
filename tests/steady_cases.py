"""Kernel states around a mask update, shared by the fast-path tests.

Each case changes a baked kernel the way training (or bad luck) can before
the next update, so that the fast paths — `SteadyUpdates` (test_wrapper.py)
and the in-step update (test_instep.py) — can be compared bit for bit with
the host update.
"""

import keras
import numpy as np

import keras_prune

CASES = [
    "drift", "kept_below_pruned", "tie", "nan", "nan_kept", "inf",
    "new_target", "no_drift", "kept_zero",
]
# The cases in which the exact selection keeps the masks as they are.
STEADY = ("drift", "no_drift")


def perturbed(case, kernel, keep, sparsity=0.5):
    """`(flat kernel copy, sparsity)` for `case`, from a baked kernel.

    Args:
        case: one of `CASES`.
        kernel: the kernel after an update at `sparsity`.
        keep: its mask (bool, same shape).
    """
    kernel = np.array(kernel, dtype=np.float32).reshape(-1)
    keep = np.asarray(keep).reshape(-1)
    pruned, kept = np.flatnonzero(~keep), np.flatnonzero(keep)
    if case == "drift":  # optimizer momentum moved pruned weights a little
        kernel[pruned[:5]] = 1e-6
        kernel[pruned[5:8]] = -2e-6
        kernel[pruned[8:10]] = -0.0
    elif case == "kept_below_pruned":  # a kept weight fell under the cut
        kernel[pruned[:3]] = 1e-3
        kernel[kept[0]] = 1e-4
    elif case == "tie":  # equal |w| on both sides: the index decides
        kernel[pruned[0]] = 0.25
        kernel[kept[0]] = -0.25
        kernel[kept[1:]] = np.where(kernel[kept[1:]] < 0, -1.0, 1.0)
    elif case == "nan":  # NaN sorts last in the selection, but is pruned
        kernel[pruned[0]] = np.nan
    elif case == "nan_kept":
        kernel[kept[0]] = np.nan
    elif case == "inf":
        kernel[pruned[0]] = -np.inf
        kernel[kept[1]] = np.inf
    elif case == "new_target":
        sparsity = 0.75
    elif case == "kept_zero":  # a kept weight reached exactly -0.0
        kernel[kept[0]] = -0.0
    return kernel, sparsity


def twin_dense_wrappers(sparsity=0.5, seed=0):
    """Two identical pruned Dense(8) wrappers after one host update."""
    values = np.random.default_rng(seed).normal(size=(16, 8)).astype("float32")
    twins = []
    for _ in range(2):
        wrapper = keras_prune.prune_low_magnitude(
            keras.layers.Dense(8, kernel_initializer="zeros")
        )
        wrapper.build((None, 16))
        wrapper.prunable_weights[0].assign(values)
        wrapper.update_masks(sparsity, step=3)
        twins.append(wrapper)
    return twins


def state(wrapper):
    """Kernel bits (+0.0 vs -0.0), mask, threshold and step of `wrapper`."""
    kernel = np.asarray(keras.ops.convert_to_numpy(wrapper.prunable_weights[0]))
    return (
        kernel.view(np.uint32).copy(),
        np.asarray(keras.ops.convert_to_numpy(wrapper.masks[0])).copy(),
        keras.ops.convert_to_numpy(wrapper.thresholds[0]).item(),
        int(keras.ops.convert_to_numpy(wrapper.pruning_step)),
    )
