"""In-step mask updates (`keras_prune.training.tf_fast_path`, TensorFlow's fast path).

At frequency 1 on TensorFlow, `UpdatePruningStep` updates the masks of
plain magnitude layers inside the compiled train step where the pruned
count does not change. Its device selection must be the host's, bit for
bit; on JAX and torch (and wherever it does not apply) the host path runs.
The fit-level equality with host-only updates is in test_wrapper.py
(`test_frequency_one_fit_equals_the_host_updates`, every backend).
"""

import keras
import numpy as np
import pytest

import keras_prune
from keras_prune.training import tf_fast_path as instep
from keras_prune.core import patterns
from keras_prune.training.callbacks import _InStepPlan
from keras_prune.training.updater import MaskUpdater
from tests import steady_cases

L = keras.layers
ON_TF = keras.backend.backend() == "tensorflow"
tf_only = pytest.mark.skipif(
    not ON_TF, reason="in-step updates are TensorFlow's (JAX/torch: host)"
)


def _in_step(model):
    """The in-step updates a fit of `model` would use (None: host only)."""
    return _InStepPlan(model, MaskUpdater(model).layers).in_step


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _cases():
    """(scores, k): ties, zeros, NaN, inf, tiny sizes, every k edge."""
    rng = np.random.default_rng(7)
    cases = []
    for size in (1, 2, 7, 64, 1000):
        for trial in range(12):
            values = rng.normal(size=size).astype("float32")
            if trial % 3 == 1:  # many ties
                values = rng.integers(-3, 4, size=size).astype("float32")
            if trial % 4 == 2:  # a pruned-before kernel: mostly zeros
                values[rng.random(size) < 0.8] = 0.0
            if trial == 5:
                values[rng.random(size) < 0.1] = np.nan
            if trial == 7:
                values[rng.random(size) < 0.1] = np.inf
            if trial == 9:
                values[rng.random(size) < 0.3] = -0.0
            for k in sorted({0, 1, size // 3, size // 2, size - 1, size}):
                cases.append((np.abs(values), k))
    return cases


@tf_only
def test_device_selection_is_the_host_selection():
    import tensorflow as tf

    select = tf.function(instep._select, jit_compile=True, autograph=False)
    for scores, k in _cases():
        keep, threshold = select(tf.constant(scores), tf.constant(k, "int32"))
        host_keep, host_threshold = patterns.prune_smallest(scores, k)
        np.testing.assert_array_equal(
            keep.numpy(), host_keep, err_msg=f"k={k} scores={scores}"
        )
        np.testing.assert_array_equal(
            np.float32(threshold.numpy()), np.float32(host_threshold)
        )


@tf_only
def test_device_selection_of_float16_scores():
    import tensorflow as tf

    select = tf.function(instep._select, jit_compile=True, autograph=False)
    scores = np.abs(
        np.random.default_rng(3).normal(size=500).astype("float16")
    )
    scores[::7] = scores[3]  # ties
    for k in (1, 100, 250, 499):
        keep, threshold = select(tf.constant(scores), tf.constant(k, "int32"))
        host_keep, host_threshold = patterns.prune_smallest(scores, k)
        np.testing.assert_array_equal(keep.numpy(), host_keep)
        assert float(threshold) == host_threshold


@tf_only
@pytest.mark.parametrize("case", steady_cases.CASES)
def test_in_step_update_writes_what_the_host_update_writes(case):
    # The compiled in-step body (check, else the device selection; then the
    # writes) leaves the kernel (bit for bit), mask, threshold and step as
    # the host update does, in every case: when the masks stay and when the
    # device must re-select.
    import tensorflow as tf

    device, host = steady_cases.twin_dense_wrappers()
    keep = numpy(device.masks[0]).reshape(-1)
    kept = np.flatnonzero(keep)
    kernel, sparsity = steady_cases.perturbed(
        case, numpy(device.prunable_weights[0]), keep
    )
    for wrapper in (device, host):
        wrapper.prunable_weights[0].assign(kernel.reshape(16, 8))

    updates = instep.InStepUpdates([device], iterations=None)
    k = device._num_pruned(sparsity)[0]
    tf.function(updates._apply, autograph=False)(
        tf.constant([k], "int32"), tf.constant(4, "int32")
    )
    host.update_masks(sparsity, step=4)
    for a, b in zip(steady_cases.state(device), steady_cases.state(host)):
        np.testing.assert_array_equal(a, b)
    assert int(numpy(device.pruning_step)) == 4
    if case == "kept_below_pruned":  # the update really did re-select
        assert not numpy(host.masks[0]).reshape(-1)[kept[0]]


def _fit_model(frequency=1, **compile_kwargs):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((16,)), L.Dense(12, activation="relu"), L.Dense(4)]
    )
    pruned = keras_prune.prune_low_magnitude(
        model, keras_prune.ConstantSparsity(0.75, 0, frequency=frequency)
    )
    pruned.compile("adam", "mse", **compile_kwargs)
    return pruned


def _fit(model, epochs=2):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 16)).astype("float32")
    y = rng.normal(size=(64, 4)).astype("float32")
    model.fit(
        x, y, batch_size=8, epochs=epochs, shuffle=False, verbose=0,
        callbacks=[keras_prune.UpdatePruningStep()],
    )


def test_where_the_train_step_updates_the_masks():
    # TensorFlow at frequency 1: in the train step. Everywhere else, and
    # where the optimizer's iteration count would differ from the
    # callback's step count, the host updates them.
    model = _fit_model()
    model.optimizer.build(model.trainable_variables)
    in_step = _in_step(model)
    assert (in_step is not None) == ON_TF
    if ON_TF:
        assert in_step.wrappers == keras_prune.core.layers.pruned_layers(model)
    for frequency, kwargs in [
        (2, {}),  # writes at every step: only worth it when all update
        (100, {}),
        (1, {"steps_per_execution": 2}),
        (1, {"run_eagerly": True}),
    ]:
        model = _fit_model(frequency, **kwargs)
        model.optimizer.build(model.trainable_variables)
        assert _in_step(model) is None, (frequency, kwargs)
    global_model = keras_prune.prune_low_magnitude(
        keras.Sequential([keras.Input((4,)), L.Dense(3)]),
        keras_prune.ConstantSparsity(0.5, 0, frequency=1),
        scope="global",
    )
    global_model.compile("adam", "mse")
    global_model.optimizer.build(global_model.trainable_variables)
    assert _in_step(global_model) is None


def test_in_step_fits_continue_across_fits_and_saving(tmp_path):
    # Two fits of one model (the second reuses the traced train function
    # and the in-step table), then save/load: same masks as the host path,
    # and nothing of the in-step state in the .keras file.
    def run(in_step):
        model = _fit_model()
        if not in_step:
            model.compile("adam", "mse", steps_per_execution=1,
                          run_eagerly=True)
        _fit(model, epochs=1)
        _fit(model, epochs=1)
        return model

    fast, slow = run(True), run(False)
    for a, b in zip(fast.get_weights(), slow.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for layer in keras_prune.core.layers.pruned_layers(fast):
        mask = numpy(layer.masks[0])
        assert int((~mask).sum()) == round(0.75 * mask.size)
        assert not numpy(layer.prunable_weights[0])[~mask].any()
    path = tmp_path / "m.keras"
    fast.save(path)
    loaded = keras.saving.load_model(path)
    assert len(loaded.weights) == len(fast.weights)
    for a, b in zip(loaded.get_weights(), fast.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_mixed_precision_in_step_equals_host(monkeypatch):
    # Under a mixed policy the layer's call reads float32 variables as
    # bfloat16; the in-step update must select and bake the float32 values.
    def run(in_step):
        if not in_step:
            monkeypatch.setattr(instep, "model_allows", lambda model: False)
        keras.config.set_dtype_policy("mixed_bfloat16")
        try:
            model = _fit_model()
            _fit(model)
        finally:
            keras.config.set_dtype_policy("float32")
            monkeypatch.undo()
        return [
            (numpy(w.prunable_weights[0]).view(np.uint32), numpy(w.masks[0]),
             numpy(w.thresholds[0]), numpy(w.pruning_step))
            for w in keras_prune.core.layers.pruned_layers(model)
        ]

    for a, b in zip(run(True), run(False)):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
