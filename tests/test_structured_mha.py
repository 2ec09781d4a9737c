"""Structured pruning of MultiHeadAttention: whole heads, on every backend.

A head is its query, key and value kernel slices `(features, head, dim)` and
its output kernel slice `(head, dim, features)`; removing heads lowers
`num_heads`. The smaller model must equal the original whose output kernel
ignores the removed heads (<= 1e-5)."""

import json

import keras
import numpy as np
import pytest

from keras_prune.structured import PruningPlan
from keras_prune.structured import apply_plan
from keras_prune.structured import channel_groups
from keras_prune.structured import plan_pruning
from keras_prune.structured import verify
from tests.conftest import numpy

L = keras.layers


def randomize(model, scale=0.3):
    """Random weights in one `set_weights`; LayerNorm gammas in [0.5, 1.5]."""
    rng = np.random.default_rng(1)
    model.set_weights([
        rng.uniform(0.5, 1.5, w.shape).astype(w.dtype) if w.name == "gamma"
        else rng.normal(0, scale, w.shape).astype(w.dtype)
        for w in model.weights
    ])
    return model


def sequences(n=2, seq=8, d=16):
    return np.random.default_rng(0).random((n, seq, d)).astype("float32")


def weights_of(model):
    return [numpy(w).copy() for w in model.weights]


def group_named(plan, name):
    return next(g for g in plan.groups if g["name"] == name)


def transformer_block(seq=8, d=16, heads=4):
    """Post-LN encoder block; the residual stream is the model input."""
    inputs = keras.Input((seq, d))
    a = L.MultiHeadAttention(heads, key_dim=4, name="mha")(inputs, inputs)
    x = L.LayerNormalization(name="ln1")(L.Add()([inputs, a]))
    h = L.Dense(32, activation="relu", name="ffn1")(x)
    x = L.Add()([x, L.Dense(d, name="ffn2")(h)])
    x = L.LayerNormalization(name="ln2")(x)
    x = L.GlobalAveragePooling1D()(x)
    return randomize(keras.Model(inputs, L.Dense(3, name="out")(x)))


def test_transformer_block_loses_half_its_heads(tmp_path):
    model = transformer_block()
    before = weights_of(model)
    plan = plan_pruning(model, ratio=0.5)
    small = apply_plan(model, plan)
    x = sequences()
    assert verify(model, plan, x, small) <= 1e-5
    for a, b in zip(before, weights_of(model)):
        np.testing.assert_array_equal(a, b)

    heads = group_named(plan, "mha:heads")
    assert heads["size"] == 4 and sum(heads["keep"]) == 2
    assert ["mha", "heads", 0, 4, 1] in heads["members"]
    mha = small.get_layer("mha")
    assert mha.num_heads == 2 and mha.key_dim == 4
    kernels = {w.path.split("/")[-2]: tuple(w.shape) for w in mha.weights
               if w.name == "kernel"}
    assert kernels == {"query": (16, 2, 4), "key": (16, 2, 4),
                       "value": (16, 2, 4), "attention_output": (2, 4, 16)}
    # The residual stream is the model input: its width stays.
    for name in ("mha", "ffn2"):
        assert "model input" in group_named(plan, name)["blocked"][0]
    assert small.get_layer("ffn1").kernel.shape == (16, 16)
    assert small.count_params() < 0.6 * model.count_params()

    small.save(tmp_path / "small.keras")
    loaded = keras.saving.load_model(tmp_path / "small.keras")
    np.testing.assert_allclose(loaded.predict_on_batch(x),
                               small.predict_on_batch(x), atol=1e-6)


def test_plan_shows_per_head_scores_and_round_trips(tmp_path):
    model = transformer_block()
    plan = plan_pruning(model, ratio=0.5, criterion="l2")
    heads = group_named(plan, "mha:heads")
    layer = model.get_layer("mha")
    parts = {w.path.split("/")[-2]: numpy(w).astype(np.float64)
             for w in layer.weights if w.name == "kernel"}
    per_head = sum((parts[k] ** 2).sum(axis=(0, 2))
                   for k in ("query", "key", "value"))
    per_head += (parts["attention_output"] ** 2).sum(axis=(1, 2))
    np.testing.assert_allclose(heads["raw"], np.sqrt(per_head), rtol=1e-6)
    np.testing.assert_allclose(heads["score"],
                               heads["raw"] / np.max(heads["raw"]))
    top = set(np.argsort(-np.sqrt(per_head))[:2].tolist())
    assert {h for h, k in enumerate(heads["keep"]) if k} == top
    assert all(r.startswith("removed: ratio 0.5") for r, k in
               zip(heads["rule"], heads["keep"]) if not k)
    assert "mha:heads" in plan.summary()

    plan.to_json(tmp_path / "plan.json")
    loaded = PruningPlan.from_json(tmp_path / "plan.json")
    assert loaded.get_config() == json.loads(plan.to_json())
    removed = [h for h, k in enumerate(heads["keep"]) if not k]
    loaded.keep("mha:heads", removed[:1])
    small = apply_plan(model, loaded)
    assert small.get_layer("mha").num_heads == 3
    assert verify(model, loaded, sequences(), small) <= 1e-5

    l1 = group_named(plan_pruning(model, criterion="l1"), "mha:heads")
    per_head = sum(np.abs(parts[k]).sum(axis=(0, 2))
                   for k in ("query", "key", "value"))
    per_head += np.abs(parts["attention_output"]).sum(axis=(1, 2))
    np.testing.assert_allclose(l1["raw"], per_head, rtol=1e-6)
    ignored = plan_pruning(model, ignored_layers=["mha"])
    assert all(group_named(ignored, "mha:heads")["keep"])


def test_projections_and_output_channels_couple_with_their_groups():
    # No LayerNorm on the residual stream: its channels can go too.
    inputs = keras.Input((8, 16))
    x = L.Dense(16, name="proj")(inputs)
    a = L.MultiHeadAttention(4, key_dim=4, use_gate=True, name="mha")(x, x)
    x = L.Add()([x, a])
    h = L.Dense(32, activation="relu", name="ffn1")(x)
    x = L.Add()([x, L.Dense(16, name="ffn2")(h)])
    # Cross-attention: the query is the model input, the output feeds a
    # Dense, so its channels shrink on their own (explicit output_shape).
    c = L.MultiHeadAttention(2, key_dim=4, name="cross")(inputs, x)
    c = L.Dense(6, activation="relu", name="head")(c)
    outputs = L.Dense(3, name="out")(L.GlobalAveragePooling1D()(c))
    model = randomize(keras.Model(inputs, outputs))
    groups = {g.name: g for g in channel_groups(model).groups}
    stream = groups["proj+mha+ffn2"]
    assert stream.prunable
    roles = {(m.layer, m.role) for m in stream.members}
    assert {("mha", "query"), ("mha", "key"), ("mha", "value"),
            ("cross", "key"), ("cross", "value"), ("ffn1", "in")} <= roles
    assert groups["cross"].prunable and groups["cross"].size == 16

    plan = plan_pruning(model, ratio=0.5)
    small = apply_plan(model, plan)
    assert verify(model, plan, sequences(), small) <= 1e-5
    mha, cross = small.get_layer("mha"), small.get_layer("cross")
    assert mha.num_heads == 2 and cross.num_heads == 1
    assert mha.query_dense.kernel.shape == (8, 2, 4)
    assert cross.query_dense.kernel.shape == (16, 1, 4)
    assert cross.key_dense.kernel.shape == (8, 1, 4)
    assert cross.output_dense.kernel.shape == (1, 4, 8)
    assert cross.get_config()["output_shape"] == (8,)
    assert small.get_layer("head").kernel.shape == (8, 3)


def test_what_cannot_be_followed_is_listed():
    inputs = keras.Input((8, 16))
    mask = keras.Input((8, 8), dtype="bool")
    out, scores = L.MultiHeadAttention(2, key_dim=4, name="seen")(
        inputs, inputs, attention_mask=mask, return_attention_scores=True)

    class Custom(L.MultiHeadAttention):
        pass

    x = Custom(2, key_dim=4, name="custom")(L.Dense(8, name="d")(out), out)
    shared = L.MultiHeadAttention(2, key_dim=4, name="shared")
    y = shared(L.Dense(8, name="a")(inputs), inputs)
    z = shared(L.Dense(8, name="b")(inputs), inputs)
    outputs = [L.Dense(2, name="o1")(L.Concatenate()([x, y, z])),
               L.Flatten()(scores)]
    model = randomize(keras.Model([inputs, mask], outputs))
    groups = {g.name: g for g in channel_groups(model).groups}
    assert "returns its attention scores" in groups["seen:heads"].blocked[0]
    assert "subclasses MultiHeadAttention" in groups["d"].blocked[0]
    assert "custom:heads" not in groups
    assert groups["shared:heads"].prunable
    assert set(groups["a+b"].producers) == {"a", "b"}

    plan = plan_pruning(model, ratio=0.5)
    x = [sequences(), np.random.default_rng(2).random((2, 8, 8)) > 0.3]
    small = apply_plan(model, plan)
    assert verify(model, plan, x, small) <= 1e-5
    assert small.get_layer("seen").num_heads == 2
    assert small.get_layer("shared").num_heads == 1
    assert small.get_layer("custom").num_heads == 2
    assert "returns its attention scores" in plan.summary()


@pytest.mark.skipif(keras.backend.backend() == "jax",
                    reason="Keras 3.15.1 on JAX fails on value_dim != key_dim "
                    "(jax.nn.dot_product_attention shape check)")
def test_value_dim_other_than_key_dim():
    inputs = keras.Input((8, 16))
    a = L.MultiHeadAttention(4, key_dim=4, value_dim=3, name="mha")(
        inputs, inputs)
    x = L.Dense(5, name="head")(a)
    model = randomize(keras.Model(inputs, L.GlobalMaxPooling1D()(x)))
    plan = plan_pruning(model, ratio=0.5)
    small = apply_plan(model, plan)
    assert verify(model, plan, sequences(), small) <= 1e-5
    mha = small.get_layer("mha")
    assert mha.value_dense.kernel.shape == (16, 2, 3)
    assert mha.output_dense.kernel.shape == (2, 3, 8)


def test_tao_mode_scores_heads_with_their_own_kernels():
    """TAO mode decides a head group with its heads' L2 norms (it once
    reused the previous group's scores)."""
    from keras_prune.structured import plan_by_threshold
    from keras_prune.structured.importance import head_kernel

    model = transformer_block()
    plan = plan_by_threshold(model, threshold=0.5, granularity=1,
                             min_num_filters=1)
    heads = group_named(plan, "mha:heads")
    expected = np.sqrt((head_kernel(model.get_layer("mha")) ** 2).sum(0))
    np.testing.assert_allclose(heads["raw"], expected, rtol=1e-5)
    merged = np.asarray(heads["score"])
    np.testing.assert_allclose(merged, expected / expected.max(), rtol=1e-5)
    assert heads["keep"] == [bool(v) for v in merged > 0.5]  # max is 1 > 0.5
    small = apply_plan(model, plan)
    assert small.get_layer("mha").num_heads == sum(heads["keep"])
    assert verify(model, plan, sequences(), small) <= 1e-5
