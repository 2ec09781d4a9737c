"""Wanda through `prune_now(..., criterion="wanda", calibration_data=x)`:
per-row, layer, global and N:M masks, the reconstruction report, a tiny
Llama backbone end to end, and clear errors before any work."""

import keras
import numpy as np
import pytest

import keras_prune
from keras_prune.core.layers import pruned_layers
from keras_prune.core.patterns import num_pruned
from keras_prune.core.patterns import row_mask
from tests.conftest import numpy

L = keras.layers
hub = pytest.importorskip("keras_hub")


def mlp(inputs=10, hidden=12, name="mlp"):
    x_in = keras.Input((inputs,))
    x = L.Dense(hidden, activation="relu", name="first")(x_in)
    return keras.Model(x_in, L.Dense(4, name="second")(x), name=name)


def masks(pruned):
    return {w.prunable_weights[0].path: numpy(w.masks[0])
            for w in pruned_layers(pruned)}


def test_equal_input_norms_give_magnitude_per_row():
    model = keras.Sequential([keras.Input((16,)), L.Dense(8, name="dense")])
    signs = np.random.default_rng(0).choice([-1.0, 1.0], size=(32, 16))
    x = (3.0 * signs).astype("float32")  # every ||X_j|| = 3 sqrt(32)
    wanda, report = keras_prune.prune_now(
        model, 0.5, criterion="wanda", calibration_data=x)
    magnitude, _ = keras_prune.prune_now(model, 0.5, scope="row")
    np.testing.assert_array_equal(masks(wanda)["dense/kernel"],
                                  masks(magnitude)["dense/kernel"])
    assert report.prunable_zeros == 8 * 8


def test_row_counts_are_exact_and_outliers_are_kept():
    model = mlp()
    x = np.random.default_rng(1).normal(size=(64, 10)).astype("float32")
    x[:, 3] *= 50.0
    pruned, _ = keras_prune.prune_now(
        model, 0.3, criterion="wanda", calibration_data=x, batch_size=16)
    first = masks(pruned)["first/kernel"]
    # Every output (kernel column) keeps 7 of its 10 inputs.
    np.testing.assert_array_equal((~first).sum(axis=0),
                                  [num_pruned(10, 0.3)] * 12)
    assert first[3].all()  # the outlier feature survives in every row
    second = masks(pruned)["second/kernel"]
    np.testing.assert_array_equal((~second).sum(axis=0),
                                  [num_pruned(12, 0.3)] * 4)


def test_einsum_rows_span_every_contracted_axis():
    inputs = keras.Input((5, 2, 4))
    layer = L.EinsumDense("abcd,cde->abe", output_shape=(None, 6), name="out")
    model = keras.Model(inputs, layer(inputs))
    x = np.random.default_rng(2).normal(size=(3, 5, 2, 4)).astype("float32")
    pruned, _ = keras_prune.prune_now(
        model, 0.25, criterion="wanda", calibration_data=x)
    keep = masks(pruned)["out/kernel"]
    np.testing.assert_array_equal((~keep).sum(axis=(0, 1)), [2] * 6)


def test_row_mask_prunes_tied_scores_by_index():
    scores = np.zeros((6, 2), "float32")
    scores[:, 1] = [3, 1, 1, 1, 2, 0]
    keep, threshold = row_mask(scores, 0.5, (0,))
    np.testing.assert_array_equal(keep.T.astype(int),
                                  [[0, 0, 0, 1, 1, 1], [1, 0, 0, 1, 1, 0]])
    assert threshold == 1.0


def test_row_scope_serves_any_criterion_and_gradual_pruning():
    x_in = keras.Input((6, 6, 3))
    x = L.Conv2D(4, 3, name="conv")(x_in)
    model = keras.Model(x_in, L.Dense(5, name="dense")(L.Flatten()(x)))
    pruned, _ = keras_prune.prune_now(model, 0.5, scope="row")
    conv = masks(pruned)["conv/kernel"]  # a row: 3 x 3 x 3 inputs
    np.testing.assert_array_equal((~conv).sum(axis=(0, 1, 2)),
                                  [num_pruned(27, 0.5)] * 4)
    gradual = keras_prune.prune_low_magnitude(
        model, keras_prune.ConstantSparsity(0.5, 0), scope="row")
    keras_prune.update_masks(gradual, 0)
    dense = masks(gradual)["dense/kernel"]
    np.testing.assert_array_equal((~dense).sum(axis=0), [32] * 5)


def test_layer_and_global_scopes():
    model = mlp()
    x = np.random.default_rng(3).normal(size=(32, 10)).astype("float32")
    layer, _ = keras_prune.prune_now(
        model, 0.6, scope="layer", criterion="wanda", calibration_data=x)
    for path, keep in masks(layer).items():
        assert (~keep).sum() == num_pruned(keep.size, 0.6), path
    together, report = keras_prune.prune_now(
        model, 0.6, scope="global", criterion="wanda", calibration_data=x)
    assert report.prunable_zeros == num_pruned(10 * 12 + 12 * 4, 0.6)


def test_n_m_groups_along_the_input_axis():
    model = mlp(inputs=12)
    x = np.random.default_rng(4).normal(size=(32, 12)).astype("float32")
    pruned, report = keras_prune.prune_now(
        model, 0.5, criterion="wanda", calibration_data=x,
        sparsity_m_by_n=(2, 4))
    assert keras_prune.check_n_m(pruned, 2, 4).ok
    assert report.prunable_zeros == (12 * 12 + 12 * 4) // 2


def test_reconstruction_report_and_outlier_features():
    rng = np.random.default_rng(5)
    model = keras.Sequential([keras.Input((32,)), L.Dense(16, name="dense")])
    x = rng.normal(size=(256, 32)).astype("float32")
    x[:, [3, 17, 25]] *= np.array([20.0, 60.0, 100.0], "float32")
    wanda, report = keras_prune.prune_now(
        model, 0.5, criterion="wanda", calibration_data=x, batch_size=64)
    ours = report.reconstruction["dense/kernel"]
    # The report's number is ||XW - XW^||^2 / ||XW||^2, from NumPy here.
    kernel = numpy(model.get_layer("dense").kernel).astype(np.float64)
    keep = masks(wanda)["dense/kernel"]
    rows = x.astype(np.float64)
    expected = (np.sum((rows @ (kernel * ~keep)) ** 2)
                / np.sum((rows @ kernel) ** 2))
    np.testing.assert_allclose(ours.error, expected, rtol=1e-9)
    assert ours.rows == 256 and ours.sparsity == 0.5
    for scope in ("row", "layer"):
        magnitude, _ = keras_prune.prune_now(model, 0.5, scope=scope)
        theirs = keras_prune.reconstruction_errors(model, magnitude, x)
        assert ours.error < theirs["dense/kernel"].error / 5, scope
    assert "dense/kernel" in str(report.reconstruction)
    _, nm = keras_prune.prune_now(model, 0.5, criterion="wanda",
                                  calibration_data=x, sparsity_m_by_n=(2, 4))
    magnitude, _ = keras_prune.prune_now(model, 0.5, scope="layer",
                                         sparsity_m_by_n=(2, 4))
    theirs = keras_prune.reconstruction_errors(model, magnitude, x)
    assert nm.reconstruction["dense/kernel"].error < (
        theirs["dense/kernel"].error / 2)


def test_fit_strip_save_and_load(tmp_path):
    model = mlp()
    x = np.random.default_rng(6).normal(size=(32, 10)).astype("float32")
    y = np.random.default_rng(7).normal(size=(32, 4)).astype("float32")
    pruned, _ = keras_prune.prune_now(
        model, 0.5, criterion="wanda", calibration_data=x)
    before = masks(pruned)
    pruned.compile("adam", "mse")
    pruned.fit(x, y, epochs=2, batch_size=8, verbose=0)
    for path, keep in masks(pruned).items():
        np.testing.assert_array_equal(keep, before[path])
    stripped = keras_prune.strip_pruning(pruned)
    out = numpy(stripped(x))
    np.testing.assert_allclose(out, numpy(pruned(x)), rtol=0, atol=1e-6)
    stripped.save(tmp_path / "wanda.keras")
    loaded = keras.saving.load_model(tmp_path / "wanda.keras")
    np.testing.assert_array_equal(numpy(loaded(x)), out)
    pruned.save(tmp_path / "pruned.keras")
    reloaded = keras.saving.load_model(tmp_path / "pruned.keras")
    np.testing.assert_array_equal(numpy(reloaded(x)), numpy(pruned(x)))


@pytest.mark.parametrize("pattern", [None, (2, 4)])
def test_tiny_llama_end_to_end(pattern, tmp_path):
    model = hub.models.LlamaBackbone(
        vocabulary_size=64, num_layers=2, hidden_dim=16, intermediate_dim=32,
        num_query_heads=4, num_key_value_heads=2)
    rng = np.random.default_rng(8)
    ids = rng.integers(1, 64, size=(8, 12)).astype("int32")
    x = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
    weights = [numpy(v).copy() for v in model.weights]
    expected = numpy(model(x))
    pruned, report = keras_prune.prune_now(
        model, 0.5, criterion="wanda", calibration_data=x, batch_size=4,
        sparsity_m_by_n=pattern)
    # The user's model: the same weights and outputs, bit for bit.
    for before, v in zip(weights, model.weights):
        np.testing.assert_array_equal(before, numpy(v))
    np.testing.assert_array_equal(numpy(model(x)), expected)
    # Every Dense/EinsumDense of both blocks, 50 % each; embeddings dense.
    found = masks(pruned)
    assert len(found) == 14 and not any("embedding" in p for p in found)
    for path, keep in found.items():
        assert (~keep).sum() == keep.size // 2, path
    if pattern:
        assert keras_prune.check_n_m(pruned, 2, 4).ok
    errors = report.reconstruction.errors()
    assert set(errors) == set(found)
    assert all(0 < e < 1 for e in errors.values())
    out = numpy(pruned(x))
    stripped = keras_prune.strip_pruning(pruned)
    assert not pruned_layers(stripped)
    np.testing.assert_allclose(numpy(stripped(x)), out, rtol=0, atol=1e-5)
    stripped.save(tmp_path / "llama.keras")
    loaded = keras.saving.load_model(tmp_path / "llama.keras")
    np.testing.assert_array_equal(numpy(loaded(x)), numpy(stripped(x)))


def conv_model():
    x_in = keras.Input((6, 6, 1))
    x = L.Conv2D(2, 3, name="conv")(x_in)
    return keras.Model(x_in, L.Flatten()(x), name="convs")


X = np.zeros((4, 10), "float32")


@pytest.mark.parametrize("make, kwargs, message", [
    (mlp, dict(criterion="wanda"),
     "criterion 'wanda' scores with statistics of the layers' inputs: pass "
     "calibration_data= (the model's inputs, no labels), or use "
     "criterion='magnitude'."),
    (mlp, dict(calibration_data=X),
     "calibration_data is used by criteria that need activations (e.g. "
     "'wanda'); criterion 'magnitude' does not: leave it out, or choose "
     "criterion='wanda'."),
    (mlp, dict(criterion="wanda", calibration_data=np.zeros((4, 11), "f4")),
     "calibration_data: batch 0 has shape (4, 11); the model expects "
     "(None, 10) (inputs only, no labels)."),
    (mlp, dict(criterion="wanda", calibration_data=np.zeros((0, 10), "f4")),
     "calibration_data is empty: give at least one sample of the model's "
     "inputs."),
    (mlp, dict(criterion="wanda", calibration_data=X,
               sparsity_m_by_n=(4, 4)),
     "sparsity_m_by_n must be (m, n) with 0 < m < n: m zeros in every n "
     "consecutive weights, e.g. (2, 4); got (4, 4)."),
    (mlp, dict(criterion="wanda", calibration_data=X, scope="row",
               sparsity_m_by_n=(2, 4)),
     "scope='row' ranks single weights within each output row; it does not "
     "combine with block_size or sparsity_m_by_n (N:M already ranks within "
     "each row's groups: use scope='layer')."),
    (conv_model, dict(criterion="wanda",
                      calibration_data=np.zeros((2, 6, 6, 1), "f4")),
     "prune_now: model 'convs' has no Dense or EinsumDense layer, which "
     "criterion 'wanda' prunes; nothing to prune."),
])
def test_bad_input_is_refused_before_any_work(make, kwargs, message):
    model = make()
    weights = [numpy(v).copy() for v in model.weights]
    with pytest.raises(ValueError) as error:
        keras_prune.prune_now(model, 0.5, **kwargs)
    assert str(error.value) == message
    for before, v in zip(weights, model.weights):
        np.testing.assert_array_equal(before, numpy(v))
    assert not pruned_layers(model)
