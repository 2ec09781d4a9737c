"""`keras_prune.compare_models`: the numbers of `keras-prune compare`, from
Python, and the command printing exactly what the function returns."""

import json
import os
import re

import keras
import numpy as np
import pytest

import keras_prune
from keras_prune import cli
from keras_prune.analysis.compare import DataMismatchError
from keras_prune.core.patterns import num_pruned
from keras_prune.analysis import sizes
from tests.conftest import numpy

PARAMS = 64 * 16 + 16 + 16 * 10 + 10
KERNELS = 64 * 16 + 16 * 10
BIASES = 16 + 10  # zero at initialization, not pruned


def _mlp(name, inputs=(64,)):
    return keras.Sequential(
        [
            keras.Input(inputs),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(16, activation="relu", name="fc1"),
            keras.layers.Dense(10, name="logits"),
        ],
        name=name,
    )


@pytest.fixture
def models():
    """A dense MLP on the 64 digit pixels, pruned one-shot to 70 % (with its
    wrappers) and stripped."""
    dense = _mlp("dense")
    wrapped, _ = keras_prune.prune_now(dense, 0.7)
    return dense, wrapped, keras_prune.strip_pruning(wrapped)


def test_counts_of_dense_pruned_and_stripped(capsys, models):
    comparison = keras_prune.compare_models(models, repeats=0)
    dense, wrapped, stripped = comparison
    pruned = num_pruned(KERNELS, 0.7)
    assert dense.params == wrapped.params == stripped.params == PARAMS
    assert dense.nonzero_params == PARAMS - BIASES
    assert wrapped.nonzero_params == stripped.nonzero_params
    assert stripped.nonzero_params == PARAMS - BIASES - pruned
    assert stripped.prunable_sparsity == pytest.approx(pruned / KERNELS)
    assert stripped.zipped_bytes < dense.zipped_bytes
    assert all(m.path is None and m.file_bytes > 0 for m in comparison)
    # The copies keep the model's name: the letters tell them apart.
    assert [m.label for m in comparison] == ["A: dense", "B: dense", "C: dense"]
    assert comparison.latency is None and comparison.data is None
    result = comparison.to_dict()
    assert list(result) == ["backend", "a", "b", "c", "latency", "data"]
    assert result["c"]["nonzero_params"] == PARAMS - BIASES - pruned
    assert json.loads(comparison.to_json()) == result
    lines = str(comparison).splitlines()
    assert lines[0].split()[-6:] == ["B", "vs", "A", "C", "vs", "A"]
    row = next(line for line in lines if line.startswith("non-zero parameters"))
    ratio = (PARAMS - BIASES) / (PARAMS - BIASES - pruned)
    assert row.endswith(f"{ratio:.2f}x fewer")
    assert capsys.readouterr().out == ""  # verbose=0: silent


def test_files_accuracy_and_latency(capsys, models, tmp_path, digits):
    dense, _, stripped = models
    paths = [str(tmp_path / "dense.keras"), str(tmp_path / "stripped.keras")]
    dense.save(paths[0])
    stripped.save(paths[1])
    image = _mlp("image", (8, 8, 1))  # takes the digits as they are
    x_test, y_test = digits[1]
    comparison = keras_prune.compare_models(
        [paths[0], paths[1], image], data=(x_test, y_test),
        batch_sizes=(1, 4), repeats=2,
    )
    for entry, path in zip(comparison, paths):
        assert entry.path == path
        assert entry.label == os.path.basename(path)
        assert entry.file_bytes == sizes.file_size(path)
        assert entry.zipped_bytes == sizes.zipped_size(path)
    for entry, model in zip(comparison, (dense, stripped, image)):
        scores = numpy(model.predict(x_test.reshape((len(x_test),) + tuple(
            model.inputs[0].shape[1:])), verbose=0))
        assert entry.accuracy == float(np.mean(scores.argmax(-1) == y_test))
        assert set(entry.latency_s) == {1, 4}
        assert all(seconds > 0 for seconds in entry.latency_s.values())
    assert comparison.data == {"name": None, "test_samples": len(y_test)}
    assert comparison.latency["skipped"] is None
    assert set(comparison.to_dict()["b"]["latency_s"]) == {"1", "4"}
    assert "accuracy (359 samples)" in comparison.summary()
    assert capsys.readouterr().out == ""


def test_what_cannot_be_measured(models):
    dense = models[0]
    wide = _mlp("wide", (10,))
    with pytest.raises(DataMismatchError, match=r"wide takes inputs of shape "
                       r"\(10,\), but digits images have shape \(8, 8, 1\)"):
        keras_prune.compare_models([dense, wide], data="digits", repeats=0)
    with pytest.raises(ValueError, match="needs 2 to 26 models, got 1"):
        keras_prune.compare_models([dense])
    inputs = keras.Input((None, 4))
    pooled = keras.layers.GlobalAveragePooling1D()(inputs)
    ragged = keras.Model(inputs, keras.layers.Dense(10)(pooled), name="ragged")
    comparison = keras_prune.compare_models([ragged, ragged], repeats=1)
    assert "a dimension besides the batch is unknown" in (
        comparison.latency["skipped"])
    assert all(m.latency_s is None for m in comparison)
    assert "latency not measured: input " in str(comparison)


def test_command_prints_what_the_function_returns(capsys, models, tmp_path):
    paths = [str(tmp_path / "dense.keras"), str(tmp_path / "pruned.keras")]
    models[0].save(paths[0])
    models[2].save(paths[1])
    expected = keras_prune.compare_models(paths, data="digits", repeats=0)
    args = ["compare", *paths, "--data", "digits", "--repeats", "0"]
    assert cli.main(args) == 0
    assert capsys.readouterr().out == expected.summary() + "\n"
    assert cli.main(args + ["--json"]) == 0
    assert json.loads(capsys.readouterr().out) == expected.to_dict()


# ---- latency: honest about noise ---------------------------------------------


def test_the_order_of_the_timed_calls_rotates_round_by_round():
    calls = []

    class Recorder:
        def __init__(self, name):
            self.name = name

        def predict_on_batch(self, x):
            calls.append(self.name)

    models = [Recorder("a"), Recorder("b"), Recorder("c")]
    times = sizes.latency_samples(models, [None] * 3, repeats=4, warmup=0)
    assert calls == list("abc" "bca" "cab" "abc")
    assert [len(t) for t in times] == [4, 4, 4]


def test_progress_starts_after_the_warm_up():
    # An estimate of the time left must not spread the warm-up (compilation)
    # over the timed rounds: progress hears 0 once the warm-up is done.
    events = []

    class Recorder:
        def predict_on_batch(self, x):
            events.append("call")

    sizes.latency_samples([Recorder(), Recorder()], [None] * 2, repeats=2,
                          warmup=3, progress=events.append)
    assert events == ["call"] * 6 + [0] + ["call"] * 2 + [1] + ["call"] * 2 \
        + [2]


def test_the_interval_of_the_median_ratio_is_order_statistics():
    a = [1.0] * 20
    b = [0.5 + i / 20 for i in range(20)]  # ratios 0.50 ... 1.45
    median, low, high = sizes.paired_ratio(a, b)
    assert median == pytest.approx(0.975)
    # n = 20: ranks 6 and 15 cover the median with 95.9 % (binomial).
    assert (low, high) == (b[5], b[14])
    assert sizes.paired_ratio([1.0] * 3, [2.0, 3.0, 4.0]) == (3.0, 2.0, 4.0)


def test_a_model_compared_with_itself_shows_no_measurable_difference():
    # Statistical, not a wall-time bound: two copies of one model, timed in
    # rotating order, must not differ measurably (a fixed order made the
    # second one up to 1.18x "faster" on torch).
    model = _mlp("same")
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    result = keras_prune.compare_models([model, twin], repeats=60)
    for batch in (1, 32):
        (ratio,) = result.latency["versus_first"][str(batch)]
        assert not ratio["measurable"], ratio
        assert ratio["low"] <= ratio["time_ratio"] <= ratio["high"]
    assert "no measurable difference (" in str(result)


def test_a_real_difference_is_measured_with_its_interval():
    small = _mlp("small")
    keras.utils.set_random_seed(1)
    large = keras.Sequential([keras.Input((64,)),
                              keras.layers.Dense(1024, activation="relu"),
                              keras.layers.Dense(1024, activation="relu"),
                              keras.layers.Dense(10)], name="large")
    result = keras_prune.compare_models([large, small], batch_sizes=(32,),
                                        repeats=20)
    (ratio,) = result.latency["versus_first"]["32"]
    assert ratio["measurable"] and ratio["high"] < 0.9, ratio
    (line,) = [l for l in str(result).splitlines()
               if l.startswith("latency, batch 32")]
    assert re.search(r"\d+\.\d\dx faster \((\d+\.\d\d)-(\d+\.\d\d)x\)$", line)
