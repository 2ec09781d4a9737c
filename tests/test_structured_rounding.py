"""Latency-aware rounding: `round_to` with `rounding="nearest"`, and the
runtime's channel block measured by `measure_channel_block`."""

import itertools

import keras
import numpy as np
import pytest

import keras_prune
from keras_prune.deploy.latency import block_of
from keras_prune.structured import apply_plan
from keras_prune.structured import model_cost
from keras_prune.structured import plan_pruning
from keras_prune.structured import verify
from keras_prune.structured.planners.common import round_kept
from tests.test_structured import group_named
from tests.test_structured import images

L = keras.layers


def two_groups():
    """Two prunable groups: 20 and 12 channels."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(20, 3, padding="same", activation="relu", name="c1")(inputs)
    x = L.Conv2D(12, 3, padding="same", activation="relu", name="c2")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(4, name="out")(x))


def kept(plan):
    """Kept channels per group, by group name."""
    return {g["name"]: sum(g["keep"]) for g in plan.groups}


def test_round_kept_is_the_nearest_multiple():
    for n, block, size in itertools.product(range(1, 70), (1, 3, 8, 16),
                                            (5, 16, 24, 70)):
        if n > size:
            continue
        up = round_kept(n, block, size, "up")
        near = round_kept(n, block, size, "nearest")
        assert up == min(size, -(-n // block) * block)
        assert near == size or near % block == 0, (n, block, size)
        assert near <= up and near >= min(size, block)
        if near < size and near > block:
            assert abs(near - n) <= block / 2, (n, block, size)
    # Ties go up; a group keeps at least one block.
    assert round_kept(8, 16, 64, "nearest") == 16
    assert round_kept(24, 16, 64, "nearest") == 32
    assert round_kept(23, 16, 64, "nearest") == 16
    assert round_kept(3, 16, 12, "nearest") == 12  # smaller than a block
    assert round_kept(7, None, 12, "nearest") == 7


def test_nearest_rounds_down_and_up_with_reasons():
    model = two_groups()
    x = images((8, 8, 3))
    up = plan_pruning(model, ratio=0.5, round_to=8)
    near = plan_pruning(model, ratio=0.5, round_to=8, rounding="nearest")
    assert near.settings["rounding"] == "nearest"
    assert up.settings["rounding"] == "up"
    # 20 -> 10 kept: up 16, nearest 8; 12 -> 6: 8 either way.
    assert kept(up) == {"c1": 16, "c2": 8, "out": 4}
    assert kept(near) == {"c1": 8, "c2": 8, "out": 4}
    c1 = group_named(near.get_config(), "c1")
    ranks = c1["rank"]
    # Ranks 8 and 9 were in the top 10 and go with the rounding, named so.
    for c, rank in enumerate(ranks):
        if rank in (8, 9):
            assert not c1["keep"][c]
            assert c1["rule"][c] == ("removed: 10 rounded down to 8 "
                                     "(round_to=8, rounding='nearest')")
    c2 = group_named(near.get_config(), "c2")
    assert sum("rounded up to 8" in r for r in c2["rule"]) == 2
    small = apply_plan(model, near)
    assert verify(model, near, x, small) <= 1e-5
    assert model_cost(small).macs < model_cost(apply_plan(model, up)).macs


def test_nearest_with_a_mac_target_holds_the_target():
    model = keras.applications.MobileNetV2(
        weights=None, input_shape=(32, 32, 3), alpha=0.35)
    plain = apply_plan(model, plan_pruning(model, ratio=0.5))
    budget = model_cost(plain).macs
    plan = plan_pruning(model, target_macs=budget, scope="layer",
                        round_to=8, rounding="nearest")
    small = apply_plan(model, plan)
    assert model_cost(small).macs <= budget
    for group in plan.groups:
        if not group["blocked"]:
            kept = sum(group["keep"])
            assert kept % 8 == 0 or kept == group["size"], group["name"]
    assert verify(model, plan, images((32, 32, 3), n=2), small) <= 1e-4


def test_a_bad_rounding_is_refused_before_any_work():
    model = two_groups()
    with pytest.raises(ValueError, match=r"rounding must be one of "
                       r"\('up', 'nearest'\), got 'down'\."):
        plan_pruning(model, round_to=8, rounding="down")
    with pytest.raises(ValueError, match="rounding must be one of"):
        plan_pruning(model, target_macs=0.5, rounding=None)
    with pytest.raises(ValueError, match="rounding must be one of"):
        keras_prune.prune_iteratively(model, steps=2, rounding="floor")


def test_block_of_finds_the_step_width():
    channels = list(range(1, 65))
    # A runtime that works in blocks of 16 output channels.
    seconds = [40e-6 + 16e-6 * ((c - 1) // 16) for c in channels]
    block, held = block_of(channels, seconds, 64)
    assert block == 16
    assert held[16] == 1.0 and held[32] == 0.5
    # Time proportional to channels: no block.
    block, _ = block_of(channels, [c * 1e-6 for c in channels], 64)
    assert block == 1


def test_measure_channel_block_on_onnx_runtime():
    pytest.importorskip("onnxruntime")
    result = keras_prune.measure_channel_block(max_channels=32, rounds=5)
    assert result.block in (1, 2, 4, 8, 16)
    assert result.held[result.block] >= 0.9
    assert result.channels == list(range(1, 33))
    assert len(result.seconds) == 32 and min(result.seconds) > 0
    text = result.summary()
    assert f"channel block {result.block}" in text
    assert "onnxruntime" in text and "1 thread(s)" in text
    assert result.to_dict()["block"] == result.block
    with pytest.raises(ValueError, match="runtime must be one of "
                       r"\('onnxruntime',\), got 'tflite'"):
        keras_prune.measure_channel_block("tflite")
    with pytest.raises(ValueError, match="threads must be an integer >= 1, "
                       "got 0"):
        keras_prune.measure_channel_block(threads=0)
    with pytest.raises(ValueError, match="max_channels must be an integer"):
        keras_prune.measure_channel_block(max_channels=2.5)
