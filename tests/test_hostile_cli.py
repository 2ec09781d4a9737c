"""Hostile input through the command line: mutated `.keras` files and
absurd option values. Whatever comes in, a command ends with a result or
one clear error line (exit 1 for a failure, 2 for a usage error), in
bounded time, with its input unchanged and nothing left beside the output.
"""

import argparse
import contextlib
import hashlib
import io
import json
import os
import tempfile
import time
import zipfile

import hypothesis
import keras
import pytest
from hypothesis import strategies as st

import keras_prune
from keras_prune import cli
from keras_prune.cli import app

L = keras.layers
# A command on these tiny models takes well under a second; this is the
# bound a hostile file or value must not push it past.
SECONDS = 30
# One command's error line: "keras-prune NAME: error: ...".
ERROR = ": error: "


def small_cnn():
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((8, 8, 1)),  # the digits' 64 values fit it
        L.Conv2D(4, 3, name="conv"),
        L.BatchNormalization(name="bn"),
        L.ReLU(),
        L.Flatten(),
        L.Dense(12, activation="relu", name="hidden"),
        L.Dropout(0.1),
        L.Dense(10, name="logits"),
    ])


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A dense and a pruned (wrapped) model file, and their members."""
    folder = tmp_path_factory.mktemp("hostile_cli")
    dense = str(folder / "dense.keras")
    small_cnn().save(dense)
    pruned = str(folder / "pruned.keras")
    keras_prune.prune_low_magnitude(
        small_cnn(),
        pruning_schedule=keras_prune.ConstantSparsity(0.5, 0)).save(pruned)
    members = {}
    for name, path in (("dense", dense), ("pruned", pruned)):
        with zipfile.ZipFile(path) as archive:
            members[name] = {i.filename: archive.read(i.filename)
                             for i in archive.infolist()}
    return {"dense": dense, "pruned": pruned, "members": members}


def digest(path):
    with open(path, "rb") as file:
        return hashlib.sha256(file.read()).hexdigest()


def run_cli(argv):
    """(status, stderr, seconds) of `keras-prune argv`, in-process; an
    exception escaping main() fails the test with its traceback."""
    err, out = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        status = cli.main(argv)
    return status, err.getvalue(), time.perf_counter() - start


def assert_clean_outcome(argv, status, stderr, seconds):
    assert seconds < SECONDS, (argv, seconds)
    assert "Traceback" not in stderr, (argv, stderr)
    if status == 0:
        return
    assert status in (1, 2), (argv, status, stderr)
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if ERROR in line]
    # One error line, the last one: Python warnings may come before it,
    # and a usage error's usage text does.
    assert len(errors) == 1 and errors[0] == lines[-1], (argv, stderr)
    assert errors[0].startswith(f"keras-prune {argv[0]}{ERROR}"), errors


# ---- mutated .keras files -------------------------------------------------

# What a damaged or hostile config may hold in place of a value.
ODD_VALUES = st.sampled_from([
    None, True, 0, -1, 1.5, 10**9, 2**63, "", "x", "relu", [], {}, [1, 2],
    {"class_name": "Dense"}, -0.0, 1e308,
])


@st.composite
def mutated_members(draw, members):
    """A .keras file's members with one kind of damage drawn: values in
    config.json replaced or deleted, bytes of the weights changed, a
    member truncated or missing, or an unknown member added."""
    members = dict(members)
    kind = draw(st.sampled_from(["config", "config", "weights", "member",
                                 "extra"]))
    if kind == "config":
        config = json.loads(members["config.json"])
        for _ in range(draw(st.integers(1, 3))):
            places = list(_places(config))
            parent, key = draw(st.sampled_from(places))
            if draw(st.booleans()) and isinstance(parent, dict):
                del parent[key]
            else:
                parent[key] = draw(ODD_VALUES)
        members["config.json"] = json.dumps(config).encode()
    elif kind == "weights":
        data = bytearray(members["model.weights.h5"])
        for offset, byte in draw(st.lists(
                st.tuples(st.integers(0, len(data) - 1),
                          st.integers(0, 255)), min_size=1, max_size=8)):
            data[offset] = byte
        members["model.weights.h5"] = bytes(data)
    elif kind == "member":
        name = draw(st.sampled_from(sorted(members)))
        if draw(st.booleans()):
            del members[name]
        else:
            members[name] = members[name][
                :draw(st.integers(0, len(members[name]) - 1))]
    else:
        members[draw(st.sampled_from(["assets/x.txt", "other.json",
                                      "../escape.txt"]))] = b"{}"
    return members


def _places(config):
    """Every (container, key) in a JSON document."""
    stack = [config]
    while stack:
        node = stack.pop()
        keys = (node.keys() if isinstance(node, dict)
                else range(len(node)) if isinstance(node, list) else ())
        for key in keys:
            yield node, key
            stack.append(node[key])


@pytest.mark.parametrize("base,commands", [
    ("dense", ("report", "prune", "shrink")),
    ("pruned", ("report", "strip")),
])
@pytest.mark.filterwarnings("ignore:Skipping invalid path")
def test_a_mutated_keras_file_gives_a_result_or_one_clear_error(
        saved, base, commands):
    outcomes = set()

    @hypothesis.settings(max_examples=50, deadline=None, derandomize=True,
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(members=mutated_members(saved["members"][base]))
    def check(members):
        with tempfile.TemporaryDirectory() as folder:
            source = os.path.join(folder, "in.keras")
            with zipfile.ZipFile(source, "w", zipfile.ZIP_DEFLATED) as z:
                for name, data in members.items():
                    z.writestr(name, data)
            before = digest(source)
            for command in commands:
                output = os.path.join(folder, f"{command}.keras")
                argv = {
                    "report": ["report", source],
                    "prune": ["prune", source, "-o", output,
                              "--sparsity", "0.5"],
                    "shrink": ["shrink", source, "-o", output, "--ratio",
                               "0.5"],
                    "strip": ["strip", source, "-o", output],
                }[command]
                status, stderr, seconds = run_cli(argv)
                outcomes.add((command, status))
                assert_clean_outcome(argv, status, stderr, seconds)
                assert status != 2, (argv, stderr)  # a file is not usage
                if status == 0 and command != "report":
                    keras.saving.load_model(output)  # a whole model
                assert digest(source) == before
                assert set(os.listdir(folder)) <= {
                    "in.keras", f"{command}.keras", "report.keras",
                    "prune.keras", "shrink.keras", "strip.keras"}
                assert os.path.exists(output) == (
                    status == 0 and command != "report")

    check()
    # Damage refused at loading and damage the commands ran through.
    assert outcomes == {(c, s) for c in commands for s in (0, 1)}


def test_the_fuzzed_files_reach_past_loading(saved):
    # The mutations are not all refused at the door: some load, and the
    # commands then run on them (so the test covers more than load errors).
    members = dict(saved["members"]["dense"])
    config = json.loads(members["config.json"])
    hidden = next(layer for layer in config["config"]["layers"]
                  if layer["config"].get("name") == "hidden")
    hidden["config"]["activation"] = "tanh"  # a valid, different value
    members["config.json"] = json.dumps(config).encode()
    with tempfile.TemporaryDirectory() as folder:
        source = os.path.join(folder, "in.keras")
        with zipfile.ZipFile(source, "w") as archive:
            for name, data in members.items():
                archive.writestr(name, data)
        output = os.path.join(folder, "out.keras")
        argv = ["prune", source, "-o", output, "--sparsity", "0.5"]
        assert run_cli(argv)[0] == 0
        model = keras.saving.load_model(output)
        assert model.get_layer("hidden").activation.__name__ == "tanh"


# ---- absurd option values -------------------------------------------------

ABSURD = ["nan", "inf", "-inf", "-1", "0", "-0", "1e308", "1e-320",
          "99999999999999999999", "2147483648", "1.5", "abc", "", " ", "-", "2:4", "0:0",
          "4:2", "3:", "0x10", "None", "é", "a" * 300, "/", "/dev/null",
          "/nonexistent/x.keras", "[]"]
PLAUSIBLE = {int: ["1", "2", "8"], float: ["0.25", "0.5", "0.9"]}
# Options naming files: what a user would give.
FILES = {"--output": "out.keras", "--plot": "out.png",
         "--save-plan": "plan.json"}
# Commands of the suite (demo trains for minutes; its options are tested in
# tests/test_cli.py).
COMMANDS = ["report", "schedule", "prune", "strip", "shrink", "compare"]


def _subparsers():
    parser = app.build_parser()
    action = next(a for a in parser._actions
                  if isinstance(a, argparse._SubParsersAction))
    return action.choices


def _plausible(action, folder):
    """Values a user would give this option: its choices, a file in
    `folder`, or numbers of its type and its default."""
    if action.choices:
        return st.sampled_from(sorted(map(str, action.choices)))
    option = action.option_strings[-1]
    if option in FILES:
        return st.just(os.path.join(folder, FILES[option]))
    values = list(PLAUSIBLE.get(action.type, ["1", "0.5"]))
    if action.default not in (None, False, True, argparse.SUPPRESS):
        values.append(str(action.default))
    return st.sampled_from(values)


@st.composite
def command_lines(draw, models, folder):
    """A command line of one command: its options drawn at random, each
    value plausible or absurd; positionals a model file or anything."""
    name = draw(st.sampled_from(COMMANDS))
    argv = [name]
    # How often a value is absurd, in tenths: some command lines are all
    # plausible (and run), others mostly absurd.
    rate = draw(st.sampled_from([0, 1, 3, 6]))
    # How many options are given, in tenths of those the command has.
    given = draw(st.sampled_from([0, 1, 2, 4]))
    absurd = st.sampled_from(ABSURD)

    def value(good):
        return draw(absurd if draw(st.integers(0, 9)) < rate else good)

    for action in _subparsers()[name]._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if not action.option_strings:  # a positional
            if action.choices:
                argv.append(value(st.sampled_from(sorted(action.choices))))
            else:
                argv.append(value(st.sampled_from(models)))
            continue
        if not (action.required or draw(st.integers(0, 9)) < given):
            continue
        option = action.option_strings[-1]
        if action.nargs == 0:
            argv.append(option)
            continue
        argv.append(option)
        count = 1 if action.nargs in (None, "?") else draw(st.integers(1, 3))
        for _ in range(count):
            argv.append(value(_plausible(action, folder)))
    return argv


def test_absurd_option_values_give_a_result_or_one_clear_error(
        saved, tmp_path, monkeypatch):
    models = [saved["dense"], saved["pruned"]]
    before = [digest(path) for path in models]
    folder = tmp_path / "out"
    folder.mkdir()
    # Relative names among the absurd values ("None", "2:4") are outputs a
    # command may write: in a working directory of the test's own.
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    outcomes = set()

    @hypothesis.settings(max_examples=150, deadline=None, derandomize=True,
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(argv=command_lines(models, str(folder)))
    def check(argv):
        for written in [*folder.iterdir(), *here.iterdir()]:
            written.unlink()
        status, stderr, seconds = run_cli(argv)
        outcomes.add((argv[0], status))
        assert_clean_outcome(argv, status, stderr, seconds)
        assert {p.name for p in folder.iterdir()} <= set(FILES.values())
        # No scratch folder or temporary file left behind, anywhere.
        assert not [p for p in [*folder.iterdir(), *here.iterdir()]
                    if p.name.startswith(".") or p.is_dir()], argv
        assert [digest(path) for path in models] == before

    check()
    # The values reached past the parser: every command ran with some and
    # refused others; failures and usage errors both came.
    assert {c for c, s in outcomes if s == 0} == set(COMMANDS), outcomes
    assert {c for c, s in outcomes if s != 0} == set(COMMANDS), outcomes
    assert {s for c, s in outcomes} == {0, 1, 2}, outcomes


# ---- bounded time and memory of compare -----------------------------------


def test_compare_refuses_endless_timing_and_huge_batches(saved, capsys):
    dense = saved["dense"]
    status = cli.main(["compare", dense, dense, "--repeats", str(2**31)])
    assert status == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "keras-prune compare: error: --repeats=2,147,483,648 is more than "
        "compare times (10,000 calls per model and batch size; the median "
        "settles within a few hundred): give at most that.")
    # The inputs of a batch are made up before timing: 2**31 samples of
    # 8x8x1 values (float64 while drawn) would be 1 TiB.
    start = time.perf_counter()
    status = cli.main(["compare", dense, dense, "--batch-sizes", "1",
                       str(2**31)])
    assert status == 1 and time.perf_counter() - start < SECONDS
    assert capsys.readouterr().err.splitlines()[-1] == (
        "keras-prune compare: error: batch size 2,147,483,648 needs 1,024.0 "
        f"GiB of random inputs for A: {dense} (512 bytes a sample), more "
        "than the 1 GiB compare allows: time batch sizes up to 2,097,152.")
    with pytest.raises(ValueError, match=r"^repeats=10,001 is more than"):
        keras_prune.compare_models([dense, dense], repeats=10_001)


# ---- what a command says it wrote -------------------------------------------


def test_every_written_model_is_uncompiled_as_the_commands_say(tmp_path):
    # The input was compiled and trained (its file holds Adam's state); the
    # outputs of prune, shrink and strip say "not compiled" and are.
    import numpy as np

    model = small_cnn()
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    model.fit(rng.normal(size=(16, 8, 8, 1)), rng.integers(0, 10, 16),
              verbose=0)
    source = str(tmp_path / "compiled.keras")
    model.save(source)
    pruned = keras_prune.prune_low_magnitude(
        model, pruning_schedule=keras_prune.ConstantSparsity(0.5, 0))
    pruned.compile("adam", "sparse_categorical_crossentropy")
    wrapped = str(tmp_path / "wrapped.keras")
    pruned.save(wrapped)
    for argv in (["prune", source, "--sparsity", "0.5"],
                 ["shrink", source, "--ratio", "0.5"],
                 ["strip", wrapped]):
        output = str(tmp_path / f"{argv[0]}.keras")
        status, stderr, _ = run_cli(argv + ["-o", output])
        assert status == 0, stderr
        assert "not compiled" in stderr, stderr
        with zipfile.ZipFile(output) as archive:
            config = json.loads(archive.read("config.json"))
        assert not config.get("compile_config"), argv[0]
        assert not keras.saving.load_model(output).compiled, argv[0]


def test_a_diverged_model_is_a_failure_of_the_file_not_usage(tmp_path):
    # NaN weights (a diverged training) cannot be ranked: exit 1, one line.
    import numpy as np

    model = small_cnn()
    kernel = model.get_layer("logits").kernel
    kernel.assign(np.full(kernel.shape, np.nan, "float32"))
    source = str(tmp_path / "diverged.keras")
    model.save(source)
    output = str(tmp_path / "out.keras")
    argv = ["prune", source, "-o", output, "--sparsity", "0.5"]
    status, stderr, _ = run_cli(argv)
    assert status == 1
    assert stderr.splitlines() == [
        f"keras-prune prune: error: cannot prune {source}: criterion "
        "'magnitude' returned 120 non-finite score(s) (NaN or inf) of 120 for "
        "'logits/kernel': no mask can rank them. Check the weights (a "
        "diverged training gives NaN) or make the criterion return finite "
        "scores."]
    assert not os.path.exists(output)
