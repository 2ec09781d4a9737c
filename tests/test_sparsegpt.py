"""SparseGPT through `prune_now(..., criterion="sparsegpt",
calibration_data=x)`: exact per-row and N:M masks, kept weights updated to
reconstruct each layer's output (better than Wanda and magnitude with
outlier features), sequential blocks, keras-hub backbones end to end, and
clear errors before any work. The solver itself: tests/test_obs.py."""

import warnings

import keras
import numpy as np
import pytest

import keras_prune
from keras_prune.core.layers import pruned_layers
from keras_prune.core.patterns import num_pruned
from keras_prune.methods import obs
from keras_prune.methods.sparsegpt import _stages
from tests.conftest import numpy

L = keras.layers
hub = pytest.importorskip("keras_hub")


def mlp(inputs=16, hidden=24, name="mlp"):
    keras.utils.set_random_seed(0)
    x_in = keras.Input((inputs,))
    x = L.Dense(hidden, activation="relu", name="first")(x_in)
    return keras.Model(x_in, L.Dense(8, name="second")(x), name=name)


def outliers(n=256, features=16, seed=1):
    """Correlated calibration inputs (six factors and noise, as hidden
    states are) whose features 2 and 7 are 20x and 60x larger (the outlier
    features of LLM activations)."""
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, 6)) @ rng.normal(size=(6, features))
         + 0.3 * rng.normal(size=(n, features)))
    x[:, [2, 7]] *= [20.0, 60.0]
    return x.astype("float32")


def kernels(pruned):
    return {w.prunable_weights[0].path: (numpy(w.prunable_weights[0]),
                                         numpy(w.masks[0]))
            for w in pruned_layers(pruned)}


def test_first_layer_is_the_solver_on_the_inputs_gram():
    """The first layer sees the model's inputs: its kernel and mask are
    `obs.sparsegpt` on X^T X of the calibration data, exactly."""
    model, x = mlp(), outliers()
    pruned, report = keras_prune.prune_now(
        model, 0.5, criterion="sparsegpt", calibration_data=x,
        batch_size=64)
    kernel = numpy(model.get_layer("first").kernel)
    gram = x.astype(np.float64).T @ x.astype(np.float64)
    expected, keep = obs.sparsegpt(kernel.T, gram, 0.5)
    found, mask = kernels(pruned)["first/kernel"]
    np.testing.assert_array_equal(mask, keep.T)
    np.testing.assert_allclose(found, expected.T, rtol=1e-5, atol=1e-6)
    # The kept weights moved: the solver compensates for the pruned ones.
    assert not np.allclose(found[mask], kernel[mask])
    assert report.prunable_zeros == 16 * 24 // 2 + 24 * 8 // 2
    assert report.reconstruction.errors()["first/kernel"] == pytest.approx(
        obs.reconstruction_error(kernel.T, expected, gram), rel=1e-4)


@pytest.mark.parametrize("pattern", [None, (2, 4), (4, 8)])
def test_sparsegpt_beats_wanda_beats_magnitude_on_outlier_features(pattern):
    """The first layer's kernel set by NumPy: the same comparison on every
    backend (SparseGPT 1.3-2x under Wanda's error for seeds 0-5)."""
    model, x = mlp(), outliers()
    model.get_layer("first").kernel.assign(np.random.default_rng(0).normal(
        scale=0.3, size=(16, 24)).astype("float32"))
    errors = {}
    for criterion in ("sparsegpt", "wanda", "magnitude"):
        kwargs = dict(sparsity_m_by_n=pattern, criterion=criterion)
        if criterion == "magnitude":
            kwargs["scope"] = "row" if pattern is None else "layer"
        else:
            kwargs["calibration_data"] = x
        pruned, _ = keras_prune.prune_now(model, 0.5, **kwargs)
        errors[criterion] = keras_prune.reconstruction_errors(
            model, pruned, x).errors()["first/kernel"]
        counts = (~kernels(pruned)["first/kernel"][1]).sum(axis=0)
        np.testing.assert_array_equal(counts, [num_pruned(16, 0.5)] * 24)
        if pattern:
            assert keras_prune.check_n_m(pruned, *pattern).ok
    assert errors["sparsegpt"] < errors["wanda"] < errors["magnitude"], errors


def test_no_sparsity_and_no_damping_leave_the_weights():
    model, x = mlp(), outliers()
    pruned, _ = keras_prune.prune_now(
        model, 0.0, criterion={"name": "sparsegpt",
                               "config": {"damping": 1e-10}},
        calibration_data=x)
    for layer in ("first", "second"):
        kernel, keep = kernels(pruned)[f"{layer}/kernel"]
        assert keep.all()
        np.testing.assert_allclose(
            kernel, numpy(model.get_layer(layer).kernel), rtol=1e-4,
            atol=1e-5)


def test_too_few_rows_for_a_full_rank_gram_are_named_and_dampened():
    """20 rows: enough for 'first' (16 inputs), not for 'second' (24): one
    warning names that layer, its rows and features and the rows needed;
    the damping still gives finite weights and exact counts."""
    model, x = mlp(), outliers(n=20)
    with pytest.warns(UserWarning) as caught:
        pruned, report = keras_prune.prune_now(
            model, 0.5, criterion="sparsegpt", calibration_data=x)
    ours = [w for w in caught if "sparsegpt" in str(w.message)]
    assert [str(w.message) for w in ours] == [
        "sparsegpt: 1 layer(s) saw fewer calibration rows (samples x "
        "tokens) than input features: 'second' (20 rows < 24 features); "
        "their X^T X is rank-deficient and only damping=0.01 makes it "
        "invertible, so their weight updates fit the calibration data "
        "closely. Pass at least 24 rows of calibration_data for a "
        "full-rank estimate."]
    assert ours[0].filename == __file__  # points at the caller's line
    assert report.prunable_zeros == 16 * 24 // 2 + 24 * 8 // 2
    for kernel, _ in kernels(pruned).values():
        assert np.isfinite(kernel).all()
    with warnings.catch_warnings(record=True) as enough:
        warnings.simplefilter("always")
        keras_prune.prune_now(model, 0.5, criterion="sparsegpt",
                              calibration_data=outliers(n=24))
    assert not [w for w in enough if "sparsegpt" in str(w.message)]


def test_sequential_measures_each_stage_on_the_pruned_ones_before():
    model, x = mlp(), outliers()
    copy = keras_prune.prune_low_magnitude(model, keras_prune.FixedMasks(0.5))
    assert [[w.layer.name for w in stage] for stage in _stages(
        copy, pruned_layers(copy))] == [["first"], ["second"]]
    together = {}
    for sequential in (True, False):
        pruned, _ = keras_prune.prune_now(
            model, 0.5, calibration_data=x, criterion={
                "name": "sparsegpt", "config": {"sequential": sequential}})
        together[sequential] = kernels(pruned)
    # The first layer sees the same inputs either way; the second sees the
    # pruned first layer's outputs only in sequential mode.
    np.testing.assert_array_equal(together[True]["first/kernel"][0],
                                  together[False]["first/kernel"][0])
    assert not np.array_equal(together[True]["second/kernel"][0],
                              together[False]["second/kernel"][0])
    hidden = np.maximum(x @ together[True]["first/kernel"][0]
                        + numpy(model.get_layer("first").bias), 0)
    gram = hidden.astype(np.float64).T @ hidden.astype(np.float64)
    expected, _ = obs.sparsegpt(
        numpy(model.get_layer("second").kernel).T, gram, 0.5)
    np.testing.assert_allclose(together[True]["second/kernel"][0],
                               expected.T, rtol=1e-4, atol=1e-5)


def test_user_model_untouched_and_the_result_fine_tunes_strips_and_saves(
        tmp_path):
    model, x = mlp(), outliers()
    weights = [numpy(v).copy() for v in model.weights]
    pruned, _ = keras_prune.prune_now(
        model, 0.5, criterion="sparsegpt", calibration_data=x)
    for before, v in zip(weights, model.weights):
        np.testing.assert_array_equal(before, numpy(v))
    assert not pruned_layers(model)
    pruned.compile("adam", "mse")
    pruned.fit(x, np.zeros((len(x), 8), "float32"), epochs=1, verbose=0)
    for path, (kernel, keep) in kernels(pruned).items():
        assert (kernel[~keep] == 0).all() and (~keep).sum() == keep.size // 2
    pruned.save(tmp_path / "pruned.keras")
    loaded = keras.saving.load_model(tmp_path / "pruned.keras")
    np.testing.assert_array_equal(numpy(loaded(x)), numpy(pruned(x)))
    stripped = keras_prune.strip_pruning(pruned)
    np.testing.assert_allclose(numpy(stripped(x)), numpy(pruned(x)),
                               rtol=0, atol=1e-4)


@pytest.mark.parametrize("pattern", [None, (2, 4)])
def test_tiny_gpt2_end_to_end(pattern, tmp_path):
    model = hub.models.GPT2Backbone(
        vocabulary_size=64, num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=16)
    rng = np.random.default_rng(3)
    ids = rng.integers(1, 64, size=(8, 12)).astype("int32")
    x = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
    expected = numpy(model(x))
    pruned, report = keras_prune.prune_now(
        model, 0.5, criterion="sparsegpt", calibration_data=x, batch_size=4,
        sparsity_m_by_n=pattern)
    np.testing.assert_array_equal(numpy(model(x)), expected)
    found = kernels(pruned)
    # q, k, v, output of the attention and the two feed-forward Dense of
    # each block.
    assert len(found) == 12 and not any("embedding" in p for p in found)
    for path, (kernel, keep) in found.items():
        assert (~keep).sum() == keep.size // 2, path
        assert (kernel[~keep] == 0).all()
    if pattern:
        assert keras_prune.check_n_m(pruned, 2, 4).ok
    errors = report.reconstruction.errors()
    assert set(errors) == set(found) and all(
        0 < e < 1 for e in errors.values())
    stripped = keras_prune.strip_pruning(pruned)
    stripped.save(tmp_path / "gpt2.keras")
    loaded = keras.saving.load_model(tmp_path / "gpt2.keras")
    np.testing.assert_array_equal(numpy(loaded(x)), numpy(stripped(x)))


X = np.zeros((4, 16), "float32")


@pytest.mark.parametrize("kwargs, message", [
    (dict(criterion="sparsegpt"),
     "criterion 'sparsegpt' scores with statistics of the layers' inputs: "
     "pass calibration_data= (the model's inputs, no labels), or use "
     "criterion='magnitude'."),
    (dict(criterion="sparsegpt", calibration_data=X, scope="global"),
     "criterion 'sparsegpt' prunes the same fraction of every output row "
     "(its adaptive mask selection), so scope='global' is not available: "
     "use scope='row' (the default), or per_layer= for sparsities per "
     "layer."),
    (dict(criterion="sparsegpt", calibration_data=X, block_size=(2, 2)),
     "criterion 'sparsegpt' prunes single weights, not blocks: leave "
     "block_size at (1, 1) (got (2, 2)); sparsity_m_by_n=(2, 4) gives its "
     "N:M pattern."),
    (dict(criterion={"name": "sparsegpt", "config": {"damping": -1.0}},
          calibration_data=X),
     "sparsegpt: damping must be a finite number >= 0, got -1.0; 0.01 (1 % "
     "of the mean diagonal) is the paper's."),
    (dict(criterion="sparsegpt", calibration_data=X, sparsity_m_by_n=(3, 5)),
     "sparsegpt: layer 'first' has 16 input features, not a multiple of m "
     "(5) for sparsity_m_by_n=(3, 5); exclude it (exclude=['first'])."),
])
def test_bad_input_is_refused_before_any_work(kwargs, message):
    model = mlp()
    weights = [numpy(v).copy() for v in model.weights]
    with pytest.raises(ValueError) as error:
        keras_prune.prune_now(model, 0.5 if "sparsity_m_by_n" not in kwargs
                              else 0.6, **kwargs)
    assert str(error.value) == message
    for before, v in zip(weights, model.weights):
        np.testing.assert_array_equal(before, numpy(v))


def test_gradual_pruning_refuses_a_solver():
    with pytest.raises(ValueError) as error:
        keras_prune.prune_low_magnitude(
            mlp(), keras_prune.ConstantSparsity(0.5, 0),
            criterion="sparsegpt")
    assert str(error.value) == (
        "criterion 'sparsegpt' rewrites the weights it keeps from "
        "calibration data, once: it does not rank weights for a wrapper. Use "
        "prune_now(model, sparsity, criterion='sparsegpt', "
        "calibration_data=x), then fine-tune with a plain fit.")
