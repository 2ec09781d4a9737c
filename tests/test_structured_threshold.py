"""TAO mode: plans match TAO's rule, re-implemented here from ANCHORS.md, on a
MobileNetV2-style block (expand -> depthwise -> project + residual)."""

import math

import keras
import numpy as np
import pytest

from keras_prune.structured import apply_plan
from keras_prune.structured import plan_by_threshold
from keras_prune.structured import verify
from tests.conftest import numpy
from tests.test_structured import Conv2D
from tests.test_structured import Dense
from tests.test_structured import DepthwiseConv2D
from tests.test_structured import images
from tests.test_structured import randomize

L = keras.layers


def inverted_residual():
    inputs = keras.Input((6, 6, 3))
    x = Conv2D(16, 1, name="stem")(inputs)
    x = L.BatchNormalization(name="stem_bn")(x)
    y = Conv2D(48, 1, name="expand")(L.ReLU()(x))
    y = L.ReLU(6.0)(L.BatchNormalization(name="expand_bn")(y))
    y = DepthwiseConv2D(3, padding="same", name="dw")(y)
    y = L.ReLU(6.0)(L.BatchNormalization(name="dw_bn")(y))
    y = Conv2D(16, 1, name="project")(y)
    y = L.BatchNormalization(name="project_bn")(y)
    x = L.Add()([x, y])
    x = Conv2D(24, 1, name="head", activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    outputs = Dense(10, name="out")(x)
    return randomize(keras.Model(inputs, outputs))


def tao_reference(model, layers, threshold, granularity, min_num_filters,
                  criterion):
    """TAO's rule for one set of coupled layers, straight from ANCHORS.md:
    kept channels (sorted)."""
    own = []
    for name in layers:
        kernel = numpy(model.get_layer(name).kernel)
        if name == "dw":
            kernel = np.moveaxis(kernel, -2, -1)
        scores = np.sqrt((kernel.reshape(-1, kernel.shape[-1]) ** 2).sum(0))
        own.append(scores / scores.max())
    own = np.stack(own)
    merged = {
        "union": own.max(0),
        "intersection": own.min(0),
        "arithmetic_mean": own.mean(0),
        "geometric_mean": np.prod(own, 0) ** (1 / len(own)),
    }[criterion]
    width = merged.size
    num = max(min(min_num_filters, width), int((merged > threshold).sum()))
    num = min(width, math.ceil(num / granularity) * granularity)
    return sorted(np.argsort(-merged, kind="stable")[:num].tolist())


COUPLED = {"stem+project": ["stem", "project"], "expand": ["expand", "dw"],
           "head": ["head"]}


@pytest.mark.parametrize("criterion", ["union", "intersection",
                                       "arithmetic_mean", "geometric_mean"])
@pytest.mark.parametrize("threshold,granularity,min_num_filters",
                         [(0.6, 4, 4), (0.75, 8, 8), (0.9, 1, 0)])
def test_plans_match_tao_reference(criterion, threshold, granularity,
                                   min_num_filters):
    model = inverted_residual()
    plan = plan_by_threshold(
        model, threshold=threshold, granularity=granularity,
        min_num_filters=min_num_filters, equalization_criterion=criterion)
    kept = {g["name"]: [c for c, k in enumerate(g["keep"]) if k]
            for g in plan.groups}
    assert set(kept) == set(COUPLED) | {"out"}
    for name, layers in COUPLED.items():
        assert kept[name] == tao_reference(
            model, layers, threshold, granularity, min_num_filters,
            criterion), name
    assert kept["out"] == list(range(10))


def test_rules_explain_each_channel_and_surgery_matches():
    model = inverted_residual()
    plan = plan_by_threshold(model, threshold=0.75, granularity=8,
                             min_num_filters=8, excluded_layers=["head"])
    rules = {g["name"]: g["rule"] for g in plan.groups}
    assert all(r.startswith("excluded") for r in rules["head"])
    every = " ".join(rules["stem+project"] + rules["expand"])
    assert "> threshold 0.75" in every
    assert "union of" in every  # kept by the other layer's score
    assert "removed: score" in every
    small = apply_plan(model, plan)
    assert verify(model, plan, images((6, 6, 3)), small) <= 1e-5
    kept = sum(plan.groups[1]["keep"])
    assert small.get_layer("dw").kernel.shape[-2] == kept
    assert kept % 8 == 0


def test_bad_threshold_arguments():
    model = inverted_residual()
    with pytest.raises(ValueError, match="granularity must .* got 0"):
        plan_by_threshold(model, granularity=0)
    with pytest.raises(ValueError, match="threshold must"):
        plan_by_threshold(model, threshold=-1)
    with pytest.raises(ValueError, match="equalization_criterion must"):
        plan_by_threshold(model, equalization_criterion="median")
    with pytest.raises(ValueError, match="excluded_layers names the layer "
                                         "'nope'"):
        plan_by_threshold(model, excluded_layers=["nope"])
