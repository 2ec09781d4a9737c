"""Channel criteria come from the shared registry (`keras_prune.criteria`):
a criterion the user registers plans like a built-in one."""

import numpy as np
import pytest

from keras_prune import criteria
from keras_prune.criteria import base as criteria_base
from keras_prune.criteria import channel
from keras_prune.criteria.channel import ChannelCriterion
from keras_prune.structured import apply_plan
from keras_prune.structured import plan_pruning
from keras_prune.structured import verify
from tests.test_structured import conv_bn_conv
from tests.test_structured import group_named
from tests.test_structured import images


@pytest.fixture
def registry(monkeypatch):
    """Criteria registered by a test are gone after it."""
    monkeypatch.setattr(criteria_base, "_REGISTRY",
                        dict(criteria_base._REGISTRY))


def test_built_in_channel_criteria():
    assert {"l1", "l2", "bn"} <= set(criteria.available(criteria.CHANNEL))
    for name in ("l1", "l2", "bn", "taylor", "random"):
        found = channel.get(name)
        assert found.name == name
        assert found.granularity == criteria.CHANNEL
    assert channel.get("taylor").needs == criteria.GRADIENTS
    # The weight criteria of the same names are still the weight ones.
    assert criteria.get("random").granularity == criteria.WEIGHT
    assert criteria.get("taylor").granularity == criteria.WEIGHT


def test_user_registered_channel_criterion_plans(registry):
    @criteria.register("first_filters")
    class FirstFilters(ChannelCriterion):
        def member_scores(self, layer, member, size, context):
            if member.role != "out":
                return None
            return np.arange(size, 0, -1.0)     # earlier filters first

    model = conv_bn_conv()
    plan = plan_pruning(model, ratio=0.5, criterion="first_filters")
    assert group_named(plan.get_config(), "c1")["keep"] == [True] * 4 + [
        False] * 4
    assert group_named(plan.get_config(), "c2")["keep"] == [True] * 3 + [
        False] * 3
    assert plan.settings["criterion"] == "first_filters"
    x = images((8, 8, 3))
    assert verify(model, plan, x, apply_plan(model, plan)) <= 1e-5
    # An instance works too, and the global scope ranks by its scores.
    same = plan_pruning(model, ratio=0.5, criterion=FirstFilters())
    assert same.groups == plan.groups
    assert "first_filters" in channel.available()


def test_group_level_criterion(registry):
    @criteria.register("last_first")
    class LastFirst(ChannelCriterion):
        def group_scores(self, group, context):
            return [np.arange(1.0, group.size + 1)]

    plan = plan_pruning(conv_bn_conv(), ratio=0.25, criterion="last_first")
    assert group_named(plan.get_config(), "c1")["keep"] == [False] * 2 + [
        True] * 6


def test_unusable_criteria_say_why(registry):
    model = conv_bn_conv()
    with pytest.raises(ValueError, match=(
            r"criterion must be one of \('l1', 'l2', 'bn', 'taylor', "
            r"'random'\), got 'magnitude'")):
        plan_pruning(model, criterion="magnitude")
    with pytest.raises(ValueError, match="scores weights"):
        plan_pruning(model, criterion=criteria.get("magnitude"))

    @criteria.register("needs_activations")
    class NeedsActivations(ChannelCriterion):
        needs = criteria.ACTIVATIONS

    with pytest.raises(ValueError, match="needs activations"):
        plan_pruning(model, criterion="needs_activations")
