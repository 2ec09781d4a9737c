"""One-shot pruning with calibration data under Keras's distribution API
(JAX, the 2 simulated CPU devices of conftest): DataParallel shards the
calibration batches, ModelParallel the kernels; the statistics, the Wanda
and SparseGPT masks and the global magnitude masks are those of one
device."""

import keras
import numpy as np
import pytest

import keras_prune
from keras_prune.core.layers import pruned_layers
from tests.conftest import numpy

pytestmark = pytest.mark.skipif(keras.backend.backend() != "jax",
                                reason="keras.distribution runs on JAX")


def build():
    keras.utils.set_random_seed(0)
    x_in = keras.Input((16,))
    h = keras.layers.Dense(32, activation="relu", name="first")(x_in)
    return keras.Model(x_in, keras.layers.Dense(8, name="second")(h))


X = np.random.default_rng(0).normal(size=(64, 16)).astype("float32")


def run():
    model = build()
    found = {}
    for criterion in ("wanda", "sparsegpt"):
        pruned, _ = keras_prune.prune_now(
            model, 0.5, criterion=criterion, calibration_data=X,
            batch_size=16)
        found[criterion] = [(numpy(w.masks[0]), numpy(w.prunable_weights[0]),
                             w.prunable_weights[0].value.sharding)
                            for w in pruned_layers(pruned)]
    pruned, _ = keras_prune.prune_now(model, 0.5, scope="global")
    found["magnitude"] = [(numpy(w.masks[0]), numpy(w.prunable_weights[0]),
                           None) for w in pruned_layers(pruned)]
    found["statistics"] = {
        path: (s.squared_norms, s.gram) for path, s in
        keras_prune.calibration_statistics(model, X, gram=True).items()}
    return found


def distributed(distribution):
    keras.distribution.set_distribution(distribution)
    try:
        return run()
    finally:
        keras.distribution.set_distribution(None)


def assert_same(one, other):
    for method in ("wanda", "sparsegpt", "magnitude"):
        for (mask, kernel, _), (mask2, kernel2, _) in zip(one[method],
                                                          other[method]):
            np.testing.assert_array_equal(mask2, mask)
            np.testing.assert_allclose(kernel2, kernel, rtol=1e-5,
                                       atol=1e-6)
    for path, (norms, gram) in one["statistics"].items():
        np.testing.assert_allclose(other["statistics"][path][0], norms,
                                   rtol=1e-6)
        np.testing.assert_allclose(other["statistics"][path][1], gram,
                                   rtol=1e-6, atol=1e-6)


def test_data_parallel_gives_the_single_device_masks():
    import jax

    devices = jax.devices("cpu")
    assert len(devices) == 2, "conftest sets 2 simulated CPU devices"
    assert_same(run(), distributed(
        keras.distribution.DataParallel(devices=devices)))


def test_model_parallel_gives_the_single_device_masks():
    import jax

    devices = jax.devices("cpu")
    mesh = keras.distribution.DeviceMesh((1, 2), ["batch", "model"], devices)
    layouts = keras.distribution.LayoutMap(mesh)
    # Anchored keys: "first.*kernel" would also match the wrappers'
    # "first/threshold_0_kernel" (a scalar), which no 2-D layout fits.
    layouts["first/kernel$"] = (None, "model")
    layouts["second/kernel$"] = ("model", None)
    found = distributed(keras.distribution.ModelParallel(
        layout_map=layouts, batch_dim_name="batch"))
    assert_same(run(), found)
    # The pruned kernels stay sharded over the "model" axis.
    for _, _, sharding in found["sparsegpt"]:
        assert len(sharding.device_set) == 2
        assert "model" in str(sharding.spec)
