"""`keras-prune` command: every subcommand, its errors, its help."""

import contextlib
import io
import json
import os
import pathlib
import shlex
import zipfile

import keras
import numpy as np
import numpy.testing as numpy_testing
import pytest

import keras_prune
from keras_prune import cli
from keras_prune.cli import demo
from keras_prune.core.patterns import num_pruned
from keras_prune.core.layers import pruned_layers
from keras_prune.core.registry import prunable_weights
from tests.conftest import numpy

QUICK = ["demo", "--train-samples", "2000", "--epochs", "1", "--prune-epochs", "2"]
KERNELS = ("conv1", "conv2", "fc1", "logits")


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("demo") / "tour"


@pytest.fixture(scope="module")
def quick_demo(demo_dir):
    """Runs a small demo once through `cli.main`, keeping run_demo's result.

    Returns:
        `(exit status, printed output, run_demo's result dict)`.
    """
    results = []
    run_demo = demo.run_demo

    def spy(**kwargs):
        results.append(run_demo(**kwargs))
        return results[-1]

    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
        patch.setattr(demo, "run_demo", spy)
        status = cli.main(QUICK + ["--sparsity", "0.9", "--out",
                                   str(demo_dir)])
    return status, out.getvalue(), results[0]


def test_demo_exits_0(quick_demo):
    status, _, _ = quick_demo
    assert status == 0


def test_demo_progress_into_a_file_is_plain_lines(quick_demo):
    # Not a terminal: one line per epoch, no ANSI codes, carriage returns
    # or backspaces (Keras's bars write them even into a file).
    _, out, _ = quick_demo
    assert "32/32 - " in out  # Keras's verbose=2: a line per epoch
    assert not any(c in out for c in "\x1b\r\b"), repr(out[:300])


def test_demo_prunes_every_kernel_exactly(quick_demo):
    _, _, result = quick_demo
    model = result["pruned"]["model"]
    for name in KERNELS:
        (kernel,) = prunable_weights(model.get_layer(name))
        values = numpy(kernel)
        zeros = values.size - (values != 0).sum()
        assert zeros == num_pruned(values.size, 0.9), name
        assert result["pruned"]["weights"][f"{name}/kernel"] == (zeros, values.size)


def test_demo_prints_table(quick_demo, demo_dir):
    _, out, result = quick_demo
    assert "== 1. Dense training: 1 epoch(s) on 2,000 images ==" in out
    words = " ".join(out.split())
    assert "steps of recovery with the masks fixed, in which the weights " \
        "left retrain" in words
    rows = {line.split("  ")[0] for line in out.splitlines()}
    assert {f"sparsity {name}/kernel" for name in KERNELS} <= rows
    assert {
        "test accuracy",
        "parameters",
        "non-zero parameters",
        "MACs per image",
        "zipped .keras",
        "packed, float32",
        "packed, int8",
        "latency, batch 256",
    } <= rows
    fc1 = num_pruned(800 * 64, 0.9)
    assert f"90.00% ({fc1:,}/51,200)" in out
    zipped = result["pruned"]["zipped_bytes"]
    assert f"{zipped:,} B ({result['size_ratio']:.2f}x smaller)" in out
    small = result["small"]
    assert (f"{small['cost'].params:,} "
            f"({small['dense_cost'].params / small['cost'].params:.2f}x "
            "fewer)") in out
    assert "Try next:" in out
    assert f"small vs dense: {small['latency']['words']};" in words
    assert f"  keras-prune report {demo_dir}/pruned.keras\n" in out
    # The table and its prose fit a 100-column terminal (file paths aside).
    table = demo.format_table(result)
    assert max(len(line) for line in table.splitlines()
               if str(demo_dir) not in line) < 100


def test_demo_writes_what_it_lists(quick_demo, demo_dir):
    # The files a user looks at afterwards: plain Keras models (the stripped
    # one with its zeros, the small one with fewer channels), the packed
    # files (loading to the stripped model's outputs) and the plots.
    _, out, result = quick_demo
    names = ["dense.keras", "pruned.keras", "small.keras", "pruned.kpack",
             "pruned-int8.kpack", "schedule.png", "sparsity.png"]
    assert sorted(os.listdir(demo_dir)) == sorted(names)
    assert result["files"] == [str(demo_dir / n) for n in names]
    assert (f"Written to {demo_dir}/: {', '.join(names)}"
            in " ".join(out.split()))
    pruned = keras.saving.load_model(demo_dir / "pruned.keras")
    assert not pruned.compiled
    kernel = numpy(pruned.get_layer("fc1").kernel)
    assert (kernel == 0).sum() == num_pruned(800 * 64, 0.9)
    small = keras.saving.load_model(demo_dir / "small.keras")
    assert small.get_layer("conv1").filters == 8
    assert small.count_params() == result["small"]["cost"].params
    x = np.random.default_rng(0).random((4, 28, 28, 1)).astype("float32")
    packed = keras_prune.load_packed(demo_dir / "pruned.kpack")
    numpy_testing.assert_allclose(numpy(packed(x)), numpy(pruned(x)),
                                  rtol=1e-5, atol=1e-5)


def test_demo_next_commands_run_on_its_files(quick_demo, demo_dir, capsys):
    # As printed; compare with one timing round (its default is 20).
    commands = [line.strip() for line in quick_demo[1].splitlines()
                if line.startswith("  keras-prune ")]
    assert len(commands) == 4
    try:
        for command in commands:
            argv = shlex.split(command)[1:]
            if argv[0] == "compare":
                argv += ["--repeats", "1", "--batch-sizes", "8"]
            assert cli.main(argv) == 0, (command, capsys.readouterr().err)
        assert {"smaller.keras", "oneshot.keras"} <= set(os.listdir(demo_dir))
    finally:
        for name in ("smaller.keras", "oneshot.keras"):
            if os.path.exists(demo_dir / name):
                os.remove(demo_dir / name)


def test_demo_refuses_to_overwrite_an_earlier_run_first(
        quick_demo, demo_dir, capsys):
    # Before any training: the files are there and --force is not given.
    before = {p: os.path.getmtime(demo_dir / p) for p in os.listdir(demo_dir)}
    assert cli.main(QUICK + ["--out", str(demo_dir)]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == (
        f"keras-prune demo: error: {demo_dir / 'dense.keras'} exists; pass "
        "--force to overwrite it.")
    assert "Dense training" not in err
    assert {p: os.path.getmtime(demo_dir / p) for p in before} == before


def test_demo_stripped_model_zips_smaller(quick_demo):
    _, _, result = quick_demo
    assert result["pruned"]["zipped_bytes"] < result["dense"]["zipped_bytes"]
    assert result["size_ratio"] > 1
    assert result["pruned"]["params"] == result["dense"]["params"]
    assert result["pruned"]["nonzero_params"] < result["dense"]["nonzero_params"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sparsity", "1.5"], "sparsity must be in [0, 1), got 1.5"),
        (["--sparsity", "-0.1"], "sparsity must be in [0, 1), got -0.1"),
        (["--epochs", "0"], "epochs must be at least 1, got 0"),
        (["--train-samples", "70000"], "got 70000"),
        (
            ["--train-samples", "100", "--batch-size", "128", "--prune-epochs", "1"],
            "The pruning phase has 1 training step",
        ),
        (["--batch-size", "many"], "invalid int value: 'many'"),
    ],
)
def test_demo_bad_option_is_usage_error(capsys, args, message):
    assert cli.main(["demo"] + args) == 2
    err = capsys.readouterr().err
    assert "usage: keras-prune demo" in err
    assert message in err


def test_missing_fashion_mnist_exits_1(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_PRUNE_FASHION_MNIST_DIR", str(tmp_path))
    assert cli.main(QUICK + ["--quiet", "--out", str(tmp_path / "d")]) == 1
    captured = capsys.readouterr()
    assert "keras-prune demo: error: Fashion-MNIST not found" in captured.err
    assert "apt-get install dataset-fashion-mnist" in captured.err
    assert "Traceback" not in captured.err


@pytest.mark.parametrize("args", [["--help"], ["demo", "--help"]])
def test_help_exits_0(capsys, args):
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "keras-prune demo --quick" in out


def test_no_command_is_usage_error(capsys):
    assert cli.main([]) == 2
    assert "required: COMMAND" in capsys.readouterr().err


# ---- report, schedule, prune, strip, compare -------------------------------
#
# Tiny models saved once per module: an MLP on the 64 pixels of the 8x8
# digits, a model taking the 8x8x1 images as they are, the MLP pruned (with
# its wrappers) and stripped, a model whose input fits no data set, one with
# a Lambda layer, and a text file named like a model. Every pytest test costs
# about half a second of teardown here (the session reset), so related cases
# share a test.

DENSE_PARAMS = 64 * 16 + 16 + 16 * 10 + 10
MLP_KERNELS = 64 * 16 + 16 * 10


def _mlp(name, inputs):
    return keras.Sequential(
        [
            keras.Input(inputs),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(16, activation="relu", name="fc1"),
            keras.layers.Dense(10, name="logits"),
        ],
        name=name,
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Paths of the saved test models, by short name."""
    directory = tmp_path_factory.mktemp("models")
    paths = {
        name: str(directory / f"{name}.keras")
        for name in ("dense", "image", "wrapped", "stripped", "wide", "lambda")
    }
    keras.utils.set_random_seed(0)
    dense = _mlp("mlp", (64,))
    dense.save(paths["dense"])
    _mlp("image_mlp", (8, 8, 1)).save(paths["image"])
    pruned, _ = keras_prune.prune_now(dense, 0.7)
    pruned.save(paths["wrapped"])
    keras_prune.strip_pruning(pruned).save(paths["stripped"])
    _mlp("wide", (10,)).save(paths["wide"])
    keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(10, name="fc1"),
            keras.layers.Lambda(lambda t: t * 2.0, name="double"),
        ]
    ).save(paths["lambda"])
    paths["text"] = str(directory / "text.keras")
    pathlib.Path(paths["text"]).write_text("not a model\n")
    paths["missing"] = str(directory / "missing.keras")
    keras.backend.clear_session()
    return paths


@pytest.fixture
def unchanged(files):
    """Asserts after the test that no input file was modified."""
    before = _snapshot(files)
    yield
    assert _snapshot(files) == before


def _snapshot(files):
    found = {}
    for path in files.values():
        if os.path.exists(path):
            stat = os.stat(path)
            found[path] = (pathlib.Path(path).read_bytes(), stat.st_mtime_ns)
    return found


def _kernel_zeros(model):
    return {
        layer.name: int((numpy(layer.kernel) == 0).sum())
        for layer in model.layers
        if hasattr(layer, "kernel")
    }


def _zipped(path, tmp_path):
    archive = tmp_path / "check.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.write(path, os.path.basename(path))
    return archive.stat().st_size


def test_every_command_has_help_with_examples(capsys):
    examples = {
        "report": "keras-prune report pruned.keras --json",
        "schedule": "keras-prune schedule constant --target 0.5",
        "prune": "keras-prune prune model.keras -o pruned.keras --sparsity 0.8",
        "strip": "keras-prune strip training.keras -o final.keras",
        "compare": "keras-prune compare model.keras pruned.keras --data digits",
    }
    for command, example in examples.items():
        assert cli.main([command, "--help"]) == 0, command
        out = capsys.readouterr().out
        assert f"usage: keras-prune {command}" in out
        assert example in out
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in list(examples) + ["demo"]:
        assert f"keras-prune {command} " in out


def test_report_prints_summary(capsys, files, unchanged):
    assert cli.main(["report", files["dense"]]) == 0
    out = capsys.readouterr().out
    expected = keras_prune.SparsityReport(keras.saving.load_model(files["dense"]))
    assert out.startswith(f"{files['dense']} (model 'mlp')\n")
    assert expected.summary() in out
    assert f"prunable weights: 0/{MLP_KERNELS:,} zero" in out


def test_report_json_of_pruned_model(capsys, files, unchanged):
    assert cli.main(["report", files["wrapped"], "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    loaded = keras.saving.load_model(files["wrapped"])
    assert report == keras_prune.SparsityReport(loaded).to_dict()
    assert report["totals"]["prunable_zeros"] == num_pruned(MLP_KERNELS, 0.7)


def test_report_sizes_of_pruned_model(capsys, files, unchanged):
    assert cli.main(["report", files["wrapped"], "--sizes", "--json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    loaded = keras.saving.load_model(files["wrapped"])
    expected = keras_prune.model_size(keras_prune.strip_pruning(loaded))
    sizes = data.pop("sizes")
    # .keras files hold their save date: their zipped size may move a byte.
    for field in ("keras_bytes", "zipped_keras_bytes"):
        assert abs(sizes.pop(field) - getattr(expected, field)) <= 64
    assert sizes == {
        k: v for k, v in expected.to_dict().items()
        if k not in ("keras_bytes", "zipped_keras_bytes")
    }
    assert sizes["nonzeros"] < sizes["parameters"]
    assert data == keras_prune.SparsityReport(loaded).to_dict()
    assert "measuring the sizes" in captured.err
    assert cli.main(["report", files["stripped"], "--sizes"]) == 0
    out = capsys.readouterr().out
    assert "sizes (stripped model):" in out
    assert "packed (float32)" in out


# Every command that reads a model, as `fn(model path, output path) -> argv`.
READERS = {
    "report": lambda model, out: ["report", model],
    "prune": lambda model, out: ["prune", model, "-o", out, "--sparsity", "0.5"],
    "strip": lambda model, out: ["strip", model, "-o", out],
    "compare": lambda model, out: ["compare", model, model, "--repeats", "0"],
}


@pytest.mark.parametrize(
    "name, message",
    [
        ("missing", "missing.keras: no such file."),
        ("text", "text.keras is not a Keras file: a .keras file is a zip archive"),
        ("lambda", "lambda.keras holds a Lambda layer, whose Python code Keras"),
    ],
)
def test_unloadable_model_exits_1(capsys, files, unchanged, tmp_path, name, message):
    out = tmp_path / "out.keras"
    for command, argv in READERS.items():
        assert cli.main(argv(files[name], str(out))) == 1, command
        err = capsys.readouterr().err
        assert err.startswith(f"keras-prune {command}: error: ")
        assert message in err
        assert "Traceback" not in err
        if name == "lambda":
            assert "pass --unsafe (loads with safe_mode=False)" in err
    assert os.listdir(tmp_path) == []


def test_unsafe_loads_lambda_layer(capsys, files, unchanged, tmp_path):
    assert cli.main(["report", files["lambda"], "--unsafe"]) == 0
    assert "fc1/kernel" in capsys.readouterr().out
    out = str(tmp_path / "out.keras")
    # prune_now clones the model, which deserializes the Lambda layer again.
    args = ["prune", files["lambda"], "-o", out, "--sparsity", "0.5", "--unsafe"]
    assert cli.main(args) == 0
    pruned = keras.saving.load_model(out, safe_mode=False)
    assert _kernel_zeros(pruned) == {"fc1": num_pruned(640, 0.5)}
    # --unsafe lasts one command: safe mode is back.
    assert cli.main(["report", files["lambda"]]) == 1


# ---- prune ---------------------------------------------------------------


def test_prune_writes_stripped_model(capsys, files, unchanged, tmp_path):
    out = tmp_path / "pruned.keras"
    assert cli.main(["prune", files["dense"], "-o", str(out), "--sparsity", "0.5"]) == 0
    captured = capsys.readouterr()
    pruned = keras.saving.load_model(out)
    assert pruned_layers(pruned) == []
    zeros = sum(_kernel_zeros(pruned).values())
    assert zeros == num_pruned(MLP_KERNELS, 0.5)
    assert f"prunable weights: {zeros}/{MLP_KERNELS:,} zero" in captured.out
    assert f"wrote {out}" in captured.err
    # Written through a temporary directory, which is gone.
    assert os.listdir(tmp_path) == ["pruned.keras"]


def test_prune_layer_scope_with_exclude_json(capsys, files, unchanged, tmp_path):
    out = str(tmp_path / "pruned.keras")
    args = ["prune", files["dense"], "-o", out, "--sparsity", "0.6"]
    args += ["--scope", "layer", "--exclude", "logits", "--json"]
    assert cli.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    zeros = _kernel_zeros(keras.saving.load_model(out))
    assert zeros == {"fc1": num_pruned(1024, 0.6), "logits": 0}
    assert report["totals"]["prunable_zeros"] == zeros["fc1"]


def test_prune_usage_errors(capsys, files, unchanged, tmp_path):
    out = str(tmp_path / "pruned.keras")
    cases = [
        (["--sparsity", "1.0"], "--sparsity must be in [0, 1), got 1.0"),
        (["--sparsity", "-0.1"], "--sparsity must be in [0, 1), got -0.1"),
        (["--sparsity", "nan"], "--sparsity must be in [0, 1), got nan"),
        (["--sparsity", "most"], "invalid float value: 'most'"),
        (["--sparsity", "0.5", "--scope", "model"], "invalid choice: 'model'"),
        (
            ["--sparsity", "0.5", "--exclude", "nope"],
            "exclude names the layer 'nope', which is not in the model",
        ),
    ]
    for extra, message in cases:
        assert cli.main(["prune", files["dense"], "-o", out] + extra) == 2, extra
        err = capsys.readouterr().err
        assert "usage: keras-prune prune" in err
        assert message in err
    assert os.listdir(tmp_path) == []


def test_output_must_be_a_new_keras_file(capsys, files, unchanged, tmp_path):
    for command, source in (("prune", files["dense"]), ("strip", files["wrapped"])):
        h5 = tmp_path / "out.h5"
        assert cli.main(READERS[command](source, str(h5))) == 2
        assert f"the output '{h5}' must end in .keras" in capsys.readouterr().err
        argv = READERS[command](source, source) + ["--force"]
        assert cli.main(argv) == 2
        assert f"the output {source} is the input file" in capsys.readouterr().err
        nowhere = tmp_path / "nowhere" / "out.keras"
        assert cli.main(READERS[command](source, str(nowhere))) == 1
        assert "does not exist" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_existing_output_needs_force(capsys, files, unchanged, tmp_path):
    for command, source in (("prune", files["dense"]), ("strip", files["wrapped"])):
        out = tmp_path / f"{command}.keras"
        out.write_bytes(b"old")
        assert cli.main(READERS[command](source, str(out))) == 1
        err = capsys.readouterr().err
        assert f"{out} exists; pass --force to overwrite it." in err
        assert out.read_bytes() == b"old"
        assert cli.main(READERS[command](source, str(out)) + ["--force"]) == 0
        assert pruned_layers(keras.saving.load_model(out)) == []
    assert sorted(os.listdir(tmp_path)) == ["prune.keras", "strip.keras"]


def test_failed_write_keeps_existing_output(capsys, monkeypatch, files, tmp_path):
    out = tmp_path / "out.keras"
    out.write_bytes(b"old")

    def broken_save(model, path, *args, **kwargs):
        pathlib.Path(path).write_bytes(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(keras.Model, "save", broken_save)
    args = ["prune", files["dense"], "-o", str(out), "--sparsity", "0.5", "--force"]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert f"cannot write {out}: OSError: No space left on device" in err
    assert out.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.keras"]


def test_prune_pruned_or_strip_dense_exits_1(capsys, files, unchanged, tmp_path):
    out = tmp_path / "out.keras"
    assert cli.main(READERS["prune"](files["wrapped"], str(out))) == 1
    assert "wrapped.keras is already pruned" in capsys.readouterr().err
    assert cli.main(READERS["strip"](files["dense"], str(out))) == 1
    assert "dense.keras has no pruning wrappers" in capsys.readouterr().err
    assert not out.exists()


# ---- strip ---------------------------------------------------------------


def test_strip_keeps_outputs_and_zeros(capsys, files, unchanged, tmp_path, digits):
    out = tmp_path / "final.keras"
    assert cli.main(["strip", files["wrapped"], "-o", str(out)]) == 0
    captured = capsys.readouterr()
    wrapped = keras.saving.load_model(files["wrapped"])
    final = keras.saving.load_model(out)
    assert pruned_layers(final) == []
    x = digits[1][0][:64].reshape(-1, 64)
    numpy_testing.assert_allclose(
        numpy(final(x)), numpy(wrapped(x)), rtol=1e-6, atol=1e-6
    )
    zeros = num_pruned(MLP_KERNELS, 0.7)
    assert sum(_kernel_zeros(final).values()) == zeros
    assert (f"wrote {out}: 2 pruning wrappers removed, plain Keras layers, "
            "not compiled") in captured.err
    assert f"prunable weights: {zeros}/{MLP_KERNELS:,} zero" in captured.out


# ---- compare -------------------------------------------------------------


def test_compare_json_with_digits(capsys, files, unchanged, tmp_path, digits):
    args = ["compare", files["dense"], files["stripped"], "--data", "digits"]
    assert cli.main(args + ["--repeats", "2", "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    a, b = result["a"], result["b"]
    assert a["params"] == b["params"] == DENSE_PARAMS
    # Biases start at zero: 26 zeros in both.
    assert a["nonzero_params"] == DENSE_PARAMS - 26
    assert b["nonzero_params"] == DENSE_PARAMS - 26 - num_pruned(MLP_KERNELS, 0.7)
    x_test, y_test = digits[1]
    for entry, name in ((a, "dense"), (b, "stripped")):
        assert entry["file_bytes"] == os.path.getsize(files[name])
        assert entry["zipped_bytes"] == _zipped(files[name], tmp_path)
        assert set(entry["latency_s"]) == {"1", "32"}
        assert all(seconds > 0 for seconds in entry["latency_s"].values())
        model = keras.saving.load_model(files[name])
        scores = numpy(model.predict(x_test.reshape(-1, 64), verbose=0))
        assert entry["accuracy"] == float(np.mean(scores.argmax(-1) == y_test))
    assert b["zipped_bytes"] < a["zipped_bytes"]
    assert result["data"] == {"name": "digits", "test_samples": len(y_test)}
    assert result["latency"]["repeats"] == 2
    assert "timing predict_on_batch, batch size 32" in captured.err
    assert "evaluating" in captured.err
    # Progress goes to stderr, never into the JSON; not a terminal here, so
    # as plain lines, without Keras's bars.
    assert "2/2" not in captured.err and "\x1b" not in captured.err


def test_compare_table(capsys, files, unchanged):
    # image.keras takes the 8x8x1 images as they are, dense.keras reshaped.
    args = ["compare", files["image"], files["wrapped"], "--data", "digits"]
    assert cli.main(args + ["--repeats", "1", "--batch-sizes", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["image.keras", "wrapped.keras", "B", "vs", "A"]
    labels = {line.split("  ")[0] for line in lines}
    assert {
        "parameters",
        "non-zero parameters",
        "prunable sparsity",
        "file size",
        "zipped size",
        "latency, batch 1",
        "optimizer state in file",
    } <= labels
    digits_rows = [line for line in lines if line.startswith("accuracy (digits, ")]
    assert len(digits_rows) == 1


def test_compare_without_latency_or_data(capsys, files, unchanged):
    args = ["compare", files["dense"], files["wrapped"], "--repeats", "0", "--json"]
    assert cli.main(args) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["latency"] is None and result["data"] is None
    assert result["b"]["latency_s"] is None and result["b"]["accuracy"] is None
    pruned = num_pruned(MLP_KERNELS, 0.7)
    assert result["b"]["nonzero_params"] == result["a"]["nonzero_params"] - pruned
    assert "timing" not in captured.err


def test_compare_errors(capsys, files, unchanged):
    args = ["compare", files["dense"], files["wide"], "--data", "digits"]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert (
        "wide.keras takes inputs of shape (10,), but digits images have shape "
        "(8, 8, 1) (64 values)" in err
    )
    assert "leave out --data" in err
    assert "timing" not in err
    args = ["compare", files["dense"], files["dense"], "--repeats", "-1"]
    assert cli.main(args) == 2
    assert "--repeats must be 0 (no latency) or more" in capsys.readouterr().err


# ---- schedule (the --plot test comes last) ----------------------------------


def test_schedule_polynomial_defaults(capsys):
    assert cli.main(["schedule", "polynomial"]) == 0
    expected = keras_prune.preview(
        keras_prune.PolynomialDecay(0.0, 0.8, 0, 1000, power=3, frequency=100),
        1100,
    )
    assert capsys.readouterr().out == expected.to_text() + "\n"


def test_schedule_polynomial_json(capsys):
    args = ["schedule", "polynomial", "--initial", "0.5", "--final", "0.9"]
    args += ["--begin", "20", "--end", "60", "--frequency", "10", "--power", "1"]
    assert cli.main(args + ["--steps", "80", "--json"]) == 0
    expected = keras_prune.preview(
        keras_prune.PolynomialDecay(0.5, 0.9, 20, 60, power=1, frequency=10), 80
    )
    result = json.loads(capsys.readouterr().out)
    assert result == json.loads(json.dumps(expected.to_dict()))
    assert result["updates"][0] == {"step": 20, "sparsity": 0.5}


def test_schedule_constant(capsys):
    expected = keras_prune.preview(keras_prune.ConstantSparsity(0.5, 100, -1, 50), 600)
    for flag in ("--target", "--final"):
        args = ["schedule", "constant", flag, "0.5", "--begin", "100"]
        assert cli.main(args + ["--frequency", "50"]) == 0
        assert capsys.readouterr().out == expected.to_text() + "\n"


def test_schedule_bad_values_are_usage_errors(capsys):
    cases = [
        (
            ["polynomial", "--final", "1.5"],
            "PolynomialDecay: final_sparsity must be in [0, 1), got 1.5",
        ),
        (
            ["polynomial", "--begin", "500", "--end", "500"],
            "end_step (500) must be greater than begin_step (500)",
        ),
        (
            ["polynomial", "--initial", "0.9", "--final", "0.5"],
            "initial_sparsity (0.9) must be ≤ final_sparsity (0.5)",
        ),
        (
            ["polynomial", "--power", "0"],
            "power must be a finite number greater than 0",
        ),
        (["polynomial", "--frequency", "0"], "frequency must be positive, got 0"),
        (["polynomial", "--steps", "0"], "steps must be a positive integer"),
        (
            ["constant", "--target", "-0.1"],
            "ConstantSparsity: target_sparsity must be in [0, 1), got -0.1",
        ),
        (["constant", "--begin", "10", "--end", "5"], "end_step (5) must be -1"),
        (["constant", "--power", "2"], "--power applies to polynomial only"),
        (["linear"], "invalid choice: 'linear'"),
    ]
    for args, message in cases:
        assert cli.main(["schedule"] + args) == 2, args
        err = capsys.readouterr().err
        assert "usage: keras-prune schedule" in err
        assert message in err, args


def test_schedule_plot(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "schedule.png"
    assert cli.main(["schedule", "polynomial", "--plot", str(out)]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")
    assert f"wrote {out}" in capsys.readouterr().err
    assert cli.main(["schedule", "polynomial", "--plot", str(out)]) == 1
    assert f"{out} exists; pass --force" in capsys.readouterr().err
    assert cli.main(["schedule", "polynomial", "--plot", str(out), "--force"]) == 0
    assert os.listdir(tmp_path) == ["schedule.png"]


def test_demo_quick_is_the_small_tour_and_explicit_options_win(
        monkeypatch, tmp_path):
    seen = []

    class Stop(Exception):
        pass

    def spy(**kwargs):
        seen.append(kwargs)
        raise Stop

    monkeypatch.setattr(demo, "run_demo", spy)
    out = str(tmp_path / "d")
    for argv in (["demo", "--quick", "--out", out],
                 ["demo", "--quick", "--epochs", "4", "--out", out]):
        with pytest.raises(Stop):
            cli.main(argv)
    quick, explicit = seen
    assert (quick["train_samples"], quick["epochs"],
            quick["prune_epochs"]) == (10_000, 2, 2)
    assert (explicit["train_samples"], explicit["epochs"]) == (10_000, 4)
    assert quick["out_dir"] == out
    assert not os.path.exists(out)  # nothing made before the work
