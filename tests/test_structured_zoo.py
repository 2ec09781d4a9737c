"""Structured pruning on the zoo's models: ConvNeXt (depthwise `Conv2D(
groups=C)`, LayerScale, `inputs + x`), token-id inputs, keras-hub
transformers' MLP channels (the model rebuilt from its config), and the
blocks the rules do not know: their plans say so, per layer, and loudly."""

import warnings

import keras
import numpy as np
import pytest

import keras_prune
from keras_prune.structured import apply_plan
from keras_prune.structured import plan_pruning
from keras_prune.structured import verify
from tests.conftest import numpy

L = keras.layers


def _convnext():
    from tests.test_zoo import APPS

    keras.utils.set_random_seed(0)
    return APPS["convnext"]()


def _through_layernorm(group):
    return any(role == "through" and "layernorm" in layer
               for layer, role, *_ in group["members"])


def test_convnext_is_pruned_through_its_depthwise_conv_and_layer_scale(
        tmp_path):
    model = _convnext()
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    plan = plan_pruning(model, 0.5)
    prunable = [g for g in plan.groups if not g["blocked"]]
    # The stem's residual stream, 4 MLPs, 3 downsampling streams; only the
    # classifier (a model output) is blocked, and nothing is left whole.
    assert len(prunable) == 8 and len(plan.groups) == 9
    assert plan.left_whole == []
    members = {m[0].rsplit("/", 1)[-1]: m[1] for g in prunable
               for m in g["members"]}
    assert members["convnext_stage_0_block_0_depthwise_conv"] == "through"
    assert members["convnext_stage_0_block_0_layer_scale"] == "through"

    # The MLPs alone (the residual streams kept: LayerNormalization would
    # normalize over fewer channels): equal to the zeroed original.
    for g in plan.groups:
        if _through_layernorm(g) and not g["blocked"]:
            plan.keep(g["id"], range(g["size"]))
    small = apply_plan(model, plan)
    assert verify(model, plan, x, small) <= 1e-5
    assert small.count_params() < model.count_params()
    hidden = [g for g in plan.groups if not _through_layernorm(g)
              and not g["blocked"]]
    removed_rows = sum(g["size"] - sum(g["keep"]) for g in hidden)
    assert removed_rows > 0
    expected = keras_prune.model_cost(model).params - sum(
        (g["size"] - sum(g["keep"])) * (2 * _width(model, g) + 1)
        for g in hidden)
    assert keras_prune.model_cost(small).params == expected
    assert keras_prune.model_cost(model).uncounted == []  # `+` counted too
    small.save(tmp_path / "small.keras")
    loaded = keras.saving.load_model(tmp_path / "small.keras")
    np.testing.assert_allclose(numpy(loaded(x)), numpy(small(x)), atol=1e-6)


def _width(model, group):
    """The residual width an MLP group's expansion reads from."""
    producer = group["members"][0][0].rsplit("/", 1)[-1]
    return model.get_layer(producer).kernel.shape[-2]


def test_convnext_residual_width_is_cut_through_every_block():
    model = _convnext()
    plan = plan_pruning(model, 0.5)
    small = apply_plan(model, plan)
    depthwise = small.get_layer("convnext_stage_0_block_0_depthwise_conv")
    kept = sum(plan.groups[0]["keep"])
    assert kept == 4  # of the stem's 8
    assert depthwise.groups == depthwise.filters == kept
    assert depthwise.kernel.shape == (7, 7, 1, kept)
    assert small.get_layer(
        "convnext_stage_0_block_0_layer_scale").weights[0].shape == (kept,)
    assert small.output.shape == model.output.shape


def test_grouped_convolution_other_than_depthwise_stays_blocked():
    inputs = keras.Input((8, 8, 4))
    h = L.Conv2D(8, 3, name="c1")(inputs)
    h = L.Conv2D(8, 3, groups=2, name="grouped")(h)
    model = keras.Model(inputs, L.Conv2D(4, 1, name="c3")(h))
    with pytest.warns(UserWarning, match="can remove no channel"):
        plan = plan_pruning(model, 0.5)
    group = next(g for g in plan.groups if g["name"] == "c1")
    assert group["blocked"] == [
        "feeds Conv2D 'grouped', which is a grouped convolution (groups=2)"]
    assert plan.left_whole == [
        ["grouped", "Conv2D", 3 * 3 * 4 * 8,
         "is a grouped convolution (groups=2)"]]


def test_token_ids_of_unknown_length_do_not_stop_surgery():
    ids = keras.Input((None,), dtype="int32")
    h = L.Embedding(50, 8, name="embed")(ids)
    h = L.Dense(16, activation="relu", name="hidden")(h)
    model = keras.Model(ids, L.Dense(3, name="head")(h))
    plan = plan_pruning(model, 0.5)
    small = apply_plan(model, plan)
    assert small.get_layer("hidden").units == 8
    x = np.random.default_rng(0).integers(0, 50, size=(2, 7)).astype("int32")
    assert verify(model, plan, x, small) <= 1e-6


# Transformer blocks the rules do not know (their MLPs are not found).
HUB_NAMES = ["vit", "dinov2", "mit"]


@pytest.mark.parametrize("name", HUB_NAMES)
def test_transformer_plans_say_what_they_leave_whole(name):
    pytest.importorskip("keras_hub")
    from tests.test_zoo import HUB
    from tests.test_zoo import _inputs

    keras.utils.set_random_seed(0)
    model = HUB[name]()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan = plan_pruning(model, 0.4)
    said = [w for w in caught if "can remove no channel" in str(w.message)]
    assert len(said) == 1 and f"model {model.name!r}" in str(said[0].message)
    assert said[0].filename == __file__
    left = {path: cls for path, cls, _, _ in plan.left_whole}
    blocks = [l for l in model.layers
              if "transformer_layer" in l.name or "encoder" in l.name]
    assert blocks and all(left[b.name] == type(b).__name__ for b in blocks)
    assert "Left whole, not followed" in plan.summary()
    assert all(weights > 0 for _, _, weights, _ in plan.left_whole)
    same = apply_plan(model, plan)
    assert type(same) is type(model)
    x = _inputs(model)
    for a, b in zip(keras.tree.flatten(model(x)), keras.tree.flatten(same(x))):
        np.testing.assert_array_equal(numpy(a), numpy(b))
    assert verify(model, plan, x, same) == 0.0
    loaded = keras_prune.structured.PruningPlan.from_json(plan.to_json())
    assert loaded.left_whole == plan.left_whole


# name -> (expanding projections per block, whether they have biases)
MLP = {"bert": (1, True), "gpt2": (1, True), "llama": (2, False),
       "gemma": (2, False)}


def _hub(name):
    pytest.importorskip("keras_hub")
    from tests.test_zoo import HUB

    keras.utils.set_random_seed(0)
    return HUB[name]()


@pytest.mark.parametrize("name", sorted(MLP))
def test_transformer_mlp_channels_are_cut_by_config(name, tmp_path):
    from tests.test_zoo import _inputs

    model = _hub(name)
    x = _inputs(model)
    plan = plan_pruning(model, 0.25)
    mlp = [g for g in plan.groups if g["name"].endswith(":mlp")]
    assert len(mlp) == 2 and all(not g["blocked"] for g in mlp)
    width = mlp[0]["size"]  # each projection's
    kept = width - width // 4
    assert [sum(g["keep"]) for g in mlp] == [kept, kept]
    # Heads: cut where the config says the head size (Gemma), else listed
    # with the reason, one attention layer per block.
    heads = {path: why for path, _, _, why in plan.left_whole
             if why.startswith("heads left whole")}
    if name == "gemma":
        assert not heads
    else:
        assert sorted(heads) == [f"transformer_layer_{i}/_self_attention_layer"
                                 for i in range(2)]
        assert "derives the head size from hidden_dim // num_heads" in (
            heads["transformer_layer_0/_self_attention_layer"])

    small = apply_plan(model, plan)
    assert type(small) is type(model)
    field = small.get_config()["intermediate_dim"]
    assert field == model.get_config()["intermediate_dim"] * kept // width
    expand, bias = MLP[name]
    hidden = 16
    per_channel = expand * (hidden + bias) + hidden
    removed = 2 * (width - kept)
    assert keras_prune.model_cost(small).params == (
        keras_prune.model_cost(model).params - removed * per_channel)
    assert verify(model, plan, x, small) <= 1e-4
    small.save(tmp_path / "small.keras")
    loaded = keras.saving.load_model(tmp_path / "small.keras")
    for a, b in zip(keras.tree.flatten(loaded(x)),
                    keras.tree.flatten(small(x))):
        np.testing.assert_allclose(numpy(a), numpy(b), atol=1e-6)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_language_models_generate_after_structured_pruning(name, tmp_path):
    hub = pytest.importorskip("keras_hub")
    task = {"gpt2": hub.models.GPT2CausalLM,
            "llama": hub.models.LlamaCausalLM}[name]
    model = task(backbone=_hub(name), preprocessor=None)
    prompt = {"token_ids": np.array([[5, 6, 7, 0, 0, 0, 0, 0]], "int32"),
              "padding_mask": np.array([[1, 1, 1, 0, 0, 0, 0, 0]], "int32")}
    plan = plan_pruning(model, 0.25)
    small = apply_plan(model, plan)
    assert type(small) is task and small.count_params() < model.count_params()
    reference = keras_prune.structured.zeroed_reference(model, plan)

    def generate(lm):
        lm.compile(sampler="greedy")
        return lm.generate(prompt, max_length=8, stop_token_ids=None)[
            "token_ids"]

    tokens = generate(small)
    np.testing.assert_array_equal(tokens, generate(reference))
    small.save(tmp_path / "lm.keras")
    np.testing.assert_array_equal(
        generate(keras.saving.load_model(tmp_path / "lm.keras")), tokens)


def test_blocks_must_keep_one_width():
    model = _hub("gpt2")
    plan = plan_pruning(model, 0.25)
    first = next(g for g in plan.groups if g["name"].endswith(":mlp"))
    plan.remove(first["id"], [c for c, k in enumerate(first["keep"]) if k][:1])
    with pytest.raises(ValueError, match=(
            r"keeps different MLP widths in the transformer blocks of model "
            r"'gpt2_backbone' \('transformer_layer_0': 23, "
            r"'transformer_layer_1': 24\)")):
        apply_plan(model, plan)
    with pytest.raises(ValueError, match="keeps different MLP widths"):
        keras_prune.structured.verify(model, plan, None)


def test_gemma_grouped_query_heads_go_with_their_query_heads(tmp_path):
    """Gemma says its head size in the config: a key/value head is removed
    with the query heads that share it, and the config's head counts are
    rewritten; the smaller model equals the zeroed original, saves,
    reloads and generates the same tokens."""
    hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(0)
    backbone = hub.models.GemmaBackbone(
        vocabulary_size=64, num_layers=2, num_query_heads=4,
        num_key_value_heads=2, head_dim=8, hidden_dim=16,
        intermediate_dim=32)
    model = hub.models.GemmaCausalLM(backbone=backbone, preprocessor=None)
    prompt = {"token_ids": np.array([[5, 6, 7, 0, 0, 0, 0, 0]], "int32"),
              "padding_mask": np.array([[1, 1, 1, 0, 0, 0, 0, 0]], "int32")}
    plan = plan_pruning(model, 0.5)
    heads = [g for g in plan.groups if g["name"].endswith(":heads")]
    assert [(g["size"], sum(g["keep"])) for g in heads] == [(2, 1), (2, 1)]
    # The token embedding is listed once, though the task calls it twice.
    assert [row[0] for row in plan.left_whole] == [
        "gemma_backbone/token_embedding"]
    small = apply_plan(model, plan)
    config = small.backbone.get_config()
    assert (config["num_query_heads"], config["num_key_value_heads"],
            config["head_dim"], config["intermediate_dim"]) == (2, 1, 8, 16)
    # Per block: 8 MLP channels x (2 x 16 + 16) weights; one key/value
    # head: its key and value (16 x 8 each) and two query heads (16 x 8
    # in, 8 x 16 out each).
    removed = 2 * (8 * 48 + 2 * 128 + 2 * (128 + 128))
    assert small.count_params() == model.count_params() - removed
    assert verify(model, plan, prompt, small) <= 1e-4

    def generate(lm):
        lm.compile(sampler="greedy")
        return lm.generate(prompt, max_length=8, stop_token_ids=None)[
            "token_ids"]

    tokens = generate(small)
    reference = keras_prune.structured.zeroed_reference(model, plan)
    np.testing.assert_array_equal(generate(reference), tokens)
    small.save(tmp_path / "gemma.keras")
    np.testing.assert_array_equal(
        generate(keras.saving.load_model(tmp_path / "gemma.keras")), tokens)
