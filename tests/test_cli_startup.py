"""`keras-prune` starts without Keras when it has no command to run, and
keeps TensorFlow's start-up lines off stderr unless asked (`-v`)."""

import os
import subprocess
import sys

import keras
import pytest

import keras_prune_cli
import keras_prune_cli_parsers
from keras_prune.cli import app
from keras_prune.cli import snapshot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAVY = ("keras", "keras_prune", "tensorflow", "jax", "torch")
TF_LINES = ("absl::InitializeLog", "oneDNN custom operations")


def entry(argv, backend=None):
    """`keras-prune argv` through the console script's function, in a fresh
    interpreter: (status, stdout, stderr, the heavy modules imported)."""
    code = (
        "import sys, keras_prune_cli\n"
        f"status = keras_prune_cli.main({argv!r})\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print('HEAVY', ' '.join(m for m in heavy if '.' not in m))\n"
        "sys.exit(status)\n")
    env = dict(os.environ, KERAS_BACKEND=backend or keras.backend.backend(),
               PYTHONPATH=ROOT)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # what a user's shell has
    done = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=300, cwd=ROOT, env=env)
    lines = done.stdout.splitlines()
    heavy = lines[-1].split()[1:]
    return done.returncode, "\n".join(lines[:-1]), done.stderr, heavy


@pytest.mark.parametrize("argv,status", [
    (["--help"], 0), ([], 2), (["prun"], 2), (["-v", "--help"], 0)])
def test_help_and_usage_errors_import_no_backend(argv, status):
    code, out, err, heavy = entry(argv)
    assert code == status, err
    assert heavy == []  # not Keras, not a backend, not keras_prune
    if status == 0:
        assert out.startswith("usage: keras-prune [-h] [-v] COMMAND ...")
        for name in keras_prune_cli.COMMANDS:
            assert f"    {name} " in out
    else:
        assert err.splitlines()[-1].startswith("keras-prune: error: ")


def test_the_light_help_is_the_full_parser_help(capsys):
    # One text: what `--help` prints without Keras is what the parser with
    # every command prints.
    assert list(keras_prune_cli.COMMANDS) == [c.NAME for c in app.COMMANDS]
    full = app.build_parser().format_help()
    light = keras_prune_cli._light_parser().format_help()
    assert light == full


@pytest.fixture
def package_criteria(monkeypatch):
    """The criteria the package registers, without those test modules
    register when they are collected (the parsers list every registered
    criterion as a choice)."""
    from keras_prune.criteria import base

    monkeypatch.setattr(base, "_REGISTRY", {
        key: obj for key, obj in base._REGISTRY.items()
        if getattr(obj, "__module__", "").startswith("keras_prune.")})


def test_the_written_down_parsers_are_the_commands_parsers(package_criteria):
    assert keras_prune_cli_parsers.PARSERS == snapshot.describe(), (
        "a command's options changed: run `python -m keras_prune.cli."
        "snapshot --write` and commit keras_prune_cli_parsers.py")


def outcome(parse, argv, capsys):
    """(exit status, stdout, stderr) of `parse(argv)`."""
    capsys.readouterr()
    try:
        parse(argv)
        status = None
    except SystemExit as exit_:
        status = exit_.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def bad_command_lines(name):
    """A command's usage errors argparse finds: an unknown option, a
    missing argument, and for every option with a type or choices a value
    of neither (its required positionals given)."""
    arguments = keras_prune_cli_parsers.PARSERS[name]["arguments"]
    positional = []
    for a in arguments:
        if not a["option_strings"]:
            value = a["choices"][0] if a["choices"] else "m.keras"
            positional += [value] * (2 if a["nargs"] == 2 else 1)
    lines = [[name, "--no-such-option"] + positional]
    if any(a["required"] for a in arguments):
        lines.append([name])
    for a in arguments:
        if a["option_strings"] and (a.get("type") or a.get("choices")):
            value = "nope" if a.get("choices") or a["type"] != "str" else None
            if value is not None:
                lines.append([name] + positional + [a["option_strings"][-1],
                                                    value])
    return lines


@pytest.mark.parametrize("name", list(keras_prune_cli.COMMANDS))
def test_command_help_and_usage_errors_are_the_same_without_keras(
        name, capsys, package_criteria):
    # What the light entry point prints from the written-down parser is
    # what the package's parser prints, word for word.
    full = app.build_parser().parse_args
    light = keras_prune_cli._light_parser(name).parse_args
    for argv in [[name, "--help"]] + bad_command_lines(name):
        expected = outcome(full, argv, capsys)
        assert expected[0] == (0 if argv[-1] == "--help" else 2), argv
        assert outcome(light, argv, capsys) == expected, argv


@pytest.mark.parametrize("argv,status", [
    (["prune", "--help"], 0), (["shrink", "--help"], 0),
    (["oneshot", "--help"], 0),
    (["prune", "m.keras", "-o", "p.keras", "--sparsity", "abc"], 2),
    (["oneshot", "m.keras", "-o", "p.keras", "--method", "wanda",
      "--pattern", "4:4", "--calibration", "x.npy"], 2),
    (["compare", "a.keras"], 2),
    (["shrink", "m.keras", "-o", "s.keras", "--target-macs", "x"], 2)])
def test_command_help_and_usage_errors_import_no_backend(argv, status):
    code, out, err, heavy = entry(argv)
    assert code == status, err
    assert heavy == []
    if status == 0:
        assert out.startswith(f"usage: keras-prune {argv[0]} [-h]")
    else:
        assert err.splitlines()[-1].startswith(
            f"keras-prune {argv[0]}: error: ")


def test_a_plugin_gets_the_full_parser(tmp_path):
    # A plugin may register a criterion: its name is a choice only once
    # the plugin is loaded, so --plugin (abbreviated too) skips the light
    # parser.
    assert keras_prune_cli._loads_plugins(["prune", "--plugin", "p.py"])
    assert keras_prune_cli._loads_plugins(["prune", "--plug=p.py"])
    assert not keras_prune_cli._loads_plugins(["prune", "--pattern", "2:4"])
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "import numpy as np\nimport keras_prune\n\n"
        "@keras_prune.criteria.register('abs_plugin')\n"
        "class AbsPlugin(keras_prune.criteria.Criterion):\n"
        "    def score(self, layer, variable, weights, context):\n"
        "        return np.abs(weights)\n")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    path = str(tmp_path / "m.keras")
    model.save(path)
    code, _, err, heavy = entry([
        "prune", path, "-o", str(tmp_path / "p.keras"), "--sparsity", "0.5",
        "--criterion", "abs_plugin", "--plugin", str(plugin)])
    assert code == 0, err
    assert "keras" in heavy


def test_a_command_keeps_tensorflows_start_up_lines_off_stderr(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    path = str(tmp_path / "m.keras")
    model.save(path)
    out = str(tmp_path / "p.keras")
    argv = ["prune", path, "-o", out, "--sparsity", "0.5"]
    code, _, err, heavy = entry(argv)
    assert code == 0, err
    assert "keras" in heavy
    assert not [line for line in err.splitlines()
                if any(t in line for t in TF_LINES)], err
    # Nothing but the command's own line.
    assert err.splitlines() == [
        f"wrote {out}: pruned to 50.0% of its prunable weights, stripped "
        "(plain Keras layers), not compiled"]
    if "tensorflow" in heavy:
        # Asked for: -v shows them (TensorFlow logs them at import).
        code, _, err, _ = entry(["-v"] + argv + ["--force"])
        assert code == 0
        assert any(t in err for t in TF_LINES), err


def test_compare_into_a_log_file_writes_plain_lines(tmp_path):
    # stderr is a pipe here, as in a CI log: progress comes as plain lines,
    # without Keras's bars (ANSI codes, carriage returns, backspaces).
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
    path = str(tmp_path / "m.keras")
    model.save(path)
    code, out, err, _ = entry(["compare", path, path, "--repeats", "3",
                               "--data", "digits"])
    assert code == 0, err
    assert "timing predict_on_batch, batch size 1" in err
    assert "evaluating " in err
    assert not any(c in out + err for c in "\x1b\r\b"), repr(err[:300])
