"""Mask selection rules (`keras_prune.core.patterns`), checked against a sort."""

import keras
import numpy as np
import pytest

import keras_prune as prune
from keras_prune.core.patterns import magnitude_mask
from keras_prune.core.patterns import num_pruned
from tests.conftest import numpy


def _reference_mask(scores, sparsity):
    """Prune the k smallest by (score, flat index): a full stable sort."""
    flat = scores.reshape(-1)
    k = num_pruned(flat.size, sparsity)
    order = np.argsort(flat, kind="stable")
    keep = np.ones(flat.size, dtype=bool)
    keep[order[:k]] = False
    return keep.reshape(scores.shape)


@pytest.mark.parametrize("zero_fraction", [0.0, 0.3, 0.85, 0.9, 0.95, 1.0])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.97])
def test_mask_matches_sort_with_zeros_and_ties(zero_fraction, sparsity):
    # Already-pruned weights (a block of exact zeros) take a shortcut; the
    # result must be what a full sort with the index tie-break gives.
    rng = np.random.default_rng(0)
    scores = np.round(np.abs(rng.standard_normal((101, 37))), 2)
    scores = scores.astype(np.float32)
    scores.reshape(-1)[: int(zero_fraction * scores.size)] = 0
    rng.shuffle(scores.reshape(-1))
    keep, threshold = magnitude_mask(scores, sparsity)
    np.testing.assert_array_equal(keep, _reference_mask(scores, sparsity))
    assert int((~keep).sum()) == num_pruned(scores.size, sparsity)
    pruned = scores[~keep]
    assert threshold == (pruned.max() if pruned.size else 0.0)


@pytest.mark.parametrize("zero_fraction,sparsity", [(0.95, 0.9), (0.5, 0.6)])
def test_ties_split_across_scan_chunks(zero_fraction, sparsity, monkeypatch):
    # Ties at the threshold are located chunk by chunk (not as one list of
    # indices): the last pruned tie can lie in any chunk.
    monkeypatch.setattr(prune.core.patterns, "_CHUNK", 1000)
    rng = np.random.default_rng(1)
    scores = np.round(np.abs(rng.standard_normal(20_011)), 1).astype("float32")
    scores[: int(zero_fraction * scores.size)] = 0
    rng.shuffle(scores)
    keep, _ = magnitude_mask(scores, sparsity)
    np.testing.assert_array_equal(keep, _reference_mask(scores, sparsity))


def test_baked_weights_have_no_negative_zeros():
    # Negative pruned weights must be baked to +0.0 (a -0.0 compares equal
    # but puts sign bits into checkpoints).
    layer = keras.layers.Dense(50)
    layer.build((None, 40))
    wrapped = prune.prune_low_magnitude(layer, prune.ConstantSparsity(0.9, 0))
    wrapped.update_masks(0.9, 0)
    kernel = numpy(wrapped.layer.kernel)
    assert int((kernel == 0).sum()) == num_pruned(kernel.size, 0.9)
    assert not np.signbit(kernel[kernel == 0]).any()
