"""Target mode: plans meet a parameter / MAC budget, tightly, on every
backend. Costs are checked on the real smaller model (`model_cost` of
`apply_plan`), never only on the plan's prediction."""

import functools

import keras
import numpy as np
import pytest

from keras_prune.structured import PruningPlan
from keras_prune.structured import apply_plan
from keras_prune.structured import model_cost
from keras_prune.structured import plan_for_budget
from keras_prune.structured import plan_pruning
from keras_prune.structured import verify
from tests.conftest import numpy
from tests.test_structured import Conv2D
from tests.test_structured import Dense
from tests.test_structured import DepthwiseConv2D
from tests.test_structured import conv_bn_conv
from tests.test_structured import images
from tests.test_structured import randomize

L = keras.layers
SeparableConv2D = functools.partial(
    L.SeparableConv2D, depthwise_initializer="zeros",
    pointwise_initializer="zeros")
Conv2DTranspose = functools.partial(L.Conv2DTranspose,
                                    kernel_initializer="zeros")


def mixed():
    """Every resizable layer kind: conv, BN, depthwise, separable,
    transposed, Flatten -> Dense, a residual Add."""
    inputs = keras.Input((6, 6, 3))
    x = Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = L.BatchNormalization(name="bn")(x)
    y = DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = L.Add()([x, Conv2D(8, 1, name="branch")(y)])
    x = SeparableConv2D(6, 3, name="sep")(x)                  # 4x4x6
    x = Conv2DTranspose(5, 2, strides=2, name="up")(x)        # 8x8x5
    x = L.MaxPooling2D(4)(x)                                  # 2x2x5
    x = Dense(7, activation="relu", name="fc")(L.Flatten()(x))
    outputs = Dense(3, name="out")(x)
    return randomize(keras.Model(inputs, outputs))


def one_step_less(plan, round_to):
    """The plan with the last removal of the order put back (and its
    group's kept count rounded up again): the tightness witness."""
    k = plan.settings["removed"]
    less = PruningPlan.from_json(plan.to_json())
    for g in less.groups:
        if any(f"(step {k})" in rule for rule in g["rule"]):
            n = min(g["size"], sum(g["keep"]) + (round_to or 1))
            less.keep(g["id"], [c for c, r in enumerate(g["rank"]) if r < n])
            return less
    raise AssertionError(f"no channel was removal step {k}")


def check_budget(model, x, round_to=None, **targets):
    before = [numpy(w).copy() for w in model.weights]
    original = model_cost(model)
    plan = plan_pruning(model, round_to=round_to, **targets)
    budget = plan.settings["cost"]["budget"]
    small = apply_plan(model, plan)
    cost = model_cost(small)
    # Met, and predicted exactly.
    for key in ("params", "macs"):
        if budget[key] is not None:
            assert getattr(cost, key) <= budget[key], (key, targets)
        assert plan.settings["cost"]["planned"][key] == getattr(cost, key)
    assert plan.settings["cost"]["original"] == {
        "params": original.params, "macs": original.macs}
    # Tight: one removal less would not fit.
    less = one_step_less(plan, round_to)
    bigger = model_cost(apply_plan(model, less))
    assert any(budget[key] is not None and getattr(bigger, key) > budget[key]
               for key in ("params", "macs")), targets
    assert plan.settings["cost"]["one_step_less"] == {
        "params": bigger.params, "macs": bigger.macs}
    assert verify(model, plan, x, small) <= 1e-5
    for a, b in zip(before, model.weights):
        np.testing.assert_array_equal(a, numpy(b))
    return plan, small


def test_fraction_and_absolute_budgets_are_met_tightly():
    model = mixed()
    x = images((6, 6, 3), n=2)
    cost = model_cost(model)
    plan, _ = check_budget(model, x, target_params=0.5)
    assert plan.settings["cost"]["budget"]["params"] == cost.params // 2
    check_budget(model, x, target_macs=cost.macs // 3)
    check_budget(model, x, target_macs=0.4, round_to=2)
    plan, _ = check_budget(model, x, target_params=0.6, target_macs=0.3,
                           scope="layer")
    rules = [r for g in plan.groups for r in g["rule"]]
    assert any(r.startswith("removed: budget") for r in rules)
    assert "budget" in plan.summary() and "one removal less" in plan.summary()


def test_order_removes_least_important_first():
    model = conv_bn_conv()
    plan = plan_pruning(model, target_params=0.5, criterion="l1")
    removed = [s for g in plan.groups if not g["blocked"]
               for s, k in zip(g["score"], g["keep"]) if not k]
    kept = [s for g in plan.groups if not g["blocked"]
            for s, k, r in zip(g["score"], g["keep"], g["rank"])
            if k and r > 0]
    assert max(removed) <= min(kept)
    assert all("blocked" in r for r in plan.groups[-1]["rule"])
    # Every group keeps at least one channel, ignored groups all.
    ignored = plan_pruning(model, target_macs=0.2, ignored_layers=["c2"])
    c2 = next(g for g in ignored.groups if g["name"] == "c2")
    assert all(c2["keep"]) and "ignored" in c2["rule"][0]
    assert all(any(g["keep"]) for g in ignored.groups)


def test_budget_already_met_removes_nothing():
    model = conv_bn_conv()
    plan = plan_pruning(model, target_params=1.0)
    assert all(all(g["keep"]) for g in plan.groups)
    assert plan.settings["removed"] == 0


def test_unreachable_budget_names_the_smallest_cost():
    model = conv_bn_conv()
    with pytest.raises(ValueError) as error:
        plan_pruning(model, target_params=10)
    text = str(error.value)
    assert "target_params=10 (10 params) cannot be reached" in text
    smallest = int(text.split("has ")[1].split(" params")[0].replace(",", ""))
    # That smallest model is reachable, and it is what the message says.
    plan = plan_pruning(model, target_params=smallest)
    assert model_cost(apply_plan(model, plan)).params == smallest
    assert all(sum(g["keep"]) == 1 for g in plan.groups if not g["blocked"])
    with pytest.raises(ValueError, match="round_to=4"):
        plan_pruning(model, target_params=smallest, round_to=4)


def test_bad_targets():
    model = conv_bn_conv()
    with pytest.raises(ValueError, match=r"in \(0, 1\].*target_params=1500"):
        plan_pruning(model, target_params=1500.0)
    with pytest.raises(ValueError, match="positive int .* got 0"):
        plan_pruning(model, target_macs=0)
    with pytest.raises(ValueError, match="got True"):
        plan_pruning(model, target_macs=True)
    with pytest.raises(ValueError, match="ratio .*0.5.* or a target"):
        plan_pruning(model, ratio=0.5, target_params=0.5)
    with pytest.raises(ValueError, match="needs target_params or target_macs"):
        plan_for_budget(model)
    with pytest.raises(ValueError, match="scope must"):
        plan_for_budget(model, target_params=0.5, scope="model")


def test_attention_heads_and_channels_are_costed():
    inputs = keras.Input((6, 8))
    x = Dense(12, name="embed")(inputs)
    a = L.MultiHeadAttention(4, 3, use_gate=True, name="mha",
                             kernel_initializer="zeros")(x, x)
    x = Dense(10, name="ff")(a)
    outputs = Dense(2, name="out")(L.GlobalAveragePooling1D()(x))
    model = randomize(keras.Model(inputs, outputs))
    x = np.random.default_rng(0).random((2, 6, 8)).astype("float32")
    plan, small = check_budget(model, x, target_macs=0.5)
    plan, small = check_budget(model, x, target_params=0.3, scope="layer")
    heads = next(g for g in plan.groups if g["name"] == "mha:heads")
    assert small.get_layer("mha").num_heads == sum(heads["keep"]) < 4
