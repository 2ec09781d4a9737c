"""Calibration statistics (`keras_prune.calibration_statistics`,
`criteria.calibrate`): equal to NumPy's for Dense and EinsumDense, inside
keras-hub blocks too; the user's model untouched; bad data refused."""

import keras
import numpy as np
import pytest

import keras_prune
from keras_prune.core.layers import pruned_layers
from tests.conftest import numpy

L = keras.layers
hub = pytest.importorskip("keras_hub")


def mlp():
    inputs = keras.Input((5, 8))
    x = L.Dense(6, activation="relu", name="first")(inputs)
    outputs = L.Dense(3, name="second")(x)
    return keras.Model(inputs, outputs, name="mlp")


def x_data(n=10, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 5, 8)).astype("float32")


def snapshot(model):
    return [numpy(v).copy() for v in model.weights]


def assert_untouched(model, weights, x, expected):
    for before, v in zip(weights, model.weights):
        np.testing.assert_array_equal(before, numpy(v))
    np.testing.assert_array_equal(numpy(model(x)), expected)
    assert not pruned_layers(model)


def test_dense_statistics_equal_numpy():
    model = mlp()
    x = x_data()
    weights, expected = snapshot(model), numpy(model(x))
    stats = keras_prune.calibration_statistics(model, x, gram=True,
                                               batch_size=4)
    assert (stats.batches, stats.samples) == (3, 10)
    assert set(stats) == {"first/kernel", "second/kernel"}
    rows = x.reshape(-1, 8).astype(np.float64)
    first = stats["first/kernel"]
    assert first.rows == 50
    np.testing.assert_allclose(first.squared_norms, (rows ** 2).sum(0),
                               rtol=1e-12)
    np.testing.assert_allclose(first.gram, rows.T @ rows, rtol=1e-12)
    assert first.norms().shape == (8, 1)
    kernel, bias = (numpy(v) for v in model.get_layer("first").weights)
    hidden = np.maximum(rows @ kernel + bias, 0)
    second = stats["second/kernel"]
    np.testing.assert_allclose(second.squared_norms, (hidden ** 2).sum(0),
                               rtol=1e-5)
    np.testing.assert_allclose(np.diag(second.gram), second.squared_norms,
                               rtol=1e-12)
    assert stats.nbytes == 8 * (8 + 64 + 6 + 36)
    assert_untouched(model, weights, x, expected)


def test_einsum_statistics_map_to_the_contracted_kernel_axes():
    inputs = keras.Input((5, 2, 4))
    layer = L.EinsumDense("abcd,cde->abe", output_shape=(None, 6), name="out")
    model = keras.Model(inputs, layer(inputs))
    x = np.random.default_rng(1).normal(size=(3, 5, 2, 4)).astype("float32")
    stats = keras_prune.calibration_statistics(model, x, gram=True)
    s = stats["out/kernel"]
    assert s.layout.feature_axes == (0, 1) and s.rows == 15
    rows = x.reshape(-1, 8).astype(np.float64)
    np.testing.assert_allclose(s.squared_norms, (rows ** 2).sum(0), rtol=1e-12)
    np.testing.assert_allclose(s.gram, rows.T @ rows, rtol=1e-12)
    assert s.norms().shape == (2, 4, 1)
    kernel = numpy(layer.kernel)
    matrix = s.layout.as_rows(kernel)
    assert matrix.shape == (6, 8)
    np.testing.assert_array_equal(matrix, kernel.reshape(8, 6).T)
    np.testing.assert_array_equal(s.layout.from_rows(matrix), kernel)


def test_keras_hub_encoder_attention_is_measured():
    inputs = keras.Input((6, 8))
    outputs = hub.layers.TransformerEncoder(16, 2, name="encoder")(inputs)
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(2).normal(size=(4, 6, 8)).astype("float32")
    weights, expected = snapshot(model), numpy(model(x))
    stats = keras_prune.calibration_statistics(model, x)
    rows = x.reshape(-1, 8).astype(np.float64)
    # query, key and value ("abc,cde->abde") see the block's input itself.
    for name in ("query", "key", "value"):
        (path,) = [p for p in stats if p.endswith(f"/{name}/kernel")]
        s = stats[path]
        assert s.layout.feature_axes == (0,) and s.rows == 24
        np.testing.assert_allclose(s.squared_norms, (rows ** 2).sum(0),
                                   rtol=1e-5)
        assert s.gram is None
    # The attention output ("abcd,cde->abe") sums over heads x head_dim,
    # the feed-forward layers over their units: every row counted.
    assert len(stats) == 6
    assert all(s.rows == 24 for s in stats.values())
    assert stats[[p for p in stats if "attention_output" in p][0]].layout \
        .feature_shape == (2, 4)
    assert_untouched(model, weights, x, expected)


def test_keras_hub_backbone_takes_a_dict_and_batches():
    model = hub.models.GPT2Backbone(
        vocabulary_size=32, num_layers=1, hidden_dim=8, intermediate_dim=16,
        num_heads=2, max_sequence_length=8)
    ids = np.random.default_rng(3).integers(1, 32, size=(2, 8)).astype("int32")
    batch = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
    stats = keras_prune.calibration_statistics(model, [batch, batch])
    assert (stats.batches, stats.samples, len(stats)) == (2, 4, 6)
    assert all(s.rows == 32 for s in stats.values())


def test_statistics_of_a_pruned_model_use_its_wrappers():
    model = mlp()
    pruned = keras_prune.prune_low_magnitude(
        model, keras_prune.ConstantSparsity(0.5, 0))
    stats = keras_prune.calibration_statistics(pruned, x_data())
    assert set(stats) == {"first/kernel", "second/kernel"}


@pytest.mark.parametrize("data, message", [
    (np.zeros((4, 5, 9), "float32"),
     "calibration_data: batch 0 has shape (4, 5, 9); the model expects "
     "(None, 5, 8) (inputs only, no labels)."),
    (np.zeros((4, 8), "float32"),
     "calibration_data: batch 0 has shape (4, 8); the model expects "
     "(None, 5, 8) (inputs only, no labels)."),
    (np.array([["a"] * 8] * 5 * 2).reshape(2, 5, 8),
     "calibration_data: batch 0 has dtype <U1; the model expects float32."),
    (np.zeros((0, 5, 8), "float32"),
     "calibration_data is empty: give at least one sample of the model's "
     "inputs."),
    ([], "calibration_data is empty: give at least one sample of the "
     "model's inputs."),
    ([(np.zeros((2, 5, 8), "float32"), np.zeros(2))],
     "calibration_data: a batch is a tuple; give the model's inputs only (no "
     "labels): an array, or a dict of arrays by input name."),
    (3.0, "calibration_data must be the model's inputs (an array, a dict of "
     "arrays, or an iterable of such batches), got float."),
])
def test_bad_calibration_data(data, message):
    model = mlp()
    with pytest.raises(ValueError) as error:
        keras_prune.calibration_statistics(model, data)
    assert str(error.value) == message


def test_bad_dict_data_for_a_backbone():
    model = hub.models.GPT2Backbone(
        vocabulary_size=32, num_layers=1, hidden_dim=8, intermediate_dim=16,
        num_heads=2, max_sequence_length=8)
    ids = np.zeros((2, 8), "int32")
    with pytest.raises(ValueError) as error:
        keras_prune.calibration_statistics(model, {"token_ids": ids})
    assert str(error.value) == (
        "calibration_data: batch 0 is ['token_ids']; the model takes a dict "
        "of ['padding_mask', 'token_ids'].")
    with pytest.raises(ValueError) as error:
        keras_prune.calibration_statistics(
            model, {"token_ids": ids.astype("float32"), "padding_mask": ids})
    assert str(error.value) == (
        "calibration_data: batch 0 'token_ids' has dtype float32; the model "
        "expects int32.")
