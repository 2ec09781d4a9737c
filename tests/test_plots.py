"""keras_prune.plots writes real PNG files; matplotlib stays optional."""

import re
import sys
import types

import keras
import pytest

import keras_prune
from keras_prune import plots
from keras_prune.analysis.report import SparsityReport

L = keras.layers

PNG = b"\x89PNG\r\n\x1a\n"


def assert_png(path, min_bytes=10_000):
    data = path.read_bytes()
    assert data[:8] == PNG, path
    assert len(data) > min_bytes, (path, len(data))
    import matplotlib.image

    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] > 200 and pixels.shape[1] > 500
    # Not a blank canvas.
    assert pixels[..., :3].std() > 0.05


def test_schedule_plot(tmp_path):
    schedule = keras_prune.PolynomialDecay(
        0.5, 0.9, begin_step=2000, end_step=4000, frequency=100
    )
    path = tmp_path / "schedule.png"

    preview = keras_prune.preview(schedule, 5000)
    assert plots.schedule_plot(preview, path) == path
    assert_png(path)
    # The same through the preview, with a title of one's own.
    other = tmp_path / "constant.png"
    preview = keras_prune.preview(
        keras_prune.ConstantSparsity(0.8, begin_step=10, frequency=10), 60
    )
    assert preview.plot(other, title="ConstantSparsity(0.8)") == other
    assert_png(other)


def test_sparsity_bars(tmp_path):
    inputs = keras.Input((6,))
    x = L.Dense(8, name="hidden")(inputs)
    x = L.BatchNormalization()(x)
    outputs = L.Dense(3, name="head")(x)
    pruned = keras_prune.prune_low_magnitude(
        keras.Model(inputs, outputs), keras_prune.ConstantSparsity(0.75, 0),
        exclude=["head"],
    )
    keras_prune.update_masks(pruned, 0)
    path = tmp_path / "bars.png"

    assert plots.sparsity_bars(pruned, path) == path
    assert_png(path)
    report = SparsityReport(pruned)
    other = tmp_path / "from_report.png"
    assert plots.sparsity_bars(report, other, title="mine") == other
    assert_png(other)

    dense = keras.Sequential([keras.Input((4,)), L.BatchNormalization()])
    with pytest.raises(ValueError, match="no prunable weights"):
        plots.sparsity_bars(dense, tmp_path / "none.png")


def test_sensitivity_plot(tmp_path):
    # Any object with the attributes of a SensitivityResult.
    result = types.SimpleNamespace(
        metric_name="accuracy",
        baseline=0.95,
        sparsities=(0.5, 0.8, 0.95),
        layers=("hidden", "head"),
        table={
            "hidden": {0.5: 0.95, 0.8: 0.93, 0.95: 0.71},
            "head": {0.5: 0.94, 0.8: 0.85, 0.95: 0.42},
        },
        num_params={"hidden": 2048, "head": 320},
    )
    path = tmp_path / "sensitivity.png"

    assert plots.sensitivity_plot(result, path) == path
    assert_png(path)


def test_schedule_plot_annotates_jumps(tmp_path, monkeypatch):
    texts = []
    original = plots._figure

    def recording(size, path):
        figure, axes = original(size, path)
        annotate = axes.annotate

        def record(text, *args, **kwargs):
            texts.append(text)
            return annotate(text, *args, **kwargs)

        axes.annotate = record
        return figure, axes

    monkeypatch.setattr(plots, "_figure", recording)
    schedule = keras_prune.PolynomialDecay(
        0.5, 0.9, begin_step=2000, end_step=4000, frequency=100
    )
    plots.schedule_plot(keras_prune.preview(schedule, 5000),
                        tmp_path / "s.png")

    assert "step 2000: 0% \u2192 50%\nin one update" in texts
    assert "begin_step=2000" in texts and "end_step=4000" in texts


def test_missing_matplotlib_says_what_to_install(tmp_path, monkeypatch):
    for name in [n for n in sys.modules if n.split(".")[0] == "matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    preview = keras_prune.preview(keras_prune.ConstantSparsity(0.5, 0), 10)

    with pytest.raises(ImportError, match=re.escape(
        "pip install keras-prune[plots]"
    )):
        plots.schedule_plot(preview, tmp_path / "s.png")
    assert not (tmp_path / "s.png").exists()


def test_the_extension_picks_the_format_and_none_means_png(tmp_path):
    preview = keras_prune.preview(keras_prune.ConstantSparsity(0.5, 0), 500)
    # No extension: PNG written to exactly that name (matplotlib alone
    # would write "schedule.png" and the returned path would be wrong).
    bare = tmp_path / "schedule"
    assert plots.schedule_plot(preview, bare) == bare
    assert_png(bare)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["schedule"]
    svg = tmp_path / "schedule.svg"
    plots.schedule_plot(preview, svg)
    assert svg.read_text().lstrip().startswith("<?xml")
    with pytest.raises(ValueError, match=(
            r"cannot write a plot to '.*schedule\.xyz': \.xyz is not an "
            r"image format matplotlib writes; end the name in one of .*"
            r"\.png.*\(no extension writes PNG\)\.")):
        plots.schedule_plot(preview, tmp_path / "schedule.xyz")
    assert not (tmp_path / "schedule.xyz").exists()
