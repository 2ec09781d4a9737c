"""`.keras` files saved by keras-prune 0.1.0 (before the core was
reorganized) still load, on every backend: the same masks, steps and
outputs, and training goes on (tests/fixtures/legacy/make_files.py wrote
them, on TensorFlow)."""

import os

import keras
import numpy as np
import pytest

import keras_prune
from keras_prune.core.layers import pruned_layers
from tests.conftest import numpy

HERE = os.path.join(os.path.dirname(__file__), "fixtures", "legacy")
NAMES = ("gradual", "patterns", "one_shot", "qat")


@pytest.fixture(scope="module")
def expected():
    with np.load(os.path.join(HERE, "expected.npz")) as data:
        return dict(data)


@pytest.mark.parametrize("name", NAMES)
def test_loads_with_same_masks_steps_and_outputs(name, expected):
    model = keras.saving.load_model(os.path.join(HERE, f"{name}.keras"))
    wrappers = pruned_layers(model)
    assert wrappers
    for i, wrapper in enumerate(wrappers):
        for j, mask in enumerate(wrapper.masks):
            np.testing.assert_array_equal(
                numpy(mask), expected[f"{name}/mask/{i}/{j}"])
        assert int(numpy(wrapper.pruning_step)) == int(
            expected[f"{name}/step/{i}"])
    x = expected[f"{name}/x"]
    np.testing.assert_allclose(
        numpy(model(x)), expected[f"{name}/y"], rtol=1e-5, atol=1e-5)
    stripped = keras_prune.strip_pruning(model)
    np.testing.assert_allclose(
        numpy(stripped(x)), expected[f"{name}/stripped"], rtol=1e-5,
        atol=1e-5)


def test_gradual_file_trains_on_where_its_schedule_stopped(expected):
    model = keras.saving.load_model(os.path.join(HERE, "gradual.keras"))
    wrappers = pruned_layers(model)
    assert [w.pruning_schedule.final_sparsity for w in wrappers] == [
        0.75, 0.75, 0.5]
    x = expected["gradual/x"]
    y = np.arange(len(x)) % 4
    step = int(numpy(model.optimizer.iterations))
    assert step == 8  # 2 epochs of 4 batches
    model.fit(x, y, batch_size=16, epochs=4, verbose=0,
              callbacks=[keras_prune.UpdatePruningStep()])
    # Updates every 2 steps up to end_step 20: the last one at step 20.
    assert [int(numpy(w.pruning_step)) for w in wrappers] == [20, 20, 20]
    for wrapper, target in zip(wrappers, (0.75, 0.75, 0.5)):
        for variable in wrapper.prunable_weights:
            zeros = int(np.sum(numpy(variable) == 0))
            assert zeros == round(target * np.prod(variable.shape))
