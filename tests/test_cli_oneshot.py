"""`keras-prune oneshot`: Wanda, SparseGPT and magnitude from the shell, the
same masks and weights as `prune_now`, and every bad input refused in one
line before any work."""

import contextlib
import hashlib
import io
import json

import keras
import numpy as np
import pytest

import keras_prune
from keras_prune import cli
from keras_prune.core.patterns import num_pruned
from keras_prune.core.walk import all_layers
from tests.conftest import numpy

RECONSTRUCTION = ("Reconstruction error ||WX - W^X||^2 / ||WX||^2 on "
                  "calibration data ({} layers, worst first)")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small MLP and its calibration inputs, a Conv model, bad files."""
    folder = tmp_path_factory.mktemp("oneshot")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16,), name="x")
    hidden = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
    keras.Model(inputs, keras.layers.Dense(8, name="logits")(hidden)).save(
        folder / "mlp.keras")
    keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3)]).save(
        folder / "conv.keras")
    rng = np.random.default_rng(0)
    np.save(folder / "x.npy", rng.normal(size=(64, 16)).astype("float32"))
    np.save(folder / "few.npy", rng.normal(size=(10, 16)).astype("float32"))
    np.save(folder / "wide.npy", np.zeros((8, 5), "float32"))
    np.save(folder / "text.npy", np.array([["a"] * 16] * 4))
    np.save(folder / "objects.npy", np.array([{}, None], dtype=object),
            allow_pickle=True)
    (folder / "garbage.npy").write_bytes(b"not an array")
    np.savez(folder / "named.npz", x=np.zeros((4, 16), "float32"))
    np.savez(folder / "nothing.npz")
    np.save(folder / "images.npy", np.zeros((4, 8, 8, 1), "float32"))
    return folder


@pytest.fixture(scope="module")
def backbone(files):
    """`files` with a tiny GPT-2 backbone (built from a config: nothing
    downloads), its tokens and tokens without the padding mask."""
    hub = pytest.importorskip("keras_hub")
    rng = np.random.default_rng(0)
    hub.models.GPT2Backbone(
        vocabulary_size=64, num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=16).save(files / "gpt2.keras")
    ids = rng.integers(1, 64, size=(16, 12)).astype("int32")
    np.savez(files / "tokens.npz", token_ids=ids, padding_mask=np.ones_like(ids))
    np.savez(files / "ids_only.npz", token_ids=ids)
    return files


def run(argv):
    """(status, stdout, stderr) of `keras-prune oneshot argv`, in-process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main(["oneshot"] + [str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def kernels(model):
    """{kernel path: values} of the model's Dense and EinsumDense layers."""
    return {layer.kernel.path: numpy(layer.kernel)
            for layer in all_layers(model)
            if isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense))}


def reconstruction_lines(out, count):
    """The reconstruction table's rows as (path, error), after checking its
    header."""
    lines = out.splitlines()
    start = lines.index(RECONSTRUCTION.format(count))
    return [(line.split()[0], float(line.split()[1]))
            for line in lines[start + 1:start + 1 + count]]


@pytest.mark.parametrize("method,options,criterion", [
    ("wanda", [], "wanda"),
    ("sparsegpt", [], "sparsegpt"),
    ("sparsegpt", ["--damping", "0.1", "--block-size", "8",
                   "--no-sequential"],
     {"name": "sparsegpt", "config": {"damping": 0.1, "block_size": 8,
                                      "sequential": False}}),
])
def test_calibrated_methods_prune_every_row_as_prune_now_does(
        files, tmp_path, method, options, criterion):
    model, calibration = files / "mlp.keras", files / "x.npy"
    before = digest(model), digest(calibration)
    output = tmp_path / "pruned.keras"
    status, out, err = run([model, "-o", output, "--method", method,
                            "--sparsity", "0.5", "--calibration", calibration]
                           + options)
    assert status == 0, err
    assert (digest(model), digest(calibration)) == before
    written = kernels(keras.saving.load_model(output))
    for path, values in written.items():
        # Every output (a column of a Dense kernel) keeps half its inputs.
        assert ((values == 0).sum(axis=0) == num_pruned(16, 0.5)).all(), path
    pruned, report = keras_prune.prune_now(
        keras.saving.load_model(model), 0.5, criterion=criterion,
        calibration_data=np.load(calibration))
    expected = kernels(keras_prune.strip_pruning(pruned))
    for path, values in expected.items():
        np.testing.assert_allclose(written[path], values, rtol=1e-6, atol=1e-7)
    assert "prunable weights: 192/384 zero (50.0 %)" in out
    rows = reconstruction_lines(out, 2)
    assert [e for _, e in rows] == sorted((e for _, e in rows), reverse=True)
    assert {p for p, _ in rows} == {"hidden/kernel", "logits/kernel"}
    assert err.splitlines() == [
        f"pruning {model} by {method}, 0.5 of every output row, on 64 "
        f"calibration samples from {calibration}",
        f"wrote {output}: pruned to 50.0% of its prunable weights, stripped "
        "(plain Keras layers), not compiled"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pruned.keras"]


@pytest.mark.parametrize("method", ["wanda", "sparsegpt", "magnitude"])
def test_a_pattern_is_exact(files, tmp_path, method):
    output = tmp_path / "pruned.keras"
    calibration = ([] if method == "magnitude"
                   else ["--calibration", files / "x.npy"])
    status, out, err = run([files / "mlp.keras", "-o", output, "--method",
                            method, "--pattern", "2:4"] + calibration)
    assert status == 0, err
    written = keras.saving.load_model(output)
    assert keras_prune.check_n_m(written, 2, 4).ok
    assert "prunable weights: 192/384 zero (50.0 %)" in out
    # Magnitude has no calibration data, so no reconstruction to report.
    assert ("Reconstruction error" in out) == (method != "magnitude")


def test_magnitude_prunes_every_row(files, tmp_path):
    output = tmp_path / "pruned.keras"
    status, out, err = run([files / "mlp.keras", "-o", output, "--method",
                            "magnitude", "--sparsity", "0.25"])
    assert status == 0, err
    for path, values in kernels(keras.saving.load_model(output)).items():
        assert ((values == 0).sum(axis=0) == num_pruned(16, 0.25)).all(), path
    assert err.splitlines()[0] == (
        f"pruning {files / 'mlp.keras'} by magnitude, 0.25 of every output row")


@pytest.mark.parametrize("method,shape", [("sparsegpt", "0.5"),
                                          ("wanda", "2:4")])
def test_a_keras_hub_backbone_with_named_inputs(backbone, tmp_path, method,
                                                shape):
    files = backbone
    model, tokens = files / "gpt2.keras", files / "tokens.npz"
    before = digest(model), digest(tokens)
    output = tmp_path / "pruned.keras"
    amount = (["--pattern", shape] if ":" in shape
              else ["--sparsity", shape])
    status, out, err = run([model, "-o", output, "--method", method,
                            "--calibration", tokens, "--batch-size", "8"]
                           + amount)
    assert status == 0, err
    assert (digest(model), digest(tokens)) == before
    written = keras.saving.load_model(output)
    pruned = kernels(written)
    # q, k, v, attention output and two feed-forward kernels per block.
    assert len(pruned) == 12
    for path, values in pruned.items():
        assert (values == 0).sum() == values.size // 2, path
    if ":" in shape:
        assert keras_prune.check_n_m(written, 2, 4).ok
    assert len(reconstruction_lines(out, 12)) == 12
    # Only the command's lines: not the library's advice for Python users.
    assert len(err.splitlines()) == 2, err
    ids = np.load(tokens)
    outputs = written({"token_ids": ids["token_ids"],
                       "padding_mask": ids["padding_mask"]})
    assert np.isfinite(numpy(outputs)).all()


# (command line after MODEL -o OUT, exit status, the error's message)
BAD = [
    ("mlp.keras --method wanda --sparsity 0.5 --calibration missing.npy", 1,
     "--calibration missing.npy: no such file."),
    ("mlp.keras --method wanda --sparsity 0.5 --calibration garbage.npy", 1,
     "--calibration garbage.npy is not a .npy file (NumPy's header is "
     "missing); write it with np.save."),
    ("mlp.keras --method wanda --sparsity 0.5 --calibration objects.npy", 1,
     "cannot read --calibration objects.npy (ValueError: Object arrays cannot "
     "be loaded when allow_pickle=False); it must be written by np.save of "
     "one array, with numbers, not Python objects."),
    ("mlp.keras --method wanda --sparsity 0.5 --calibration nothing.npz", 1,
     "--calibration nothing.npz holds no arrays; save the model's inputs "
     "with np.savez(FILE, name=array, ...)."),
    ("mlp.keras --method wanda --sparsity 0.5 --calibration x.csv", 2,
     "--calibration 'x.csv' must be a .npy file (one array, np.save) or a "
     ".npz file (arrays by input name, np.savez) of the model's inputs."),
    ("mlp.keras --method wanda --sparsity 0.5 --calibration wide.npy", 2,
     "--calibration wide.npy has shape (8, 5); the model expects (None, 16) "
     "(inputs only, no labels)."),
    ("mlp.keras --method sparsegpt --sparsity 0.5 --calibration text.npy", 2,
     "--calibration text.npy has dtype <U1; the model expects float32."),
    ("mlp.keras --method wanda --sparsity 0.5 --calibration named.npz", 2,
     "--calibration named.npz holds named arrays (['x']); the model takes "
     "one array input. Save it as a .npy file (np.save)."),
    ("gpt2.keras --method wanda --sparsity 0.5 --calibration ids_only.npz", 2,
     "--calibration ids_only.npz holds ['token_ids']; the model takes a dict "
     "of ['padding_mask', 'token_ids']. Save its inputs under those names in "
     "a .npz file (np.savez(FILE, name=array, ...))."),
    ("gpt2.keras --method sparsegpt --sparsity 0.5 --calibration x.npy", 2,
     "--calibration x.npy holds one array; the model takes a dict of "
     "['padding_mask', 'token_ids']. Save its inputs under those names in a "
     ".npz file (np.savez(FILE, name=array, ...))."),
    ("mlp.keras --method wanda --pattern 4:4 --calibration x.npy", 2,
     "argument --pattern: '4:4' is not an M:N pattern: give M zeros in every "
     "N consecutive weights with 0 < M < N, e.g. 2:4 or 4:8"),
    ("mlp.keras --method magnitude --pattern 2-4", 2,
     "argument --pattern: '2-4' is not an M:N pattern: give M zeros in every "
     "N consecutive weights with 0 < M < N, e.g. 2:4 or 4:8"),
    ("mlp.keras --method wanda --sparsity 0.5 --pattern 2:4 --calibration "
     "x.npy", 2,
     "--sparsity 0.5 and --pattern 2:4 both set how much is pruned; give one "
     "(--pattern 2:4 prunes 0.5)."),
    ("mlp.keras --method wanda --calibration x.npy", 2,
     "give --sparsity FRACTION (e.g. 0.5, of every output row) or --pattern "
     "M:N (e.g. 2:4)."),
    ("mlp.keras --method magnitude --sparsity 1", 2,
     "--sparsity must be in [0, 1), got 1.0: it is the fraction of every "
     "output row's weights set to zero, e.g. 0.5."),
    ("mlp.keras --method wanda --sparsity 0.5", 2,
     "--method wanda scores with the layers' inputs: pass --calibration FILE "
     "(.npy or .npz of the model's inputs), or use --method magnitude."),
    ("mlp.keras --method magnitude --sparsity 0.5 --calibration x.npy", 2,
     "--calibration is for --method wanda or sparsegpt; --method magnitude "
     "needs only the weights: leave it out."),
    ("mlp.keras --method magnitude --sparsity 0.5 --batch-size 8", 2,
     "--batch-size is for --method wanda or sparsegpt; --method magnitude "
     "needs only the weights: leave it out."),
    ("mlp.keras --method wanda --sparsity 0.5 --calibration x.npy "
     "--no-sequential", 2,
     "--no-sequential is an option of --method sparsegpt, not of --method "
     "wanda: leave it out."),
    ("mlp.keras --method sparsegpt --sparsity 0.5 --calibration x.npy "
     "--damping -1", 2,
     "--damping must be a finite number >= 0, got -1.0; 0.01 (1 % of the "
     "mean diagonal) is the paper's."),
    ("mlp.keras --method sparsegpt --sparsity 0.5 --calibration x.npy "
     "--block-size 0", 2,
     "--block-size must be a positive integer, got 0; 128 is the paper's."),
    ("mlp.keras --method wanda --sparsity 0.5 --calibration x.npy "
     "--batch-size 0", 2,
     "--batch-size must be a positive number of samples, got 0; e.g. 32."),
    ("mlp.keras --method wanda --sparsity 0.5 --calibration x.npy "
     "--exclude nosuch", 2,
     "--exclude names the layer 'nosuch', which is not in the model. Its "
     "layers are: 'x', 'hidden', 'logits'."),
    ("conv.keras --method wanda --sparsity 0.5 --calibration images.npy", 1,
     "conv.keras has nothing to prune: none of its layers is a Dense or "
     "EinsumDense layer with a prunable kernel, the layers --method wanda "
     "prunes (`keras-prune report conv.keras` gives each weight's reason)."),
    ("mlp.keras --method magnitude --sparsity 0.5 --exclude hidden logits", 1,
     "mlp.keras has nothing to prune: none of its layers outside --exclude "
     "holds a weight keras-prune prunes (`keras-prune report mlp.keras` "
     "gives each weight's reason)."),
]


def test_too_few_rows_for_sparsegpt_is_one_warning_line(files, tmp_path):
    """10 rows for 16 inputs: pruned (dampened), and stderr says which
    layers, in the command's words."""
    status, _, err = run([files / "mlp.keras", "--method", "sparsegpt",
                          "--sparsity", "0.5",
                          "--calibration", files / "few.npy",
                          "-o", tmp_path / "out.keras"])
    assert status == 0 and (tmp_path / "out.keras").exists()
    warned = [line for line in err.splitlines() if "warning" in line]
    assert warned == [
        "warning: sparsegpt: 2 layer(s) saw fewer calibration rows (samples "
        "x tokens) than input features: 'hidden' (10 rows < 16 features), "
        "'logits' (10 rows < 16 features); their X^T X is rank-deficient "
        "and only damping=0.01 makes it invertible, so their weight "
        "updates fit the calibration data closely. Pass at least 16 rows "
        f"of --calibration {files / 'few.npy'} for a full-rank estimate."]


@pytest.mark.parametrize("line,status,message", BAD)
def test_bad_input_is_one_clear_error_and_writes_nothing(
        files, tmp_path, monkeypatch, request, line, status, message):
    if line.startswith("gpt2"):
        request.getfixturevalue("backbone")
    monkeypatch.chdir(files)
    before = {p.name: digest(p) for p in files.iterdir()}
    code, out, err = run(line.split()[:1] + ["-o", tmp_path / "out.keras"]
                         + line.split()[1:])
    assert (code, err.splitlines()[-1]) == (
        status, f"keras-prune oneshot: error: {message}")
    assert "Traceback" not in err and out == ""
    # Nothing written (no output, no scratch folder), no input changed.
    assert list(tmp_path.iterdir()) == []
    assert {p.name: digest(p) for p in files.iterdir()} == before


def test_an_existing_output_is_kept_without_force(files, tmp_path):
    output = tmp_path / "pruned.keras"
    output.write_bytes(b"keep me")
    argv = [files / "mlp.keras", "-o", output, "--method", "magnitude",
            "--sparsity", "0.5"]
    status, _, err = run(argv)
    assert status == 1
    assert err.splitlines()[-1] == (
        f"keras-prune oneshot: error: {output} exists; pass --force to "
        "overwrite it.")
    assert output.read_bytes() == b"keep me"
    status, _, err = run(argv + ["--force"])
    assert status == 0, err
    assert keras.saving.load_model(output)


def test_json_holds_the_report_and_the_reconstruction(files, tmp_path):
    output = tmp_path / "pruned.keras"
    status, out, err = run([files / "mlp.keras", "-o", output, "--method",
                            "wanda", "--sparsity", "0.5", "--calibration",
                            files / "x.npy", "--json"])
    assert status == 0, err
    found = json.loads(out)
    assert found["totals"]["prunable_zeros"] == 192
    layers = found["reconstruction"]["layers"]
    assert [r["path"] for r in layers] == ["hidden/kernel", "logits/kernel"]
    for r in layers:
        assert r["sparsity"] == 0.5 and r["rows"] == 64
        assert r["error"] == pytest.approx(r["squared_error"] / r["reference"])
    status, out, _ = run([files / "mlp.keras", "-o", output, "--force",
                          "--method", "magnitude", "--sparsity", "0.5",
                          "--json"])
    assert status == 0 and json.loads(out)["reconstruction"] is None
