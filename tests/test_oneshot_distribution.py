"""One-shot pruning with calibration data under Keras's distribution API
(JAX, the 2 simulated CPU devices of conftest): DataParallel shards the
calibration batches, ModelParallel the kernels; the statistics, the Wanda
and SparseGPT masks and the global magnitude masks are those of one
device; masks (and movement's scores) are sharded as their kernels, in
one-shot pruning and in training with `fit`."""

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
                             w.prunable_weights[0].value.sharding,
                             w.masks[0].value.sharding)
                            for w in pruned_layers(pruned)]
    pruned, _ = keras_prune.prune_now(model, 0.5, scope="global")
    found["magnitude"] = [(numpy(w.masks[0]), numpy(w.prunable_weights[0]),
                           None, None) for w in pruned_layers(pruned)]
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
        for (mask, kernel, *_), (mask2, kernel2, *_) in zip(one[method],
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
    # Keys match whole paths: ".*first.*kernel" would also match the
    # wrappers' "prune_low_magnitude_first/threshold_0_kernel" (a scalar),
    # which no 2-D layout fits.
    layouts["first/kernel"] = (None, "model")
    layouts["second/kernel"] = ("model", None)
    found = distributed(keras.distribution.ModelParallel(
        layout_map=layouts, batch_dim_name="batch"))
    assert_same(run(), found)
    # The pruned kernels stay sharded over the "model" axis, and each mask
    # is sharded as its kernel (no layout map key names the masks).
    for _, _, sharding, mask_sharding in found["sparsegpt"]:
        assert len(sharding.device_set) == 2
        assert "model" in str(sharding.spec)
        assert mask_sharding.spec == sharding.spec


def test_a_layout_map_key_naming_the_masks_is_kept():
    import jax

    mesh = keras.distribution.DeviceMesh((1, 2), ["batch", "model"],
                                         jax.devices("cpu"))
    layouts = keras.distribution.LayoutMap(mesh)
    layouts["first/kernel"] = (None, "model")
    layouts[".*first/mask_0_kernel"] = (None, None)  # replicated, on purpose
    keras.distribution.set_distribution(keras.distribution.ModelParallel(
        layout_map=layouts, batch_dim_name="batch"))
    try:
        pruned, _ = keras_prune.prune_now(build(), 0.5, scope="global")
    finally:
        keras.distribution.set_distribution(None)
    first = pruned.get_layer("prune_low_magnitude_first")
    assert "model" in str(first.layer.kernel.value.sharding.spec)
    assert tuple(first.masks[0].value.sharding.spec) == (None, None)
    assert numpy(first.masks[0]).mean() == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize("criterion", ["magnitude", "movement"])
def test_training_under_model_parallel_shards_masks_and_scores(criterion):
    """Gradual pruning trained with `fit` under ModelParallel: each mask
    (and movement's scores) sharded as its kernel, exactly half pruned."""
    import jax

    mesh = keras.distribution.DeviceMesh((1, 2), ["batch", "model"],
                                         jax.devices("cpu"))
    layouts = keras.distribution.LayoutMap(mesh)
    layouts["first/kernel"] = (None, "model")
    keras.distribution.set_distribution(keras.distribution.ModelParallel(
        layout_map=layouts, batch_dim_name="batch"))
    try:
        pruned = keras_prune.prune_low_magnitude(
            build(), pruning_schedule=keras_prune.ConstantSparsity(0.5, 0),
            criterion=criterion)
        pruned.compile("adam", "mse")
        y = np.random.default_rng(1).normal(size=(64, 8)).astype("float32")
        pruned.fit(X, y, epochs=2, batch_size=16, verbose=0,
                   callbacks=[keras_prune.UpdatePruningStep()])
    finally:
        keras.distribution.set_distribution(None)
    first = pruned.get_layer("prune_low_magnitude_first")
    kernel_spec = first.layer.kernel.value.sharding.spec
    assert "model" in str(kernel_spec)
    assert first.masks[0].value.sharding.spec == kernel_spec
    if criterion == "movement":
        assert first.mask_scores[0].value.sharding.spec == kernel_spec
    assert int((~numpy(first.masks[0])).sum()) == 16 * 32 // 2
    assert int((numpy(first.layer.kernel) == 0).sum()) == 16 * 32 // 2
