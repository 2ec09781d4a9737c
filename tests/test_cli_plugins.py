"""`keras-prune prune --criterion`: any registered criterion, one from a
`--plugin` file written here included, and `taylor` on the digits."""

import pathlib

import keras
import numpy as np
import pytest

import keras_prune
from keras_prune import cli
from keras_prune.core.patterns import num_pruned
from tests.conftest import numpy

KERNELS = 64 * 16 + 16 * 10

# A criterion no library file knows: |w| times seeded uniform noise.
PLUGIN = '''
import numpy as np

import keras_prune


@keras_prune.criteria.register("{name}")
class AbsTimesNoise(keras_prune.criteria.Criterion):
    description = "|w| times uniform noise"

    def score(self, layer, variable, weights, context):
        noise = context.rng(variable.path).random(weights.shape)
        return np.abs(weights) * noise
'''


@pytest.fixture(autouse=True)
def _own_registry(monkeypatch):
    """What a test's plugin registers stays with that test: the CLI's
    parsers list every registered criterion, and test_cli_startup compares
    them with the written-down ones."""
    from keras_prune.criteria import base

    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A digits MLP saved compiled (with its loss) and uncompiled."""
    directory = tmp_path_factory.mktemp("models")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(16, activation="relu", name="fc1"),
            keras.layers.Dense(10, name="logits"),
        ],
        name="mlp",
    )
    paths = {
        "plain": str(directory / "plain.keras"),
        "compiled": str(directory / "compiled.keras"),
    }
    model.save(paths["plain"])
    model.compile(
        "adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    # Built, as after training: an unbuilt optimizer's state does not match
    # the one load_model builds, and Keras warns.
    model.optimizer.build(model.trainable_variables)
    model.save(paths["compiled"])
    keras.backend.clear_session()
    return paths


def _zeros(path):
    model = keras.saving.load_model(path)
    return {
        layer.name: numpy(layer.kernel) == 0
        for layer in model.layers
        if hasattr(layer, "kernel")
    }


def _expected_zeros(pruned):
    stripped = keras_prune.strip_pruning(pruned)
    return {
        layer.name: numpy(layer.kernel) == 0
        for layer in stripped.layers
        if hasattr(layer, "kernel")
    }


def test_plugin_criterion(capsys, files, tmp_path):
    plugin = tmp_path / "my_criteria.py"
    plugin.write_text(PLUGIN.format(name="cli_test_noise"))
    assert cli.main(["prune", "--help", "--plugin", str(plugin)]) == 0
    out = capsys.readouterr().out
    assert "cli_test_noise: |w| times uniform noise" in out
    out_path = tmp_path / "pruned.keras"
    args = ["prune", files["plain"], "-o", str(out_path), "--sparsity", "0.5",
            "--plugin", str(plugin), "--criterion", "cli_test_noise",
            "--seed", "3"]
    assert cli.main(args) == 0, capsys.readouterr().err
    found = _zeros(out_path)
    assert sum(int(z.sum()) for z in found.values()) == num_pruned(KERNELS, 0.5)
    # The same masks as the criterion gives in Python (registered by the
    # plugin in this process), and not magnitude's.
    model = keras.saving.load_model(files["plain"])
    pruned, _ = keras_prune.prune_now(
        model, 0.5, criterion="cli_test_noise", seed=3)
    expected = _expected_zeros(pruned)
    by_magnitude = _expected_zeros(keras_prune.prune_now(model, 0.5)[0])
    for name, zeros in found.items():
        np.testing.assert_array_equal(zeros, expected[name])
    assert any((found[n] != by_magnitude[n]).any() for n in found)


def test_taylor_on_digits(capsys, files, tmp_path, digits):
    out_path = tmp_path / "taylor.keras"
    args = ["prune", files["compiled"], "-o", str(out_path), "--sparsity",
            "0.5", "--criterion", "taylor", "--data", "digits"]
    assert cli.main(args) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    x_train, y_train = digits[0]
    assert (f"computing the gradients of --criterion taylor on "
            f"{len(x_train):,} digits training images") in err
    found = _zeros(out_path)
    assert sum(int(z.sum()) for z in found.values()) == num_pruned(KERNELS, 0.5)
    model = keras.saving.load_model(files["compiled"])
    pruned, _ = keras_prune.prune_now(
        model, 0.5, criterion="taylor", data=(x_train.reshape(-1, 64), y_train))
    expected = _expected_zeros(pruned)
    for name, zeros in found.items():
        np.testing.assert_array_equal(zeros, expected[name])


def test_criterion_usage_errors(capsys, files, tmp_path):
    out = str(tmp_path / "out.keras")
    missing = str(tmp_path / "missing.keras")  # never loaded: usage first
    cases = [
        (["--criterion", "taylor"], "--criterion taylor ranks weights by "
         "gradients of a loss on data: pass --data NAME (one of digits, "
         "fashion_mnist or mnist_5k), or use a criterion that needs only the "
         "weights ("),
        (["--data", "digits"], "--data applies to criteria that need "
         "gradients; --criterion magnitude needs only the weights."),
        (["--criterion", "taylor", "--data", "digits", "--loss", "nonsense"],
         "--loss 'nonsense' is not a Keras loss name"),
        (["--criterion", "not_registered"], "invalid choice: "
         "'not_registered'"),
    ]
    for extra, message in cases:
        argv = ["prune", missing, "-o", out, "--sparsity", "0.5", *extra]
        assert cli.main(argv) == 2, extra
        err = capsys.readouterr().err
        assert "usage: keras-prune prune" in err, extra
        assert message in err, (extra, err)


def test_criterion_failures(capsys, files, tmp_path):
    out = str(tmp_path / "out.keras")
    prune = ["prune", files["plain"], "-o", out, "--sparsity", "0.5"]
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    cases = [
        (prune + ["--criterion", "taylor", "--data", "digits"],
         f"keras-prune prune: error: {files['plain']} was saved without a "
         "compiled loss, and --criterion taylor takes gradients of one: pass "
         "--loss NAME, e.g. sparse_categorical_crossentropy."),
        (prune + ["--plugin", str(tmp_path / "nope.py")],
         f"keras-prune prune: error: --plugin {tmp_path / 'nope.py'}: no such "
         "file; name a Python file"),
        (prune + ["--plugin", str(broken)],
         f"keras-prune prune: error: --plugin {broken} failed: RuntimeError: "
         "boom"),
        (prune + ["--plugin", "no_such_module.criteria"],
         "keras-prune prune: error: --plugin no_such_module.criteria: no "
         "module named 'no_such_module' on the Python path"),
        (["shrink", files["plain"], "-o", out, "--plugin", "no_such_module"],
         "keras-prune shrink: error: --plugin no_such_module: no module"),
    ]
    for argv, message in cases:
        status = cli.main(argv)
        err = capsys.readouterr().err
        assert status == 1, (argv, err)
        assert err.startswith(message), (argv, err)
        assert len(err.splitlines()) == 1, argv
    assert not pathlib.Path(out).exists()


CHANNEL_PLUGIN = '''
import numpy as np

import keras_prune


@keras_prune.criteria.register("cli_first_filters")
class FirstFilters(keras_prune.criteria.channel.ChannelCriterion):
    description = "earlier filters matter more"

    def member_scores(self, layer, member, size, context):
        if member.role != "out":
            return None
        return np.arange(size, 0, -1.0)
'''


def test_shrink_with_a_plugin_channel_criterion(capsys, tmp_path):
    # The same mechanism for structured pruning: a channel criterion from a
    # plugin file, chosen with shrink --criterion, decides which filters go.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(4, name="head")(x))
    source = str(tmp_path / "model.keras")
    model.save(source)
    plugin = tmp_path / "channel_plugin.py"
    plugin.write_text(CHANNEL_PLUGIN)
    assert cli.main(["shrink", "--help", "--plugin", str(plugin)]) == 0
    assert "cli_first_filters" in capsys.readouterr().out
    out = str(tmp_path / "small.keras")
    args = ["shrink", source, "-o", out, "--ratio", "0.5", "--plugin",
            str(plugin), "--criterion", "cli_first_filters"]
    assert cli.main(args) == 0, capsys.readouterr().err
    small = keras.saving.load_model(out)
    kept = numpy(small.get_layer("conv").kernel)
    np.testing.assert_array_equal(
        kept, numpy(model.get_layer("conv").kernel)[..., :4])


BROKEN_SCORES = '''
import keras_prune


@keras_prune.criteria.register("{name}")
class Broken(keras_prune.criteria.{base}):
    def {method}(self, *args):
        raise KeyError("no scores\\nfor this layer")
'''


@pytest.mark.parametrize("command,base,method", [
    ("prune", "Criterion", "score"),
    ("shrink", "channel.ChannelCriterion", "member_scores"),
])
def test_a_plugin_failing_while_scoring_is_named_in_one_line(
        capsys, tmp_path, command, base, method):
    # Not a traceback through our code: the plugin's file, line and
    # function, the error in one line, exit 1, nothing written.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    source = str(tmp_path / "model.keras")
    keras.Model(inputs, keras.layers.Dense(4, name="head")(x)).save(source)
    name = f"broken_{command}_scores"
    plugin = tmp_path / f"{name}.py"
    plugin.write_text(BROKEN_SCORES.format(name=name, base=base,
                                           method=method))
    out = tmp_path / "out.keras"
    argv = [command, source, "-o", str(out), "--plugin", str(plugin),
            "--criterion", name]
    argv += ["--sparsity", "0.5"] if command == "prune" else ["--ratio", "0.5"]
    assert cli.main(argv) == 1
    # (shrink logs its steps before: "planning (ratio 0.5)")
    assert capsys.readouterr().err.splitlines()[-1:] == [
        f"keras-prune {command}: error: --criterion {name} failed in plugin "
        f"code ({plugin}, line 8, in {method}): KeyError: 'no scores\\nfor "
        "this layer'"]
    assert not out.exists()
