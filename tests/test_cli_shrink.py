"""`keras-prune shrink`: structured pruning of a saved model, its errors."""

import json
import os
import pathlib

import keras
import numpy as np
import pytest

import keras_prune
from keras_prune import cli
from keras_prune.cli import shrink as shrink_command
from keras_prune.structured import apply_plan
from keras_prune.structured import model_cost
from keras_prune.structured import plan_by_threshold
from keras_prune.structured import plan_pruning
from keras_prune.structured import PruningPlan
from keras_prune.structured import zeroed_reference
from tests.conftest import numpy

L = keras.layers


def _cnn(name="cnn", inputs=(8, 8, 3)):
    """Conv -> BN -> conv, a residual Add, a 1x1 conv, a Dense head."""
    x_in = keras.Input(inputs)
    x = L.Conv2D(16, 3, padding="same", name="stem")(x_in)
    x = L.BatchNormalization(name="bn")(x)
    y = L.Conv2D(16, 3, padding="same", activation="relu", name="branch")(x)
    x = L.Add(name="add")([x, y])
    x = L.Conv2D(24, 1, activation="relu", name="expand")(x)
    x = L.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(x_in, L.Dense(10, name="logits")(x), name=name)


@keras.saving.register_keras_serializable(package="test_cli_shrink")
class Subclassed(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = L.Conv2D(4, 3, name="conv")
        self.pool = L.GlobalAveragePooling2D()

    def call(self, x):
        return self.pool(self.conv(x))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Paths of the saved test models, by short name."""
    directory = tmp_path_factory.mktemp("models")
    paths = {
        name: str(directory / f"{name}.keras")
        for name in ("cnn", "other", "wrapped", "subclassed", "any_size")
    }
    keras.utils.set_random_seed(0)
    model = _cnn()
    # Statistics far from (0, 1), so that a wrongly cut or folded
    # BatchNormalization changes the outputs.
    rng = np.random.default_rng(0)
    bn = model.get_layer("bn")
    bn.set_weights([rng.uniform(0.5, 2.0, 16), rng.normal(0, 0.5, 16),
                    rng.normal(0, 0.5, 16), rng.uniform(0.5, 2.0, 16)])
    model.save(paths["cnn"])
    other = keras.Sequential(
        [keras.Input((8, 8, 3)), L.Conv2D(8, 3, name="stem"),
         L.GlobalAveragePooling2D(), L.Dense(10, name="logits")],
        name="other",
    )
    other.save(paths["other"])
    keras_prune.prune_now(model, 0.5)[0].save(paths["wrapped"])
    subclassed = Subclassed(name="sub")
    subclassed(np.zeros((1, 8, 8, 3), "float32"))
    subclassed.save(paths["subclassed"])
    _cnn("any_size", (None, None, 3)).save(paths["any_size"])
    keras.backend.clear_session()
    return paths


@pytest.fixture
def unchanged(files):
    """Asserts after the test that no input file was modified."""
    before = {p: pathlib.Path(p).read_bytes() for p in files.values()}
    yield
    assert {p: pathlib.Path(p).read_bytes() for p in files.values()} == before


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(1).standard_normal((4, 8, 8, 3)).astype("float32")


def _predict(model, x):
    return numpy(model.predict_on_batch(x))


def _shrink(files, out, *extra):
    return cli.main(["shrink", files["cnn"], "-o", str(out), *extra])


def _filters(model):
    return {
        layer.name: layer.filters if hasattr(layer, "filters") else layer.units
        for layer in model.layers
        if hasattr(layer, "filters") or hasattr(layer, "units")
    }


def test_ratio_writes_the_planned_smaller_model(
    capsys, files, unchanged, tmp_path, batch
):
    out, saved = tmp_path / "small.keras", tmp_path / "plan.json"
    assert _shrink(files, out, "--save-plan", str(saved)) == 0
    captured = capsys.readouterr()
    assert sorted(os.listdir(tmp_path)) == ["plan.json", "small.keras"]

    model = keras.saving.load_model(files["cnn"])
    expected = plan_pruning(model, ratio=0.5)
    plan = PruningPlan.from_json(str(saved))
    assert plan.kept() == expected.kept()
    assert plan.settings["ratio"] == 0.5 and plan.settings["criterion"] == "l2"
    small = keras.saving.load_model(out)  # plain Keras: no custom objects
    assert small.count_params() == apply_plan(model, expected).count_params()
    assert _filters(small) == {"stem": 8, "branch": 8, "expand": 12, "logits": 10}
    reference = _predict(zeroed_reference(model, plan), batch)
    np.testing.assert_allclose(_predict(small, batch), reference, atol=1e-5)

    before, after = model.count_params(), small.count_params()
    assert expected.summary() in captured.out
    rows = {line.split("  ")[0]: line.split() for line in captured.out.splitlines()}
    assert rows["parameters"][1:] == [
        f"{before:,}", f"{after:,}", f"{before / after:.2f}x", "fewer"]
    assert "verify: max abs difference " in captured.out
    assert "planning (ratio 0.5)" in captured.err
    assert f"wrote {out}: {before:,} -> {after:,} parameters" in captured.err
    assert f"wrote {saved}" in captured.err


def test_target_macs_json(capsys, files, unchanged, tmp_path):
    out = tmp_path / "half.keras"
    assert _shrink(files, out, "--target-macs", "0.5", "--round-to", "2", "--json") == 0
    captured = capsys.readouterr()
    assert "planning (budget: MACs per sample <= 0.5 of the model's)" in captured.err
    result = json.loads(captured.out)
    model = keras.saving.load_model(files["cnn"])
    small = keras.saving.load_model(out)
    original, shrunk = model_cost(model), model_cost(small)
    assert shrunk.macs <= original.macs / 2
    assert result["macs"] == {
        "before": original.macs,
        "after": shrunk.macs,
        "reduction": original.macs / shrunk.macs,
        "uncounted": [],
    }
    assert result["params"]["before"] == model.count_params()
    assert result["params"]["after"] == small.count_params()
    assert result["settings"]["mode"] == "budget"
    assert result["settings"]["target_macs"] == 0.5
    assert {g["name"]: (g["kept"], g["channels"]) for g in result["groups"]} == {
        "stem+branch": (_filters(small)["stem"], 16),
        "expand": (_filters(small)["expand"], 24),
        "logits": (10, 10),
    }
    assert all(g["kept"] % 2 == 0 for g in result["groups"])
    assert result["verify"]["max_abs_difference"] <= 1e-5
    assert result["verify"]["inputs"] == shrink_command.VERIFY_BATCH
    assert (result["model"], result["output"]) == (files["cnn"], str(out))
    assert result["plan"] is None and result["fold_bn"] is None


def test_round_to_nearest(capsys, files, unchanged, tmp_path):
    # stem+branch 16 -> 8 kept, expand 24 -> 12: to multiples of 5, up
    # gives 10 and 15, nearest 10 and 10.
    for rounding, expand in (("up", 15), ("nearest", 10)):
        out = tmp_path / f"{rounding}.keras"
        assert _shrink(files, out, "--round-to", "5", "--rounding",
                       rounding) == 0
        capsys.readouterr()
        small = keras.saving.load_model(out)
        assert _filters(small) == {"stem": 10, "branch": 10,
                                   "expand": expand, "logits": 10}


def test_threshold_mode_is_plan_by_threshold(capsys, files, unchanged, tmp_path):
    out, saved = tmp_path / "tao.keras", tmp_path / "tao.json"
    tao = ["--threshold", "0.9", "--granularity", "2", "--min-num-filters", "2",
           "--equalization", "arithmetic_mean", "--normalizer", "max",
           "--exclude", "expand"]
    assert _shrink(files, out, *tao, "--save-plan", str(saved)) == 0
    assert "planning (TAO mode, threshold 0.9)" in capsys.readouterr().err
    model = keras.saving.load_model(files["cnn"])
    expected = plan_by_threshold(
        model, threshold=0.9, granularity=2, min_num_filters=2,
        equalization_criterion="arithmetic_mean", excluded_layers=["expand"])
    plan = PruningPlan.from_json(str(saved))
    assert plan.kept() == expected.kept()
    assert plan.settings["excluded_layers"] == ["expand"]
    kept = {g["name"]: sum(g["keep"]) for g in plan.groups}
    assert 2 <= kept["stem+branch"] < 16 and kept["expand"] == 24
    assert _filters(keras.saving.load_model(out))["stem"] == kept["stem+branch"]


def test_plan_replays_an_edited_plan(capsys, files, unchanged, tmp_path, batch):
    model = keras.saving.load_model(files["cnn"])
    plan = plan_pruning(model, ratio=0.5)
    group = next(g for g in plan.groups if g["name"] == "expand")
    plan.remove("expand", [group["keep"].index(True)])  # one more goes
    edited = tmp_path / "edited.json"
    plan.to_json(str(edited))
    before = edited.read_bytes()
    out = tmp_path / "edited.keras"
    assert _shrink(files, out, "--plan", str(edited)) == 0
    assert "planning" not in capsys.readouterr().err
    assert edited.read_bytes() == before
    small = keras.saving.load_model(out)
    expected = apply_plan(model, plan)
    assert _filters(small) == _filters(expected)
    assert _filters(small)["expand"] == 11
    assert small.count_params() == expected.count_params()
    for a, b in zip(small.get_weights(), expected.get_weights()):
        np.testing.assert_array_equal(a, b)
    reference = _predict(zeroed_reference(model, plan), batch)
    np.testing.assert_allclose(_predict(small, batch), reference, atol=1e-5)


def test_fold_bn_and_force(capsys, files, unchanged, tmp_path, batch):
    out = tmp_path / "folded.keras"
    out.write_bytes(b"old")
    assert _shrink(files, out, "--fold-bn") == 1
    assert capsys.readouterr().err == (
        f"keras-prune shrink: error: {out} exists; pass --force to overwrite it.\n"
    )
    assert out.read_bytes() == b"old"
    assert _shrink(files, out, "--fold-bn", "--force") == 0
    captured = capsys.readouterr()
    assert "bn         -> stem" in captured.out
    assert "1 folded, 0 kept" in captured.out
    small = keras.saving.load_model(out)
    assert not any(isinstance(layer, L.BatchNormalization) for layer in small.layers)
    model = keras.saving.load_model(files["cnn"])
    reference = _predict(zeroed_reference(model, plan_pruning(model, ratio=0.5)), batch)
    scale = np.abs(reference).max()
    np.testing.assert_allclose(_predict(small, batch), reference, atol=1e-5 * scale)
    assert os.listdir(tmp_path) == ["folded.keras"]


def test_usage_errors_exit_2(capsys, files, unchanged, tmp_path):
    out = str(tmp_path / "out.keras")
    cases = [
        (["--ratio", "1.0"], "--ratio must be in [0, 1), got 1.0: it is the "
         "fraction of channels removed, e.g. 0.5."),
        (["--ratio", "-0.1"], "--ratio must be in [0, 1), got -0.1"),
        (["--ratio", "0.5", "--threshold", "0.3"],
         "give one of --ratio, --target-params/--target-macs, --threshold or "
         "--plan, not --ratio and --threshold."),
        (["--criterion", "taylor"], "invalid choice: 'taylor'"),
        (["--granularity", "4"], "--granularity does not apply with --ratio: "
         "it is an option of --threshold (TAO mode)."),
        (["--threshold", "0.3", "--round-to", "8"], "--round-to does not "
         "apply with --threshold: it is an option of --ratio and "
         "--target-params/--target-macs."),
        (["--plan", "plan.json", "--exclude", "stem"], "--ignore/--exclude "
         "does not apply with --plan (a saved plan is replayed as it is)"),
        (["--target-macs", "1.5"], "--target-macs must be a positive integer "
         "(a count) or a fraction in (0, 1] (of the model's), got 1.5; write a "
         "count as an integer: --target-macs 1"),
        (["--target-params", "0"], "--target-params must be a positive "
         "integer (a count) or a fraction in (0, 1] (of the model's), got 0"),
        (["--target-params", "half"], "invalid count or fraction: 'half'"),
        (["--round-to", "0"], "--round-to must be at least 1, got 0."),
        (["--rounding", "down"], "argument --rounding: invalid choice: "
         "'down'"),
        (["--threshold", "0.3", "--rounding", "nearest"], "--rounding does "
         "not apply with --threshold: it is an option of --ratio and "
         "--target-params/--target-macs."),
        (["--threshold", "-1"], "--threshold must be 0 or more, got -1.0"),
        # The planners' messages, with their arguments named as options.
        (["--ignore", "nope"], "--ignore/--exclude names the layer 'nope', "
         "which is not in the model. Its layers are: "),
        (["--threshold", "0.3", "--exclude", "nope"], "--ignore/--exclude "
         "names the layer 'nope'"),
        (["--target-params", "10", "--round-to", "64"], "The budget "
         "--target-params 10 ("),
        (["--target-params", "10", "--round-to", "64"], "Raise the target, "
         "lower --round-to, or unblock groups."),
        (["--save-plan", out], f"--save-plan {out} is the output model too"),
    ]
    for extra, message in cases:
        assert _shrink(files, out, *extra) == 2, extra
        err = capsys.readouterr().err
        assert "usage: keras-prune shrink" in err, extra
        assert message in err, (extra, err)
    h5 = str(tmp_path / "out.h5")
    assert _shrink(files, h5) == 2
    assert f"the output '{h5}' must end in .keras" in capsys.readouterr().err
    assert _shrink(files, files["cnn"], "--force") == 2
    assert f"the output {files['cnn']} is the input file" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_failures_exit_1(capsys, files, unchanged, tmp_path):
    out = tmp_path / "out.keras"
    other_plan = tmp_path / "other.json"
    plan_pruning(keras.saving.load_model(files["other"]), ratio=0.5).to_json(
        str(other_plan))
    not_a_plan = tmp_path / "list.json"
    not_a_plan.write_text("[1, 2]")
    existing_plan = tmp_path / "existing.json"
    existing_plan.write_text("{}")
    wrapped, sub, any_size = files["wrapped"], files["subclassed"], files["any_size"]
    cases = [
        ([wrapped], f"{wrapped} holds pruning wrappers (4 PruneLowMagnitude "
         "layers): run `keras-prune strip` on it first, then shrink the "
         "stripped model."),
        ([sub], f"cannot shrink {sub}: Structured pruning needs a Functional "
         "or Sequential model; Subclassed is a subclassed model (or not a "
         "model), whose graph cannot be read. Build it with the Functional "
         "API (keras.Model(inputs, outputs)) or as a keras.Sequential."),
        ([any_size], f"cannot shrink {any_size}: input "),
        ([files["cnn"], "--plan", str(other_plan)], f"the plan {other_plan} "
         f"does not fit {files['cnn']}: The plan was made for model 'other' "
         "and does not match model 'cnn': layer "),
        ([files["cnn"], "--plan", str(not_a_plan)], f"{not_a_plan} is not a "
         "pruning plan (the JSON of PruningPlan.to_json, as --save-plan "
         "writes it): TypeError: "),
        ([files["cnn"], "--plan", str(tmp_path / "missing.json")],
         f"{tmp_path / 'missing.json'}: no such file."),
        ([files["cnn"], "--save-plan", str(existing_plan)],
         f"{existing_plan} exists; pass --force to overwrite it."),
        ([str(tmp_path / "missing.keras")],
         f"{tmp_path / 'missing.keras'}: no such file."),
    ]
    errors = {}
    for argv, message in cases:
        assert cli.main(["shrink", *argv, "-o", str(out)]) == 1, argv
        err = capsys.readouterr().err
        assert err.startswith(f"keras-prune shrink: error: {message}"), (argv, err)
        assert len(err.splitlines()) == 1, argv
        errors[argv[0]] = err
    assert errors[any_size].endswith(
        "has shape (None, None, None, 3): a dimension besides the batch is "
        "unknown, so no input can be made up for it. shrink checks the smaller "
        "model on random inputs of the model's input shape: save the model with "
        "a fixed input shape, e.g. keras.Input((224, 224, 3)).\n"
    )
    assert sorted(os.listdir(tmp_path)) == ["existing.json", "list.json", "other.json"]


def test_help_lists_shrink(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "shrink" in out and "keras-prune shrink model.keras" in out
    assert cli.main(["shrink", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--ratio", "--target-macs", "--threshold", "--plan",
                   "--save-plan", "--fold-bn", "--equalization", "taylor"):
        assert option in out, option
