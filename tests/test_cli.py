"""`keras-prune` command: the demo end to end, option errors, help."""

import contextlib
import io

import pytest

from keras_prune import cli
from keras_prune import demo
from keras_prune.patterns import num_pruned
from keras_prune.registry import prunable_weights
from tests.conftest import numpy

QUICK = ["demo", "--train-samples", "2000", "--epochs", "1", "--prune-epochs", "2"]
KERNELS = ("conv1", "conv2", "fc1", "logits")


@pytest.fixture(scope="module")
def quick_demo():
    """Runs the quick demo once through `cli.main`, keeping run_demo's result.

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
        status = cli.main(QUICK + ["--sparsity", "0.9"])
    return status, out.getvalue(), results[0]


def test_demo_exits_0(quick_demo):
    status, _, _ = quick_demo
    assert status == 0


def test_demo_prunes_every_kernel_exactly(quick_demo):
    _, _, result = quick_demo
    model = result["pruned"]["model"]
    for name in KERNELS:
        (kernel,) = prunable_weights(model.get_layer(name))
        values = numpy(kernel)
        zeros = values.size - (values != 0).sum()
        assert zeros == num_pruned(values.size, 0.9), name
        assert result["pruned"]["weights"][f"{name}/kernel"] == (zeros, values.size)


def test_demo_prints_table(quick_demo):
    _, out, result = quick_demo
    assert "== Dense training: 1 epoch(s) on 2,000 images ==" in out
    rows = {line.split("  ")[0] for line in out.splitlines()}
    assert {f"sparsity {name}/kernel" for name in KERNELS} <= rows
    assert {
        "test accuracy",
        "parameters",
        "non-zero parameters",
        "zipped .keras size",
        "size ratio (dense/pruned)",
    } <= rows
    fc1 = num_pruned(800 * 64, 0.9)
    assert f"90.00% ({fc1:,}/51,200)" in out
    assert f"{result['pruned']['zipped_bytes']:,} B" in out


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
    assert cli.main(QUICK + ["--quiet"]) == 1
    captured = capsys.readouterr()
    assert "keras-prune demo: error: Fashion-MNIST not found" in captured.err
    assert "apt-get install dataset-fashion-mnist" in captured.err
    assert "Traceback" not in captured.err


@pytest.mark.parametrize("args", [["--help"], ["demo", "--help"]])
def test_help_exits_0(capsys, args):
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "keras-prune demo --train-samples 2000" in out


def test_no_command_is_usage_error(capsys):
    assert cli.main([]) == 2
    assert "required: COMMAND" in capsys.readouterr().err
