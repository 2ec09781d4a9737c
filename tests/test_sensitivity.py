import json
import math
import re
import sys

import keras
import numpy as np
import pytest

import keras_prune
from keras_prune.core.patterns import num_pruned
from keras_prune.analysis.sensitivity import SensitivityResult
from keras_prune.analysis.sensitivity import guess_higher_is_better
from keras_prune.analysis.sensitivity import sensitivity_analysis

L = keras.layers

HIDDEN = 64 * 32
HEAD = 32 * 10
BATCH = 512  # one evaluation batch: the digits test split has 359 images


def numpy(x):
    return np.array(keras.ops.convert_to_numpy(x), copy=True)


def mlp(name="mlp"):
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            L.Flatten(),
            L.Dense(32, activation="relu", name="hidden"),
            L.Dense(10, name="head"),
        ],
        name=name,
    )


def compile_classifier(model, metrics=("accuracy",)):
    model.compile(
        keras.optimizers.Adam(0.01),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=list(metrics),
    )
    return model


@pytest.fixture(scope="module")
def trained(digits):
    """A briefly trained MLP and the test split. sensitivity_analysis never
    modifies a model (test_weights_are_restored_bitwise), so tests share it."""
    keras.utils.set_random_seed(0)
    (x_train, y_train), test = digits
    model = compile_classifier(mlp())
    model.fit(x_train, y_train, epochs=3, batch_size=128, verbose=0)
    return model, test


def snapshot(model):
    return [(v.path, numpy(v)) for v in model.weights]


def assert_bitwise_equal(before, after):
    assert [p for p, _ in before] == [p for p, _ in after]
    for (path, a), (_, b) in zip(before, after):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), path


def synthetic(
    table, num_params, baseline=1.0, sparsities=(0.5, 0.9), higher=True
):
    """A result as `sensitivity_analysis` would build it, without a model."""
    return SensitivityResult(
        "accuracy", higher, baseline, sparsities, table, num_params
    )


# ---- the analysis -----------------------------------------------------------


def test_table_shape_baseline_and_counts(trained):
    model, (x, y) = trained
    result = sensitivity_analysis(
        model, (x, y), sparsities=(0.9, 0.5), batch_size=BATCH
    )
    assert result.metric_name == "accuracy" and result.higher_is_better
    assert result.sparsities == (0.5, 0.9)
    assert result.layers == ("hidden", "head")
    assert result.num_params == {"hidden": HIDDEN, "head": HEAD}
    assert list(result.table) == ["hidden", "head"]
    assert all(list(row) == [0.5, 0.9] for row in result.table.values())
    expected = model.evaluate(x, y, BATCH, verbose=0, return_dict=True)
    assert result.baseline == expected["accuracy"]


def test_value_is_the_model_with_that_layer_pruned(trained):
    model, (x, y) = trained
    result = sensitivity_analysis(
        model, (x, y), sparsities=(0.9,), layers=["head"], batch_size=BATCH
    )
    kernel = model.get_layer("head").kernel
    original = numpy(kernel)
    order = np.argsort(np.abs(original), axis=None, kind="stable")
    pruned = original.reshape(-1).copy()
    pruned[order[: num_pruned(HEAD, 0.9)]] = 0
    kernel.assign(pruned.reshape(original.shape))
    try:
        expected = model.evaluate(x, y, BATCH, verbose=0, return_dict=True)
    finally:
        kernel.assign(original)
    assert result.table == {"head": {0.9: expected["accuracy"]}}


def test_weights_are_restored_bitwise(trained):
    model, (x, y) = trained
    before = snapshot(model)
    sensitivity_analysis(
        model, (x, y), sparsities=(0.5, 0.9), metric="loss", batch_size=BATCH
    )
    assert_bitwise_equal(before, snapshot(model))

    calls = []

    def flaky(m):
        calls.append(1)
        if len(calls) == 2:  # the first pruned evaluation
            raise RuntimeError("evaluation failed")
        return 0.0

    with pytest.raises(RuntimeError, match="evaluation failed"):
        sensitivity_analysis(model, None, sparsities=(0.5,), metric=flaky)
    assert_bitwise_equal(before, snapshot(model))


def test_the_layer_is_really_zeroed_during_evaluation(trained):
    model, _ = trained

    def hidden_zeros(m):
        return int(np.sum(numpy(m.get_layer("hidden").kernel) == 0))

    result = sensitivity_analysis(
        model, None, sparsities=(0.5, 0.8), metric=hidden_zeros
    )
    assert result.metric_name == "hidden_zeros"
    assert result.baseline == 0
    assert result.table == {
        "hidden": {0.5: num_pruned(HIDDEN, 0.5), 0.8: num_pruned(HIDDEN, 0.8)},
        "head": {0.5: 0, 0.8: 0},  # pruning head leaves hidden dense
    }


def test_metric_key_and_direction(trained):
    model, (x, y) = trained
    result = sensitivity_analysis(
        model, (x, y), sparsities=(0.9,), metric="loss", layers=["hidden"]
    )
    assert result.metric_name == "loss" and not result.higher_is_better
    expected = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    assert result.baseline == expected
    assert result.table["hidden"][0.9] > result.baseline

    lower = ("loss", "head_loss", "mean_squared_error", "mse", "mae")
    higher = ("accuracy", "sparse_top_k_categorical_accuracy", "auc")
    assert not any(guess_higher_is_better(name) for name in lower)
    assert all(guess_higher_is_better(name) for name in higher)
    result = sensitivity_analysis(
        model, None, (0.5,), metric=lambda m: 1.0, higher_is_better=False
    )
    assert not result.higher_is_better


def test_first_compiled_metric_is_the_default(digits):
    (x, y), _ = digits
    model = compile_classifier(
        mlp(), ["sparse_top_k_categorical_accuracy", "accuracy"]
    )
    result = sensitivity_analysis(
        model, (x[:64], y[:64]), sparsities=(0.5,), layers="head", batch_size=64
    )
    # evaluate's dict is sorted by name; the first *compiled* metric wins.
    assert result.metric_name == "sparse_top_k_categorical_accuracy"

    model = compile_classifier(mlp(), metrics=())
    with pytest.raises(
        ValueError,
        match=r"Model 'mlp' was compiled without metrics, so metric=None has "
        r"nothing to measure: compile with metrics=\['accuracy'\] \(or "
        r"another metric\), or pass metric='loss'.",
    ):
        sensitivity_analysis(model, (x[:64], y[:64]), sparsities=(0.5,))


# ---- errors -----------------------------------------------------------------


def test_metric_and_data_errors(trained):
    model, (x, y) = trained
    with pytest.raises(
        ValueError,
        match=r"Model 'other' is not compiled, so model.evaluate cannot "
        r"measure it: compile it first \(model.compile\(loss=..., "
        r"metrics=\['accuracy'\]\)\), or pass metric=callable\(model\) -> "
        r"float.",
    ):
        sensitivity_analysis(mlp("other"), (x, y))
    with pytest.raises(
        ValueError,
        match=r"metric 'f1' is not a result of model.evaluate; its results "
        r"are: 'accuracy', 'loss'.",
    ):
        sensitivity_analysis(model, (x, y), metric="f1", batch_size=BATCH)
    with pytest.raises(
        ValueError,
        match=r"data is None: model.evaluate needs data, e.g. \(x_val, "
        r"y_val\); or pass metric=callable\(model\) -> float.",
    ):
        sensitivity_analysis(model, None)
    with pytest.raises(
        ValueError,
        match=r"data is only read by model.evaluate: with a callable metric, "
        r"pass data=None and let the callable read its own data.",
    ):
        sensitivity_analysis(model, (x, y), metric=lambda m: 1.0)


def test_layer_selection_errors(trained):
    model, (x, y) = trained
    with pytest.raises(
        ValueError,
        match=r"layers: 'flatten' is not a layer with prunable weights in "
        r"model 'mlp'; choose from: 'hidden', 'head'.",
    ):
        sensitivity_analysis(model, (x, y), layers=["head", "flatten"])
    with pytest.raises(
        ValueError,
        match=r"layers selects no layer with prunable weights in model 'mlp'; "
        r"layers with prunable weights: 'hidden', 'head'.",
    ):
        sensitivity_analysis(model, (x, y), layers=lambda layer: False)
    pruned = keras_prune.prune_low_magnitude(
        mlp("dense_copy"), keras_prune.ConstantSparsity(0.5, 0)
    )
    with pytest.raises(
        ValueError,
        match=r"Model 'dense_copy' is already pruned \(layer '.*' is a "
        r"PruneLowMagnitude wrapper\): run sensitivity_analysis on the dense "
        r"model, or on keras_prune.strip_pruning\(model\).",
    ):
        sensitivity_analysis(pruned, None, metric=lambda m: 1.0)


def test_bad_sparsities(trained):
    model, (x, y) = trained
    for bad in (1.0, -0.1, 1.5, "0.5", True):
        with pytest.raises(
            ValueError,
            match=rf"sparsities: {re.escape(repr(bad))} is not a sparsity; use "
            r"a fraction in \[0, 1\) \(0.9 prunes 90 % of the weights\).",
        ):
            sensitivity_analysis(model, (x, y), sparsities=(0.5, bad))
    with pytest.raises(
        ValueError,
        match=r"sparsities is empty: give at least one sparsity in \[0, 1\), "
        r"e.g. \(0.5, 0.9\).",
    ):
        sensitivity_analysis(model, (x, y), sparsities=())


# ---- allocation -------------------------------------------------------------


def total_pruned(result, allocation):
    return sum(
        num_pruned(result.num_params[n], s) for n, s in allocation.items()
    )


def test_allocation_is_exact_and_within_bounds():
    result = synthetic(
        {"a": [0.99, 0.7], "b": [0.95, 0.9], "c": [0.98, 0.98]},
        {"a": 1001, "b": 333, "c": 77},
        sparsities=(0.5, 0.9),
    )
    for target in (0.0, 0.1, 0.33, 0.5, 0.61, 0.8, 0.85):
        allocation = result.allocate(target)
        assert list(allocation) == ["a", "b", "c"]
        assert total_pruned(result, allocation) == num_pruned(1411, target)
        assert all(0 <= s <= 0.9 for s in allocation.values())
        assert result.allocate(target) == allocation  # deterministic


def test_allocation_prefers_the_insensitive_layer():
    result = synthetic(
        {"fragile": [0.5, 0.1], "robust": [1.0, 0.99]},
        {"fragile": 1000, "robust": 1000},
    )
    assert result.allocate(0.45) == {"fragile": 0.0, "robust": 0.9}
    # Past robust's bound, the rest comes from fragile.
    allocation = result.allocate(0.5)
    assert allocation == {"fragile": 0.1, "robust": 0.9}
    # The same for a lower-is-better metric: the cost is value - baseline.
    result = synthetic(
        {"a": [2.0, 4.0], "b": [1.0, 1.1]}, {"a": 100, "b": 100},
        baseline=1.0, higher=False,
    )
    assert result.allocate(0.25) == {"a": 0.0, "b": 0.5}


def test_allocation_stops_part_way_at_the_exact_count():
    result = synthetic({"a": [1.0, 0.9]}, {"a": 1000})
    assert result.allocate(0.5) == {"a": 0.5}  # a measured point: exactly it
    assert result.allocate(0.7) == {"a": 0.7}  # part-way: 700 / 1000


def test_allocation_looks_past_a_bump():
    # "bumpy" costs 0.2 at 50 % but only 0.21 at 90 %: per weight it is the
    # cheaper layer to prune to 90 %, although its first segment is not
    # (0.2 / 500 > 0.15 / 500 for "steady").
    result = synthetic(
        {"bumpy": [0.8, 0.79], "steady": [0.85, 0.5]},
        {"bumpy": 1000, "steady": 1000},
    )
    assert result.allocate(0.45) == {"bumpy": 0.9, "steady": 0.0}


def test_allocation_respects_max_sparsity():
    result = synthetic(
        {"a": [1.0, 1.0], "b": [0.9, 0.8]}, {"a": 1000, "b": 1000}
    )
    allocation = result.allocate(0.6, max_sparsity=0.7)
    assert allocation == {"a": 0.7, "b": 0.5}
    assert total_pruned(result, allocation) == num_pruned(2000, 0.6)


def test_unreachable_target():
    result = synthetic({"a": [1.0, 0.9], "b": [1.0, 0.9]}, {"a": 999, "b": 1})
    # b (1 weight) can never lose it: at most 899 of 1000 weights.
    with pytest.raises(
        ValueError,
        match=r"allocate: target_sparsity 0.95 prunes 950 of the 1000 weights, "
        r"but within each layer's bound \(sparsity <= 0.9: the largest "
        r"measured sparsity\) at most 899 can go; the largest reachable "
        r"target is 0.899.",
    ):
        result.allocate(0.95)
    assert total_pruned(result, result.allocate(0.899)) == 899
    with pytest.raises(ValueError, match=r"or max_sparsity\) at most 500 can"):
        result.allocate(0.6, max_sparsity=0.5)
    with pytest.raises(
        ValueError, match=r"target_sparsity: 1 is not a sparsity"
    ):
        result.allocate(1)


def test_real_model_allocation_prefers_the_insensitive_layer(digits):
    """`minor` reaches the output scaled by 1e-3: pruning it barely matters,
    pruning `major` does."""
    keras.utils.set_random_seed(0)
    (x_train, y_train), (x, y) = digits
    inputs = keras.Input((8, 8, 1))
    flat = L.Flatten()(inputs)
    major = L.Dense(32, activation="relu", name="major")(flat)
    minor = L.Rescaling(1e-3)(L.Dense(32, name="minor")(flat))
    outputs = L.Dense(10, name="head")(L.Add()([major, minor]))
    model = compile_classifier(keras.Model(inputs, outputs))
    model.fit(x_train, y_train, epochs=3, batch_size=128, verbose=0)
    result = sensitivity_analysis(
        model, (x, y), sparsities=(0.8, 0.95), metric="loss", batch_size=BATCH
    )
    assert result.layers == tuple(
        layer.name for layer in model.layers if layer.name in result.num_params
    )
    cost = {
        n: max(v.values()) - result.baseline for n, v in result.table.items()
    }
    assert cost["major"] > 10 * abs(cost["minor"])
    allocation = result.allocate(0.3)
    assert allocation["minor"] > 0.6
    assert allocation["major"] == 0.0
    total = 2 * HIDDEN + HEAD
    assert total_pruned(result, allocation) == num_pruned(total, 0.3)


# ---- renderings -------------------------------------------------------------


def test_text_table():
    result = synthetic(
        {"dense": [0.96, 0.9167], "dense_1": [0.955555, 0.6]},
        {"dense": 4096, "dense_1": 320},
        baseline=0.9611, sparsities=(0.5, 0.975),
    )
    assert str(result) == result.to_text() == (
        "accuracy (higher is better), baseline 0.9611\n"
        "layer    params     50%   97.5%\n"
        "dense      4096  0.9600  0.9167\n"
        "dense_1     320  0.9556  0.6000"
    )
    assert repr(result) == (
        "<SensitivityResult accuracy: 2 layers x 2 sparsities, baseline 0.9611>"
    )


def test_dict_json_round_trip(trained):
    model, (x, y) = trained
    result = sensitivity_analysis(
        model, (x, y), sparsities=(0.5, 0.9), batch_size=BATCH
    )
    data = json.loads(json.dumps(result.to_dict()))
    assert data == result.to_dict()
    assert data["sparsities"] == [0.5, 0.9]
    assert [e["name"] for e in data["layers"]] == ["hidden", "head"]
    again = SensitivityResult.from_dict(data)
    assert again.table == result.table
    assert again.num_params == result.num_params
    assert again.to_text() == result.to_text()
    assert again.allocate(0.5) == result.allocate(0.5)


def test_result_rejects_inconsistent_tables():
    with pytest.raises(
        ValueError,
        match=r"SensitivityResult: layer 'a' has 1 values for 2 sparsities.",
    ):
        synthetic({"a": [1.0]}, {"a": 10})


def test_plot_writes_a_png(tmp_path, monkeypatch):
    result = synthetic(
        {"a": [0.9, math.nan], "b": [0.8, 0.4]}, {"a": 10, "b": 20}
    )
    with monkeypatch.context() as patch:  # as if matplotlib were missing
        patch.setitem(sys.modules, "matplotlib.figure", None)
        with pytest.raises(
            ImportError,
            match=r"keras_prune.plots needs matplotlib: `pip install "
            r"keras-prune\[plots\]`",
        ):
            result.plot(str(tmp_path / "missing.png"))
    pytest.importorskip("matplotlib")
    path = tmp_path / "sensitivity.png"
    assert result.plot(str(path)) == str(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 5000
