"""A plan keeps the ChannelGraph it was made from: replaying it on the same
model walks the model once, never again."""

import json

import keras
import numpy as np
import pytest

from keras_prune.structured import ChannelGraph
from keras_prune.structured import PruningPlan
from keras_prune.structured import apply_plan
from keras_prune.structured import plan_by_threshold
from keras_prune.structured import plan_pruning
from keras_prune.structured import prune_iteratively
from keras_prune.structured import verify
from keras_prune.structured import zeroed_reference
from tests.test_structured import Dense
from tests.test_structured import conv_bn_conv
from tests.test_structured import images

X = images((8, 8, 3))


@pytest.fixture
def built(monkeypatch):
    """The models a ChannelGraph is built for, in order."""
    models = []
    init = ChannelGraph.__init__

    def counting(self, model):
        models.append(model)
        init(self, model)

    monkeypatch.setattr(ChannelGraph, "__init__", counting)
    return models


@pytest.mark.parametrize("planner", [
    lambda m: plan_pruning(m, ratio=0.5),
    lambda m: plan_pruning(m, target_macs=0.5),
    lambda m: plan_by_threshold(m, threshold=0.9, granularity=2,
                                min_num_filters=2),
], ids=["ratio", "budget", "threshold"])
def test_plan_apply_verify_walk_the_model_once(built, planner):
    model = conv_bn_conv()
    plan = planner(model)
    small = apply_plan(model, plan)
    assert verify(model, plan, X, small) <= 1e-5
    assert verify(model, plan, X) <= 1e-5
    zeroed_reference(model, plan)
    assert built == [model]


def test_a_plan_from_json_walks_the_model_once(built):
    model = conv_bn_conv()
    text = plan_pruning(model, ratio=0.5).to_json()
    loaded = PruningPlan.from_json(text)
    small = apply_plan(model, loaded)
    assert verify(model, loaded, X, small) <= 1e-5
    assert verify(model, loaded, X) <= 1e-5
    assert built == [model, model]             # planning, then replaying
    assert json.loads(loaded.to_json()) == json.loads(text)  # no graph in it


def test_another_model_gets_its_own_graph(built):
    model = conv_bn_conv()
    plan = plan_pruning(model, ratio=0.5)
    twin = keras.models.clone_model(model)     # same names and shapes
    twin.set_weights(model.get_weights())
    small = apply_plan(twin, plan)
    assert built == [model, twin]
    assert verify(twin, plan, X, small) <= 1e-5
    assert built == [model, twin]              # kept for the twin now
    np.testing.assert_allclose(
        small.predict_on_batch(X), apply_plan(model, plan).predict_on_batch(X),
        rtol=1e-6, atol=1e-6)
    assert built == [model, twin, model]


def test_a_changed_sequential_is_walked_again(built):
    model = keras.Sequential([keras.Input((5,)), Dense(8, name="h"),
                              Dense(4, name="o")])
    plan = plan_pruning(model, ratio=0.5)
    model.pop()
    model.add(Dense(3, name="other"))
    with pytest.raises(ValueError, match="does not match"):
        apply_plan(model, plan)
    assert len(built) == 2


def test_iterative_steps_walk_each_model_once(built):
    model = conv_bn_conv()
    result = prune_iteratively(model, steps=3, ratio=0.5)
    assert built[0] is model and len(built) == 3   # one per step's model
    assert result.model.get_layer("c1").filters == 4
