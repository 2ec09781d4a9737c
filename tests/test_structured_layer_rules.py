"""The per-layer-class table (`keras_prune.structured.layer_rules`): a new
layer class is one rule and a registration; layers the walker cannot
follow are copied as they are."""

import keras
import numpy as np
import pytest

from keras_prune.structured import apply_plan
from keras_prune.structured import channel_groups
from keras_prune.structured import layer_rules
from keras_prune.structured import model_cost
from keras_prune.structured import plan_pruning
from keras_prune.structured import verify
from keras_prune.structured.layer_rules import base as rules_base
from tests.test_structured import Conv2D
from tests.test_structured import Dense
from tests.test_structured import images
from tests.test_structured import randomize

L = keras.layers


class ChannelScale(L.Layer):
    """x * scale, one scale per channel (a layer Keras does not have)."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],),
                                     initializer="ones", name="scale")

    def call(self, x):
        return x * self.scale


def scaled_model():
    inputs = keras.Input((6, 6, 3))
    x = Conv2D(8, 3, name="c1")(inputs)
    x = ChannelScale(name="scale")(x)
    x = L.GlobalAveragePooling2D()(Conv2D(4, 1, name="c2")(x))
    return randomize(keras.Model(inputs, Dense(2, name="out")(x)))


@pytest.fixture
def table(monkeypatch):
    """Rules registered by a test are gone after it."""
    monkeypatch.setattr(rules_base, "_REGISTRY", dict(rules_base._REGISTRY))


def test_a_new_layer_class_is_one_rule(table):
    model = scaled_model()
    c1 = channel_groups(model).groups[0]
    assert c1.blocked == ["feeds ChannelScale 'scale', which the walker "
                          "does not know how to follow"]

    @layer_rules.register(ChannelScale)
    class ChannelScaleRule(layer_rules.LayerRule):
        role = layer_rules.THROUGH

        def axes(self, layer, role):
            return {(None, "scale"): (0, 1)} if role == "through" else {}

        def macs(self, layer, input_shapes, output_shapes, arguments):
            return 0, "0: elementwise"

    plan = plan_pruning(model, ratio=0.5)
    small = apply_plan(model, plan)
    assert small.get_layer("scale").scale.shape == (4,)
    assert verify(model, plan, images((6, 6, 3)), small) <= 1e-5
    assert model_cost(model).layer("scale").macs == 0


def test_subclasses_follow_their_base_class_rule():
    class MyDense(L.Dense):
        pass

    assert layer_rules.rule_for(MyDense(2)) is layer_rules.rule_for(
        L.Dense(2))
    assert layer_rules.exact_rule(MyDense(2)) is None   # BN folds: exact
    assert layer_rules.rule_for(L.LSTM(2)).role is None


@pytest.mark.parametrize("unfollowed", [
    lambda: L.Conv2D(4, 3, groups=2, padding="same"),
    lambda: L.DepthwiseConv2D(3, depth_multiplier=2, padding="same"),
    lambda: L.LayerNormalization(axis=[2, 3]),
], ids=["grouped", "depth_multiplier_2", "layer_norm_2_axes"])
def test_unfollowed_layers_are_copied_as_they_are(unfollowed):
    inputs = keras.Input((6, 6, 3))
    x = Conv2D(4, 1, name="c0")(inputs)
    x = unfollowed()(x)
    x = Conv2D(6, 1, name="c1")(x)
    x = Conv2D(3, 1, name="c2")(x)
    model = randomize(keras.Model(inputs, x))
    plan = plan_pruning(model, ratio=0.5)
    assert sum(g["keep"].count(False) for g in plan.groups) == 3  # c1 only
    small = apply_plan(model, plan)
    assert verify(model, plan, images((6, 6, 3)), small) <= 1e-5
    name = model.layers[2].name
    for a, b in zip(model.get_layer(name).get_weights(),
                    small.get_layer(name).get_weights()):
        np.testing.assert_array_equal(a, b)
