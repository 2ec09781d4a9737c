"""Structured pruning: channel groups, plans, surgery, on every backend.

Every model is pruned, and the smaller model must give the same outputs as
the original whose consumers ignore the removed channels (<= 1e-5)."""

import functools
import json

import keras
import numpy as np
import pytest

from keras_prune.structured import PruningPlan
from keras_prune.structured import apply_plan
from keras_prune.structured import channel_groups
from keras_prune.structured import plan_pruning
from keras_prune.structured import verify
from keras_prune.structured.importance import group_scores
from keras_prune.structured.importance import normalize
from tests.conftest import numpy

L = keras.layers


# Zero initializers, then random weights from numpy (`randomize`): on JAX a
# random initializer compiles once per kernel shape (~0.3 s each).
Conv2D = functools.partial(L.Conv2D, kernel_initializer="zeros")
Conv2DTranspose = functools.partial(L.Conv2DTranspose,
                                    kernel_initializer="zeros")
Dense = functools.partial(L.Dense, kernel_initializer="zeros")
DepthwiseConv2D = functools.partial(L.DepthwiseConv2D,
                                    depthwise_initializer="zeros")
SeparableConv2D = functools.partial(
    L.SeparableConv2D, depthwise_initializer="zeros",
    pointwise_initializer="zeros")


def randomize(model, bn_only=False):
    """Random weights, and non-trivial BatchNorm statistics (so that slicing
    them is checked): variances and gammas in [0.5, 1.5]."""
    rng = np.random.default_rng(1)
    weights = model.weights
    if bn_only:
        weights = [w for layer in model.layers
                   if isinstance(layer, L.BatchNormalization)
                   for w in layer.weights]
    for w in weights:
        if "variance" in w.name or w.name == "gamma":
            value = rng.uniform(0.5, 1.5, w.shape)
        else:
            value = rng.normal(0, 0.5, w.shape)
        w.assign(value.astype(w.dtype))
    return model


def images(shape, n=3):
    return np.random.default_rng(0).random((n,) + shape).astype("float32")


def channels(model):
    """Layer name -> output channels."""
    return {layer.name: layer.output.shape[-1] for layer in model.layers}


def weights_of(model):
    return [numpy(w).copy() for w in model.weights]


def prune_and_check(model, x, ratio=0.5, **kwargs):
    before = weights_of(model)
    plan = plan_pruning(model, ratio=ratio, **kwargs)
    small = apply_plan(model, plan)
    assert verify(model, plan, x, small) <= 1e-5
    for a, b in zip(before, weights_of(model)):
        np.testing.assert_array_equal(a, b)
    return plan, small


def group_named(plan, name):
    return next(g for g in plan["groups"] if g["name"] == name)


def conv_bn_conv():
    inputs = keras.Input((8, 8, 3))
    x = Conv2D(8, 3, padding="same", name="c1")(inputs)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU()(x)
    x = L.MaxPooling2D()(x)
    x = Conv2D(6, 3, name="c2")(x)
    x = L.GlobalAveragePooling2D()(x)
    outputs = Dense(4, name="out")(x)
    return randomize(keras.Model(inputs, outputs))


def test_conv_bn_conv_shrinks_and_matches(tmp_path):
    model = conv_bn_conv()
    plan, small = prune_and_check(model, images((8, 8, 3)))
    small.save(tmp_path / "small.keras")
    loaded = keras.saving.load_model(tmp_path / "small.keras")
    np.testing.assert_array_equal(
        loaded.predict_on_batch(images((8, 8, 3))),
        small.predict_on_batch(images((8, 8, 3))))
    assert channels(small)["c1"] == 4
    assert channels(small)["bn"] == 4
    assert channels(small)["c2"] == 3  # GlobalPool -> Dense couples it
    assert channels(small)["out"] == 4  # outputs are never pruned
    assert small.get_layer("out").kernel.shape == (3, 4)
    assert small.count_params() < model.count_params()


def test_residual_add_couples_every_input():
    inputs = keras.Input((8, 8, 3))
    a = Conv2D(8, 3, padding="same", name="stem")(inputs)
    b = Conv2D(8, 3, padding="same", name="branch")(a)
    b = L.BatchNormalization(name="bn")(b)
    x = L.Add(name="add")([a, b])
    x = L.Activation("relu")(x)
    x = Conv2D(5, 1, name="head")(x)
    outputs = L.Flatten()(x)
    model = randomize(keras.Model(inputs, outputs))
    groups = channel_groups(model).groups
    coupled = next(g for g in groups if "stem" in g.producers)
    assert set(coupled.producers) == {"stem", "branch"}
    plan, small = prune_and_check(model, images((8, 8, 3)), ratio=0.25)
    assert channels(small)["stem"] == channels(small)["branch"] == 6
    assert channels(small)["head"] == 5  # reaches the output


def test_concatenate_offsets():
    inputs = keras.Input((6, 6, 2))
    a = Conv2D(4, 1, name="a")(inputs)
    b = Conv2D(6, 1, name="b")(inputs)
    x = L.Concatenate(name="cat")([a, inputs, b])
    x = L.BatchNormalization(name="bn")(x)
    outputs = Conv2D(3, 1, name="out")(x)
    model = randomize(keras.Model(inputs, outputs))
    plan, small = prune_and_check(model, images((6, 6, 2)))
    assert channels(small)["cat"] == 2 + 2 + 3
    assert small.get_layer("out").kernel.shape == (1, 1, 7, 3)


def test_depthwise_passes_channels_through():
    inputs = keras.Input((8, 8, 3))
    x = Conv2D(8, 1, name="expand")(inputs)
    x = DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = L.BatchNormalization(name="bn")(x)
    x = SeparableConv2D(6, 3, depth_multiplier=2, name="sep")(x)
    outputs = Conv2DTranspose(2, 3, name="up")(
        Conv2DTranspose(6, 3, name="tr")(x))
    model = randomize(keras.Model(inputs, outputs))
    plan, small = prune_and_check(model, images((8, 8, 3)))
    assert channels(small)["expand"] == channels(small)["dw"] == 4
    assert small.get_layer("sep").pointwise_kernel.shape == (1, 1, 8, 3)
    assert channels(small)["tr"] == 3
    assert channels(small)["up"] == 2


def test_flatten_maps_each_channel_to_its_positions():
    inputs = keras.Input((5, 5, 1))
    x = Conv2D(6, 3, name="conv")(inputs)
    x = L.Flatten()(x)
    x = Dense(8, activation="relu", name="fc")(x)
    x = L.Dropout(0.5)(x)
    outputs = Dense(3, name="out")(x)
    model = randomize(keras.Model(inputs, outputs))
    graph = channel_groups(model)
    group = next(g for g in graph.groups if g.producers == ["conv"])
    fc = next(m for m in group.members if m.layer == "fc")
    assert (fc.tile, fc.width) == (9, 6)
    assert fc.indices([1]) == [1 + 6 * p for p in range(9)]
    plan, small = prune_and_check(model, images((5, 5, 1)))
    assert small.get_layer("fc").kernel.shape == (27, 4)


def test_squeeze_excitation_multiply():
    inputs = keras.Input((6, 6, 3))
    x = Conv2D(8, 3, padding="same", name="features")(inputs)
    s = L.GlobalAveragePooling2D()(x)
    s = L.Reshape((1, 1, 8))(s)
    s = Conv2D(2, 1, activation="relu", name="squeeze")(s)
    s = Conv2D(8, 1, activation="sigmoid", name="excite")(s)
    x = L.Multiply(name="scale")([x, s])
    outputs = Conv2D(4, 1, name="out")(x)
    model = randomize(keras.Model(inputs, outputs))
    groups = channel_groups(model).groups
    gated = next(g for g in groups if "features" in g.producers)
    assert set(gated.producers) == {"features", "excite"}
    plan, small = prune_and_check(model, images((6, 6, 3)))
    assert channels(small)["features"] == channels(small)["excite"] == 4
    assert channels(small)["squeeze"] == 1


def test_lambda_is_listed_as_unprunable():
    inputs = keras.Input((6, 6, 3))
    x = Conv2D(8, 3, name="before")(inputs)
    x = L.Lambda(lambda t: keras.ops.flip(t, axis=-1), name="flip")(x)
    x = Conv2D(4, 3, name="after")(x)
    outputs = L.GlobalMaxPooling2D()(x)
    outputs = Dense(2, name="out")(outputs)
    model = randomize(keras.Model(inputs, outputs))
    plan, small = prune_and_check(model, images((6, 6, 3)))
    blocked = group_named(plan.get_config(), "before")
    assert not any(x is False for x in blocked["keep"])
    assert "Lambda 'flip'" in blocked["blocked"][0]
    assert "Lambda 'flip'" in plan.summary()
    assert channels(small)["before"] == 8
    assert channels(small)["after"] == 2


def test_reshape_that_moves_the_channel_axis_is_blocked():
    inputs = keras.Input((4, 4, 3))
    a = Conv2D(4, 1, name="moved")(inputs)
    a = L.Reshape((8, 8))(a)
    b = Conv2D(6, 1, name="kept_last")(inputs)
    b = L.Reshape((16, 6))(b)
    outputs = L.Concatenate(axis=1)([Dense(5, name="da")(a),
                                     Dense(5, name="db")(b)])
    model = keras.Model(inputs, outputs)
    groups = {g.name: g for g in channel_groups(model).groups}
    assert "moves the channel axis" in groups["moved"].blocked[0]
    assert groups["kept_last"].prunable
    assert set(groups["da+db"].producers) == {"da", "db"}
    assert "model output" in groups["da+db"].blocked[0]


def test_shared_layer_couples_its_calls():
    a = keras.Input((5, 5, 2))
    b = keras.Input((5, 5, 2))
    shared = Conv2D(3, 1, name="shared")
    x = Conv2D(4, 1, name="xa")(a)
    y = Conv2D(4, 1, name="yb")(b)
    outputs = L.Add()([shared(x), shared(y)])
    groups = channel_groups(keras.Model([a, b], outputs)).groups
    assert any(set(g.producers) == {"xa", "yb"} for g in groups)

    sub_in = keras.Input((4, 4, 4))
    sub = keras.Model(sub_in, [Conv2D(3, 1, name="sc")(sub_in), sub_in],
                      name="sub")
    inputs = keras.Input((4, 4, 2))
    x1, y1 = sub(Conv2D(4, 1, name="a")(inputs))
    x2, y2 = sub(Conv2D(4, 1, name="b")(inputs))
    outputs = Conv2D(2, 1, name="o")(L.Concatenate()([x1, y1, x2, y2]))
    model = randomize(keras.Model(inputs, outputs))
    plan, small = prune_and_check(model, images((4, 4, 2)))
    assert group_named(plan.get_config(), "a+b")["size"] == 4
    assert small.get_layer("o").kernel.shape == (1, 1, 2 + 2 + 2 + 2, 2)


def test_nested_and_sequential_models():
    block = keras.Sequential([
        keras.Input((6, 6, 8)),
        Conv2D(6, 3, padding="same", name="inner"),
        L.BatchNormalization(name="inner_bn"),
    ], name="block")
    inputs = keras.Input((6, 6, 3))
    x = Conv2D(8, 1, name="stem")(inputs)
    x = block(x)
    outputs = Conv2D(2, 1, name="out")(x)
    model = randomize(keras.Model(inputs, outputs))
    plan, small = prune_and_check(model, images((6, 6, 3)))
    inner = small.get_layer("block")
    assert inner.get_layer("inner").kernel.shape == (3, 3, 4, 3)
    assert channels(small)["stem"] == 4

    sub_in = keras.Input((6, 6, 4))
    sub_out = Conv2D(6, 1, name="sub_conv")(L.ReLU()(sub_in))
    sub = keras.Model(sub_in, [sub_out, sub_in], name="sub")
    inputs = keras.Input((6, 6, 3))
    x = Conv2D(4, 1, name="stem")(inputs)
    a, b = sub(x)
    x = L.Concatenate()([a, b])
    outputs = Conv2D(2, 1, name="out")(x)
    model = randomize(keras.Model(inputs, outputs))
    plan, small = prune_and_check(model, images((6, 6, 3)))
    assert small.get_layer("sub").get_layer("sub_conv").kernel.shape == (
        1, 1, 2, 3)
    assert small.get_layer("out").kernel.shape == (1, 1, 5, 2)

    seq = randomize(keras.Sequential([
        keras.Input((8,)), Dense(10, name="h"), L.LayerNormalization(),
        Dense(3, name="y"),
    ]))
    plan = plan_pruning(seq, ratio=0.5)
    small = apply_plan(seq, plan)
    assert isinstance(small, keras.Sequential)
    assert small.get_layer("h").kernel.shape == (8, 5)


def test_plan_json_round_trip_edit_and_replay(tmp_path):
    model = conv_bn_conv()
    plan = plan_pruning(model, ratio=0.5, criterion="l1")
    plan.to_json(tmp_path / "plan.json")
    loaded = PruningPlan.from_json(tmp_path / "plan.json")
    assert loaded.get_config() == json.loads(plan.to_json())
    group = group_named(plan.get_config(), "c1")
    removed = [c for c, k in enumerate(group["keep"]) if not k]
    assert all(r.startswith("removed") for c, r in enumerate(group["rule"])
               if c in removed)
    loaded.keep("c1", removed[:1])
    small = apply_plan(model, loaded)
    assert channels(small)["c1"] == 5
    assert verify(model, loaded, images((8, 8, 3)), small) <= 1e-5
    other = keras.Sequential([keras.Input((8, 8, 3)), Conv2D(4, 3)])
    with pytest.raises(ValueError, match="does not match model"):
        apply_plan(other, plan)
    with pytest.raises(ValueError, match="cannot be pruned"):
        loaded.remove("out", [0])


def test_ranking_ratio_round_to_and_global():
    model = conv_bn_conv()
    plan = plan_pruning(model, ratio=0.5, criterion="l2")
    group = group_named(plan.get_config(), "c1")
    kernel = numpy(model.get_layer("c1").kernel).reshape(-1, 8)
    norms = np.sqrt((kernel**2).sum(0))
    np.testing.assert_allclose(group["raw"], norms, rtol=1e-5)
    top = set(np.argsort(-norms)[:4].tolist())
    assert {c for c, k in enumerate(group["keep"]) if k} == top

    rounded = plan_pruning(model, ratio=0.5, round_to=3)
    assert sum(group_named(rounded.get_config(), "c1")["keep"]) == 6
    assert "rounded up" in rounded.summary()

    bn = plan_pruning(model, ratio=0.5, criterion="bn")
    gamma = np.abs(numpy(model.get_layer("bn").gamma))
    kept = group_named(bn.get_config(), "c1")["keep"]
    assert {c for c, k in enumerate(kept) if k} == set(
        np.argsort(-gamma)[:4].tolist())

    glob = plan_pruning(model, ratio=0.5, scope="global")
    prunable = [g for g in glob.groups if not g["blocked"]]
    assert sum(g["size"] - sum(g["keep"]) for g in prunable) == 7
    assert verify(model, glob, images((8, 8, 3))) <= 1e-5

    ignored = plan_pruning(model, ratio=0.5, ignored_layers=["c2"])
    assert "ignored" in group_named(ignored.get_config(), "c2")["rule"][0]

    r1 = plan_pruning(model, criterion="random", seed=3).groups[0]["keep"]
    r2 = plan_pruning(model, criterion="random", seed=3).groups[0]["keep"]
    assert r1 == r2


def test_normalizers():
    s = np.array([1.0, 2.0, 4.0])
    np.testing.assert_allclose(normalize(s, "max"), s / 4)
    np.testing.assert_allclose(normalize(s, "l2"),
                               s / np.linalg.norm(s) * 3)
    np.testing.assert_allclose(normalize(s, "off"), s)
    model = conv_bn_conv()
    graph = channel_groups(model)
    raw, score = group_scores(graph, graph.groups[0], "l2", "max", "max")
    assert score.max() == pytest.approx(1.0)


def test_bad_input_messages():
    model = conv_bn_conv()
    with pytest.raises(ValueError, match=r"ratio must be .* \[0, 1\).*1\.0"):
        plan_pruning(model, ratio=1.0)
    with pytest.raises(ValueError, match="ratio must"):
        plan_pruning(model, ratio=-0.1)
    with pytest.raises(ValueError, match="round_to must .* got 0"):
        plan_pruning(model, round_to=0)
    with pytest.raises(ValueError, match="'nope'.*'c1', 'bn'"):
        plan_pruning(model, ignored_layers=["nope"])
    with pytest.raises(ValueError, match="criterion must"):
        plan_pruning(model, criterion="taylor")

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = Dense(2)

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(np.zeros((1, 3), "float32"))
    with pytest.raises(ValueError, match="Net is a subclassed model"):
        plan_pruning(net)


def test_mobilenet_v2_at_half_the_channels():
    model = keras.applications.MobileNetV2(
        weights=None, input_shape=(32, 32, 3), alpha=0.35,
        classifier_activation=None)
    randomize(model, bn_only=True)
    x = images((32, 32, 3), n=2)
    plan, small = prune_and_check(model, x)
    assert small.count_params() < 0.6 * model.count_params()
    blocked = [g for g in plan.groups if g["blocked"]]
    assert [g["name"] for g in blocked] == ["predictions"]
