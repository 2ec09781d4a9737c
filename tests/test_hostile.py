"""Hostile input: what used to give a silently wrong result now gives a
clear one-line error naming the value and the fix, before any work, with
the user's model unchanged."""

import os
import subprocess
import sys
import tempfile

import hypothesis
import keras
import numpy as np
import pytest
from hypothesis import strategies as st

import keras_prune
from keras_prune import criteria
from keras_prune.structured import apply_plan
from keras_prune.structured import plan_pruning
from tests.conftest import numpy

L = keras.layers


def mlp(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((8,)),
        L.Dense(12, activation="relu", name="a"),
        L.Dropout(0.1, name="drop"),
        L.Dense(4, name="b"),
    ])


def weights_of(model):
    return [numpy(w).copy() for w in model.weights]


def unchanged(model, before):
    return all(np.array_equal(numpy(w), b)
               for w, b in zip(model.weights, before))


@criteria.register("some_nan", replace=True)
class SomeNaN(criteria.Criterion):
    """|w| with three NaN scores in the first kernel (a broken criterion)."""

    def score(self, layer, variable, weights, context):
        scores = np.abs(weights).astype("float32")
        if layer.name == "a" and "kernel" in variable.path:
            scores.reshape(-1)[:3] = np.nan
        return scores


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_non_finite_scores_are_refused_with_the_layer_and_count(scope):
    # Before: NaN compares false, so a 50 % request pruned 100 % of the
    # kernel (or, ranked globally, gave a wrong total).
    model = mlp()
    before = weights_of(model)
    with pytest.raises(ValueError, match=(
            r"criterion 'some_nan' returned 3 non-finite score\(s\) \(NaN "
            r"or inf\) of 96 for 'a/kernel'")):
        keras_prune.prune_now(model, 0.5, scope=scope, criterion="some_nan")
    assert unchanged(model, before)


def test_diverged_weights_are_refused_not_pruned():
    model = mlp()
    kernel = numpy(model.get_layer("b").kernel).copy()
    kernel[0, 0] = np.inf
    model.get_layer("b").kernel.assign(kernel)
    with pytest.raises(ValueError, match=r"returned 1 non-finite score\(s\) "
                       r".* for 'b/kernel'.*diverged training gives NaN"):
        keras_prune.prune_now(model, 0.5)


def test_structured_planning_refuses_a_wrapped_model():
    # Before: an empty plan and an unchanged copy, while the CLI refused.
    pruned = keras_prune.prune_low_magnitude(
        mlp(), pruning_schedule=keras_prune.ConstantSparsity(0.5, 0))
    message = (r"Model '.*' holds pruning wrappers \(2 PruneLowMagnitude "
               r"layers, e.g. 'prune_low_magnitude_a'\): structured pruning "
               r"reads plain layers. Call keras_prune.strip_pruning\(model\) "
               r"first")
    with pytest.raises(ValueError, match=message):
        plan_pruning(pruned, 0.5)
    plan = plan_pruning(mlp(), 0.5)
    with pytest.raises(ValueError, match=message):
        apply_plan(pruned, plan)
    with pytest.raises(ValueError, match=message):
        keras_prune.channel_groups(pruned)
    # Stripped, it plans as any model.
    stripped = keras_prune.strip_pruning(pruned)
    assert plan_pruning(stripped, 0.5).kept() == plan.kept()


@pytest.mark.parametrize("step", [1.5, True, False, -3, "3", None, [1],
                                  np.float32(2.0)])
def test_update_masks_refuses_a_step_that_is_not_a_count(step):
    pruned = keras_prune.prune_low_magnitude(
        mlp(), pruning_schedule=keras_prune.ConstantSparsity(0.5, 0))
    before = weights_of(pruned)
    with pytest.raises(ValueError, match=(
            r"step must be a non-negative integer \(the optimizer's "
            r"iteration count before this step, e.g. "
            r"int\(optimizer.iterations\)\), got ")):
        keras_prune.update_masks(pruned, step)
    assert unchanged(pruned, before)


def test_update_masks_takes_the_optimizer_iterations_as_they_are():
    pruned = keras_prune.prune_low_magnitude(
        mlp(), pruning_schedule=keras_prune.ConstantSparsity(0.5, 0))
    pruned.compile("adam", "mse")
    changed = keras_prune.update_masks(pruned, pruned.optimizer.iterations)
    assert len(changed) == 2
    assert keras_prune.update_masks(pruned, np.int64(1)) == []
    kernel = numpy(pruned.get_layer("prune_low_magnitude_a").layer.kernel)
    assert np.count_nonzero(kernel == 0) == 48


def test_finalize_pruning_on_an_unpruned_model_says_so():
    with pytest.raises(ValueError, match=(
            r"finalize_pruning: '.*' contains no pruned layers: it applies "
            r"to a model wrapped with keras_prune.prune_low_magnitude\(\)")):
        keras_prune.finalize_pruning(mlp())


def test_per_layer_naming_a_layer_with_nothing_to_prune():
    # Before: the entry was ignored, and the user believed "drop" pruned.
    model = mlp()
    with pytest.raises(ValueError, match=(
            r"per_layer names the layer 'drop' \(Dropout\), which has "
            r"nothing to prune: keras_prune has no pruning rule for its "
            r"class. Remove the entry")):
        keras_prune.prune_low_magnitude(model, per_layer={"drop": 0.5})
    with pytest.raises(ValueError, match="per_layer names the layer 'drop'"):
        keras_prune.prune_now(model, 0.5, per_layer={"drop": 0.9})
    # Excluding it stays harmless, and a prunable name still works.
    pruned = keras_prune.prune_low_magnitude(
        model, exclude=["drop"], per_layer={"a": 0.3})
    assert len(pruned.layers) == 3


# ---- tfmot code that must run unchanged ------------------------------------


def test_an_unbuilt_sequential_is_pruned_as_tfmot_users_write_it():
    model = keras.Sequential([
        L.Conv2D(4, 3, name="conv"), L.MaxPooling2D(), L.Flatten(),
        L.Dropout(0.1), L.Dense(10, name="logits")])
    pruned = keras_prune.prune_low_magnitude(
        model, pruning_schedule=keras_prune.PolynomialDecay(
            0.0, 0.5, 0, 2, frequency=1))
    assert not model.built  # the input is untouched
    assert [type(l).__name__ for l in pruned.layers] == [
        "PruneLowMagnitude", "MaxPooling2D", "Flatten", "Dropout",
        "PruneLowMagnitude"]
    rng = np.random.default_rng(0)
    x = rng.random((16, 10, 10, 1)).astype("float32")
    y = rng.integers(0, 10, 16)
    pruned.compile("adam", "sparse_categorical_crossentropy")
    pruned.fit(x, y, epochs=3, batch_size=8, verbose=0,
               callbacks=[keras_prune.UpdatePruningStep()])
    final = keras_prune.strip_pruning(pruned)
    kernels = {l.name: numpy(l.kernel) for l in final.layers
               if hasattr(l, "kernel")}
    assert {k: int(np.count_nonzero(v == 0)) for k, v in kernels.items()} == {
        "conv": 18, "logits": 320}


def test_layers_with_nothing_to_prune_are_accepted_and_left_alone():
    dense, pool, dropout = L.Dense(3), L.MaxPooling2D(), L.Dropout(0.2)
    wrapped = keras_prune.prune_low_magnitude([dense, pool, dropout])
    assert isinstance(wrapped[0], keras_prune.PruneLowMagnitude)
    assert wrapped[1] is pool and wrapped[2] is dropout
    flatten = L.Flatten()
    assert keras_prune.prune_low_magnitude(flatten) is flatten


def test_a_model_holding_a_pruned_layer_keeps_it_and_prunes_the_rest():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    first = keras_prune.prune_low_magnitude(
        L.Dense(12, name="a"),
        pruning_schedule=keras_prune.ConstantSparsity(0.75, 0))
    x = L.Dropout(0.1)(first(inputs))
    model = keras.Model(inputs, L.Dense(4, name="b")(x))
    with pytest.warns(UserWarning, match=(
            r"already holds 1 pruned layer\(s\) \('prune_low_magnitude_a'\): "
            r"kept as they are")):
        pruned = keras_prune.prune_low_magnitude(
            model, pruning_schedule=keras_prune.ConstantSparsity(0.5, 0))
    pruned.compile("adam", "mse")
    pruned.fit(np.ones((8, 8), "float32"), np.ones((8, 4), "float32"),
               verbose=0, callbacks=[keras_prune.UpdatePruningStep()])
    final = keras_prune.strip_pruning(pruned)
    zeros = {l.name: float(np.mean(numpy(l.kernel) == 0))
             for l in final.layers if hasattr(l, "kernel")}
    assert zeros == {"a": 0.75, "b": 0.5}


@pytest.mark.parametrize("m_by_n", [(2.0, 4.0), (2, 4.0), (True, 4),
                                    ("2", "4"), (2, 4, 8), 2])
def test_sparsity_m_by_n_must_be_two_integers(m_by_n):
    with pytest.raises(ValueError, match=(
            r"sparsity_m_by_n must be \(m, n\) with 0 < m < n: m zeros in "
            r"every n consecutive weights, e.g. \(2, 4\); got ")):
        keras_prune.prune_low_magnitude(mlp(), sparsity_m_by_n=m_by_n)


@pytest.mark.parametrize("log_dir", [None, "", object(), 3])
def test_pruning_summaries_needs_a_directory(log_dir):
    with pytest.raises(ValueError, match=(
            r"log_dir must be the directory the TensorBoard summaries go to "
            r"\(a non-empty str or os.PathLike, e.g. 'logs/pruning'\), got ")):
        keras_prune.PruningSummaries(log_dir=log_dir)


# ---- clear errors instead of tracebacks ------------------------------------


@pytest.mark.parametrize("plan", [None, "plan.json", {"groups": []}])
def test_a_plan_that_is_not_a_plan(plan):
    model = mlp()
    for call, name in ((apply_plan, "apply_plan"),
                       (keras_prune.structured.zeroed_reference,
                        "zeroed_reference")):
        with pytest.raises(ValueError, match=(
                rf"{name}: plan must be a PruningPlan \(from plan_pruning, "
                rf"or PruningPlan.from_json\(path\) for a saved one\), got "
                rf"{type(plan).__name__}: ")):
            call(model, plan)
    with pytest.raises(ValueError, match="verify: plan must be a"):
        keras_prune.structured.verify(model, plan, np.ones((2, 8)))


@pytest.mark.parametrize("model", [[1, 2], "model.keras", None,
                                   L.Dense(3)])
def test_prune_now_on_what_is_not_a_model(model):
    with pytest.raises(ValueError, match=(
            r"prune_now expects a built keras Model, got \w+: ")):
        keras_prune.prune_now(model, 0.5)


def test_prune_now_on_an_unbuilt_model():
    with pytest.raises(ValueError, match=(
            r"prune_now: model '.*' is not built \(it has no weights yet\): "
            r"give it an Input, or call it on data, first.")):
        keras_prune.prune_now(keras.Sequential([L.Dense(3)]), 0.5)


# ---- packed files: paths first, damaged files in one line ------------------


@pytest.fixture(scope="module")
def packed_file(tmp_path_factory):
    """A small pruned model saved packed, and its bytes."""
    model, _ = keras_prune.prune_now(mlp(), 0.5)
    path = tmp_path_factory.mktemp("packed") / "m.kpack"
    keras_prune.save_packed(keras_prune.strip_pruning(model), path)
    return path, path.read_bytes()


def test_save_packed_checks_the_path_before_any_work(tmp_path):
    model = mlp()
    cases = [
        (123, TypeError, r"save_packed: path must be a str or os.PathLike, "
                         r"got int: 123."),
        ("", ValueError, r"save_packed: path is empty"),
        (tmp_path, ValueError, r"save_packed: '.*' is a directory; give a "
                               r"file path, e.g. '.*model.kpack'."),
        (tmp_path / "missing" / "m.kpack", FileNotFoundError,
         r"save_packed: the directory '.*missing' does not exist; create it "
         r"first"),
    ]
    for path, kind, message in cases:
        with pytest.raises(kind, match=message):
            keras_prune.save_packed(model, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_load_packed_names_a_missing_file(tmp_path):
    missing = tmp_path / "nope.kpack"
    with pytest.raises(FileNotFoundError, match=(
            r"load_packed: no such file: '.*nope.kpack'.")):
        keras_prune.load_packed(missing)
    with pytest.raises(FileNotFoundError, match="is not a file"):
        keras_prune.load_packed(tmp_path)


def _load_or_one_line_error(path):
    try:
        return keras_prune.load_packed(path)
    except ValueError as error:
        text = str(error)
        assert text.startswith("load_packed: ") and "\n" not in text, text
        return None


@hypothesis.settings(max_examples=60, deadline=None, derandomize=True)
@hypothesis.given(edits=st.lists(st.tuples(st.integers(0, 10**6),
                                           st.integers(0, 255)),
                                 min_size=1, max_size=8),
                  cut=st.one_of(st.none(), st.integers(0, 10**6)))
def test_a_damaged_packed_file_gives_one_clear_error(
        packed_file, tmp_path_factory, edits, cut):
    source, data = packed_file
    data = bytearray(data)
    for where, value in edits:
        data[where % len(data)] = value
    if cut is not None:
        data = data[: cut % len(data)]
    path = tmp_path_factory.mktemp("damaged") / "d.kpack"
    path.write_bytes(bytes(data))
    loaded = _load_or_one_line_error(path)
    if loaded is not None:  # a byte the format does not read (zip padding)
        assert [tuple(w.shape) for w in loaded.weights] == [
            tuple(w.shape) for w in mlp().weights]
    assert source.read_bytes() == bytes(packed_file[1])  # input unchanged


# ---- the command line: outputs checked first, nothing left behind ---------


def _finished_pid():
    """The pid of a process that has exited (free again)."""
    return subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "m.keras"
    mlp().save(path)
    return str(path)


def test_an_output_directory_that_cannot_be_written_is_refused_first(
        model_file, capsys):
    from keras_prune import cli

    try:  # /sys takes no new files, even from root
        with tempfile.TemporaryFile(dir="/sys"):
            pytest.skip("/sys is writable here")
    except OSError:
        pass
    status = cli.main(["prune", model_file, "-o", "/sys/out.keras",
                       "--sparsity", "0.5"])
    err = capsys.readouterr().err
    assert status == 1
    assert err.strip().splitlines() == [
        "keras-prune prune: error: cannot write /sys/out.keras: the "
        "directory /sys cannot be written (Permission denied); choose "
        "another output."]


def test_stale_scratch_of_a_killed_run_is_removed(model_file, tmp_path):
    from keras_prune import cli

    # A killed run (SIGKILL) left its scratch folder; a finished process's
    # pid is free again. A live process's folder stays.
    dead = _finished_pid()
    stale = tmp_path / f".keras-prune-{dead}-abc123"
    stale.mkdir()
    (stale / "out.keras").write_bytes(b"x" * 1000)
    live = tmp_path / f".keras-prune-{os.getppid()}-def456"
    live.mkdir()
    out = tmp_path / "out.keras"
    assert cli.main(["prune", model_file, "-o", str(out), "--sparsity",
                     "0.5"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name,
                                                          "out.keras"]


def test_sigterm_while_writing_removes_the_partial_file(model_file,
                                                        tmp_path):
    # The writer is slow and gets SIGTERM from `timeout` mid-write: the
    # scratch folder goes, the output is not created, exit 143.
    script = tmp_path / "slow.py"
    script.write_text(
        "import os, signal, sys, time\n"
        "from keras_prune.cli import common\n"
        "def write(path):\n"
        "    open(path, 'wb').write(b'x' * 100000)\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(30)\n"
        "from keras_prune.cli import app\n"
        "try:\n"
        "    common.write_atomically(sys.argv[1], write)\n"
        "except common.Terminated:\n"
        "    sys.exit(143)\n")
    out = tmp_path / "out" / "m.keras"
    out.parent.mkdir()
    done = subprocess.run([sys.executable, str(script), str(out)],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, KERAS_BACKEND=(
                              keras.backend.backend())))
    assert done.returncode == 143, done.stderr
    assert list(out.parent.iterdir()) == []


def test_save_packed_removes_the_temp_file_of_a_killed_save(tmp_path):
    dead = _finished_pid()
    stale = tmp_path / f".m.kpack.{dead}-x1y2.tmp"
    stale.write_bytes(b"partial")
    other = tmp_path / ".notes.txt.1-x.tmp"  # not ours: kept
    other.write_bytes(b"")
    keras_prune.save_packed(mlp(), tmp_path / "m.kpack")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        other.name, "m.kpack"]


# ---- bounded memory and time -----------------------------------------------


def test_a_preview_of_absurdly_many_steps_is_refused_with_the_limit(capsys):
    from keras_prune import cli
    from keras_prune.analysis.preview import MAX_STEPS

    with pytest.raises(ValueError, match=(
            r"steps=1,000,000,000,000 is more than a preview holds "
            r"\(2,000,000: it keeps the sparsity of every step\)")):
        keras_prune.preview(keras_prune.ConstantSparsity(0.5, 0), 10**12)
    assert keras_prune.preview(
        keras_prune.ConstantSparsity(0.5, 0, frequency=1000),
        MAX_STEPS).updates[-1] == (1_999_000, 0.5)
    status = cli.main(["schedule", "constant", "--steps", str(10**12),
                       "--frequency", "1"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.splitlines()[-1] == (
        "keras-prune schedule: error: steps=1,000,000,000,000 is more than "
        "a preview holds (2,000,000: it keeps the sparsity of every step); "
        "preview the first 2,000,000 steps, or a schedule with a shorter "
        "end_step and a larger frequency.")


def test_a_keras_file_declaring_a_huge_config_is_refused_before_reading(
        tmp_path, capsys):
    import zipfile

    from keras_prune import cli

    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("metadata.json", "{}")
        archive.writestr("config.json", b"{" + b" " * 70_000_000 + b"}")
    assert path.stat().st_size < 100_000
    assert cli.main(["report", str(path)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"keras-prune report: error: cannot load {path}: its member "
        "config.json declares 70,000,002 bytes, more than a model's config "
        "holds (damaged or not a Keras model)."]


def test_keras_load_errors_come_in_one_line(tmp_path, capsys):
    import zipfile

    from keras_prune import cli

    path = tmp_path / "empty.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", "{}")
        archive.writestr("config.json", '{"class_name": "Nope"}')
    assert cli.main(["report", str(path)]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"keras-prune report: error: cannot load {path}: ")


def test_structured_pruning_of_a_quantized_model_is_refused_first():
    model = keras.Sequential([keras.Input((8,)), L.Dense(16, name="h"),
                              L.Dense(4, name="o")])
    with pytest.warns(UserWarning):  # Keras: InputLayer has no quantize
        model.quantize("int8")
    with pytest.raises(ValueError, match=(
            r"holds layers quantized by Keras \('h' \(int8\), 'o' \(int8\)\): "
            r"structured pruning slices float kernels. Plan and apply on "
            r"the float model, then quantize the smaller one")):
        plan_pruning(model, 0.5)


def test_a_recurrent_layer_is_left_whole_and_the_rest_applies():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5, 4))
    x = L.Dense(6, name="in")(inputs)
    x = L.LSTM(8, name="lstm", return_sequences=True)(x)
    x = L.Dense(16, activation="relu", name="h")(x)
    model = keras.Model(inputs, L.Dense(3, name="o")(x))
    plan = plan_pruning(model, 0.5)
    assert [row[:2] for row in plan.left_whole] == [["lstm", "LSTM"]]
    kept = {g["name"]: sum(g["keep"]) for g in plan.groups}
    assert kept == {"in": 6, "h": 8, "o": 3}
    small = apply_plan(model, plan)
    x = np.random.default_rng(0).random((2, 5, 4)).astype("float32")
    assert keras_prune.structured.verify(model, plan, x, small) <= 1e-5


def test_prune_a_model_with_nothing_to_prune_is_a_failure_not_usage(
        tmp_path, capsys):
    from keras_prune import cli

    path = tmp_path / "nothing.keras"
    keras.Sequential([keras.Input((8,)), L.BatchNormalization(),
                      L.Dropout(0.1)]).save(path)
    out = tmp_path / "out.keras"
    assert cli.main(["prune", str(path), "-o", str(out), "--sparsity",
                     "0.5"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"keras-prune prune: error: {path} has nothing to prune: none of its "
        "layers holds a weight keras-prune prunes (`keras-prune report "
        f"{path}` gives each weight's reason)."]
    assert not out.exists()


def test_prune_cli_advice_names_cli_options(model_file, tmp_path, capsys):
    from keras_prune import cli

    out = tmp_path / "out.keras"
    status = cli.main(["prune", model_file, "-o", str(out), "--sparsity",
                       "0.5", "--exclude", "a", "b"])
    err = capsys.readouterr().err
    assert status == 2
    assert "Check --exclude, or use --scope layer." in err
    assert "scope='layer'" not in err


@pytest.mark.parametrize("data, message", [
    ((np.zeros((0, 8), "float32"), np.zeros((0,), "int32")),
     r"data has no samples \(x has shape \(0, 8\)\)"),
    ((np.zeros((4, 8), "float32"), np.zeros((3,), "int32")),
     r"data's x has 4 samples but y has 3"),
    ((np.zeros((4, 5), "float32"), np.zeros((4,), "int32")),
     r"data's x has samples of shape \(5,\), but model '.*' takes \(8,\)"),
])
def test_sensitivity_analysis_names_bad_data(data, message):
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    before = weights_of(model)
    with pytest.raises(ValueError, match=message):
        keras_prune.sensitivity_analysis(model, data, sparsities=[0.5])
    assert unchanged(model, before)


def test_a_custom_layer_without_a_config_is_copied_as_an_object():
    class Scale(L.Layer):  # no get_config, a constructor argument
        def __init__(self, factor):
            super().__init__()
            self.factor = factor
            self.inner = L.Dense(4, name="inner")

        def call(self, x):
            return self.inner(x) * self.factor

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    model = keras.Model(inputs, L.Dense(2, name="o")(Scale(2.0)(inputs)))
    with pytest.warns(UserWarning, match=(
            r"Scale 'scale\w*' does not rebuild from its config .*: copied "
            r"as an object. The pruned model is that copy \(the model you "
            r"passed is not modified\); inplace=True wraps the model's own "
            r"layers instead.")):
        pruned = keras_prune.prune_low_magnitude(model)
    assert len(keras_prune.core.layers.pruned_layers(pruned)) == 2
    x = np.ones((2, 8), "float32")
    np.testing.assert_allclose(numpy(pruned(x)), numpy(model(x)), atol=1e-6)
