"""prune_iteratively: every step shrinks the model, the final channel counts
are those of one-shot pruning, and each smaller model fine-tunes (its loss
goes down), on the 8x8 digits."""

import keras
import numpy as np
import pytest

from keras_prune.structured import apply_plan
from keras_prune.structured import model_cost
from keras_prune.structured import plan_pruning
from keras_prune.structured import prune_iteratively
from tests.conftest import numpy
from tests.test_structured import Conv2D
from tests.test_structured import Dense
from tests.test_structured import randomize

L = keras.layers
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def digits_cnn():
    inputs = keras.Input((8, 8, 1))
    x = Conv2D(8, 3, activation="relu", name="c1")(inputs)
    x = L.BatchNormalization(name="bn")(x)
    x = Conv2D(16, 3, activation="relu", name="c2")(x)
    x = L.GlobalAveragePooling2D()(x)
    outputs = Dense(10, name="logits")(x)
    return randomize(keras.Model(inputs, outputs))


def filters(model):
    return {name: model.get_layer(name).kernel.shape[-1]
            for name in ("c1", "c2", "logits")}


def test_steps_shrink_and_fine_tuning_trains(digits):
    (x, y), _ = digits
    x, y = x[:384], y[:384]
    model = digits_cnn()
    before = [numpy(w).copy() for w in model.weights]
    losses = []

    def fine_tune(small):
        small.compile(keras.optimizers.Adam(0.01), LOSS)
        start = small.evaluate(x, y, verbose=0, batch_size=128)
        small.fit(x, y, epochs=2, batch_size=64, verbose=0)
        end = small.evaluate(x, y, verbose=0, batch_size=128)
        losses.append((start, end))
        return end

    small, plans, histories = prune_iteratively(
        model, steps=3, ratio=0.5, fine_tune=fine_tune)

    # Step i removes what is left to reach 0.5 * i / 3 of the original.
    sizes = [filters(model)] + [
        {g["name"]: sum(g["keep"]) for g in p.groups} for p in plans]
    assert [s["c1"] for s in sizes] == [8, 7, 6, 4]
    assert [s["c2"] for s in sizes] == [16, 14, 11, 8]
    assert filters(small) == filters(apply_plan(
        model, plan_pruning(model, ratio=0.5)))
    assert [p.settings["iteration"] for p in plans] == [[1, 3], [2, 3],
                                                         [3, 3]]
    # Each plan replays on the model of the step before.
    assert plans[0].model_name == model.name
    # The smaller models fine-tune: the loss goes down at every step.
    assert len(losses) == 3 and histories == [end for _, end in losses]
    for start, end in losses:
        assert end < start
    for a, b in zip(before, model.weights):
        np.testing.assert_array_equal(a, numpy(b))


def test_fit_arguments_and_budget(digits):
    (x, y), _ = digits
    x, y = x[:256], y[:256]
    model = digits_cnn()
    model.compile("adam", LOSS)
    result = prune_iteratively(
        model, steps=2, target_params=0.4,
        fine_tune=dict(x=x, y=y, epochs=1, batch_size=128))
    budget = int(0.4 * model_cost(model).params)
    costs = [model_cost(model).params] + [
        p.settings["cost"]["planned"]["params"] for p in result.plans]
    assert costs[0] > costs[1] > costs[2]
    assert model_cost(result.model).params == costs[2] <= budget
    assert result.plans[0].settings["cost"]["budget"]["params"] < costs[0]
    assert all("loss" in h.history for h in result.histories)
    assert result.model.optimizer is not model.optimizer


def test_bad_input():
    model = digits_cnn()
    with pytest.raises(ValueError, match="steps must .* got 0"):
        prune_iteratively(model, steps=0)
    with pytest.raises(ValueError, match="fine_tune must .* got int"):
        prune_iteratively(model, fine_tune=5)
    with pytest.raises(ValueError, match="needs compile_kwargs"):
        prune_iteratively(model, fine_tune=dict(x=np.zeros((1, 8, 8, 1))))
    with pytest.raises(ValueError, match="at least x="):
        prune_iteratively(model, fine_tune=dict(epochs=1))
    with pytest.raises(ValueError, match="ratio .* or a target"):
        prune_iteratively(model, ratio=0.5, target_macs=0.5)
    with pytest.raises(ValueError, match="ratio must"):
        prune_iteratively(model, ratio=1.5)
    with pytest.raises(ValueError, match="criterion must have data"):
        prune_iteratively(model, criterion="taylor")
