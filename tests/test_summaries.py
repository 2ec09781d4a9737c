"""PruningSummaries: TensorBoard scalars and logs["sparsity"] on any backend."""

import csv
import glob
import importlib.util
import os
import re

import keras
import numpy as np
import pytest

import keras_prune
from keras_prune.analysis import summaries
from keras_prune.core.patterns import num_pruned
from keras_prune.core.layers import pruned_layers
from keras_prune.analysis.summaries import PruningSummaries

L = keras.layers

SAMPLES, BATCH, EPOCHS = 64, 16, 2  # 4 steps an epoch, 8 in all
# Mask updates at steps 0, 2, 4, 6 (0 %, 26.7 %, 53.3 %, 80 %).
SCHEDULE = dict(initial_sparsity=0.0, final_sparsity=0.8, begin_step=0,
                end_step=6, power=1, frequency=2)
KERNELS = {"hidden/kernel": 64 * 16, "logits/kernel": 16 * 10}


def read_scalars(log_dir):
    """{tag: [(step, value)]} from the event files, with TensorFlow only."""
    import tensorflow as tf

    found = {}
    paths = sorted(glob.glob(os.path.join(log_dir, "train", "events.*")))
    assert paths, f"no event file in {log_dir}/train"
    for path in paths:
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.WhichOneof("value") == "simple_value":
                    number = value.simple_value  # tensorboardX's format
                else:
                    plugin = value.metadata.plugin_data.plugin_name
                    assert plugin == "scalars"
                    number = float(tf.make_ndarray(value.tensor))
                found.setdefault(value.tag, []).append(
                    (int(event.step), number)
                )
    return found


def train(digits, tmp_path, update_freq, extra=()):
    (x, y), _ = digits
    inputs = keras.Input((8, 8, 1))
    h = L.Flatten()(inputs)
    h = L.Dense(16, activation="relu", name="hidden")(h)
    outputs = L.Dense(10, name="logits")(h)
    model = keras_prune.prune_low_magnitude(
        keras.Model(inputs, outputs), keras_prune.PolynomialDecay(**SCHEDULE)
    )
    model.compile(
        "adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    callback = PruningSummaries(
        tmp_path / "logs", update_freq=update_freq
    )
    history = model.fit(
        x[:SAMPLES], y[:SAMPLES], batch_size=BATCH, epochs=EPOCHS, verbose=0,
        shuffle=False,
        callbacks=[keras_prune.UpdatePruningStep(), callback, *extra],
    )
    return model, history, read_scalars(str(tmp_path / "logs"))


def expected_sparsity(path, step):
    """The mask sparsity of `path` after `step` training steps."""
    preview = keras_prune.preview(
        keras_prune.PolynomialDecay(**SCHEDULE), SAMPLES // BATCH * EPOCHS
    )
    target = preview.sparsity[step - 1]  # masks of the last step run
    return num_pruned(KERNELS[path], target) / KERNELS[path]


def expected_overall(step):
    zeros = sum(
        expected_sparsity(path, step) * size for path, size in KERNELS.items()
    )
    return zeros / sum(KERNELS.values())


@pytest.mark.parametrize(
    "update_freq, steps",
    [("epoch", [4, 8]), ("batch", list(range(1, 9))), (3, [3, 4, 6, 8])],
)
def test_scalars_are_the_mask_sparsity_at_each_step(
    digits, tmp_path, update_freq, steps
):
    model, history, scalars = train(digits, tmp_path, update_freq)

    assert sorted(scalars) == sorted(
        ["sparsity"]
        + [f"sparsity/{path}" for path in KERNELS]
        + [f"threshold/{path}" for path in KERNELS]
    )
    for path in KERNELS:
        logged = scalars[f"sparsity/{path}"]
        assert [step for step, _ in logged] == steps
        for step, value in logged:
            assert value == pytest.approx(
                expected_sparsity(path, step), abs=1e-6
            ), (path, step)
    assert [step for step, _ in scalars["sparsity"]] == steps
    for step, value in scalars["sparsity"]:
        assert value == pytest.approx(expected_overall(step), abs=1e-6)
    # The last threshold is the wrapper's, as training left it.
    for wrapper in pruned_layers(model):
        for variable, threshold in zip(
            wrapper.prunable_weights, wrapper.thresholds
        ):
            last = scalars[f"threshold/{variable.path}"][-1]
            assert last[0] == 8
            assert last[1] == pytest.approx(
                float(keras.ops.convert_to_numpy(threshold)), rel=1e-6
            )
            assert last[1] > 0
    # History records the overall sparsity at every epoch end.
    assert history.history["sparsity"] == pytest.approx(
        [expected_overall(4), expected_overall(8)], abs=1e-6
    )


def test_csv_logger_records_sparsity(digits, tmp_path):
    path = tmp_path / "log.csv"
    train(digits, tmp_path, "epoch", extra=[keras.callbacks.CSVLogger(path)])

    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert [float(r["sparsity"]) for r in rows] == pytest.approx(
        [expected_overall(4), expected_overall(8)], abs=1e-6
    )


@pytest.mark.parametrize("update_freq", ["step", 0, -2, True, 1.5, None])
def test_bad_update_freq(update_freq, tmp_path):
    with pytest.raises(ValueError, match=re.escape(
        'update_freq must be "epoch", "batch" or a positive number of '
        f"batches, got {update_freq!r}."
    )):
        PruningSummaries(tmp_path, update_freq=update_freq)


def test_writer_choice_and_clear_error_without_one(monkeypatch, tmp_path):
    find_spec = importlib.util.find_spec
    missing = set()

    def fake_find_spec(name, *args, **kwargs):
        if name in missing:
            return None
        return find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", fake_find_spec)
    missing.add("tensorflow")
    if find_spec("tensorboardX") is None:
        missing.add("tensorboardX")
        with pytest.raises(ImportError) as error:
            PruningSummaries(tmp_path)
        message = str(error.value)
        assert "pip install tensorflow-cpu" in message
        assert "pip install tensorboardX" in message
    # Without TensorFlow but with tensorboardX, tensorboardX writes.
    monkeypatch.setattr(
        summaries.importlib.util, "find_spec",
        lambda name, *a, **k: None if name == "tensorflow" else object(),
    )
    assert summaries._writer_class() is summaries._TensorBoardXWriter


def test_model_without_pruned_layers_is_rejected(tmp_path):
    model = keras.Sequential([keras.Input((3,)), L.Dense(2)])
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="has no pruned layers"):
        model.fit(
            np.zeros((4, 3)), np.zeros((4, 2)), verbose=0,
            callbacks=[PruningSummaries(tmp_path)],
        )
