"""`preview(schedule, steps)` answers what a schedule does, step by step."""

import json
import re

import pytest

import keras_prune


def polynomial(step, initial, final, begin, end, power):
    # tfmot's formula, written out independently of schedules.py.
    p = min(max((step - begin) / (end - begin), 0.0), 1.0)
    return final + (initial - final) * (1 - p) ** power


def test_polynomial_values_match_the_formula():
    schedule = keras_prune.PolynomialDecay(0.5, 0.9, begin_step=2000,
                                           end_step=4000, frequency=100)
    p = keras_prune.preview(schedule, 5000)
    for step in (0, 1999, 2000, 2050, 3000, 3999, 4000, 4999):
        assert p.target[step] == pytest.approx(
            polynomial(step, 0.5, 0.9, 2000, 4000, 3), abs=1e-6)
    assert p.update_steps.tolist() == list(range(2000, 4001, 100))
    # Masks are dense until step 2000, then jump to 50 % at once; they hold
    # between updates.
    assert p.sparsity[1999] == 0.0
    assert p.sparsity[2000] == pytest.approx(0.5)
    assert p.sparsity[2099] == pytest.approx(0.5)
    assert p.sparsity[2100] == pytest.approx(
        polynomial(2100, 0.5, 0.9, 2000, 4000, 3), abs=1e-6)
    assert p.sparsity[4999] == pytest.approx(0.9)
    assert p.jumps()[0] == (2000, 0.0, 0.5)
    text = p.to_text()
    assert "note: at step 2000 the sparsity jumps from 0% to 50% in one update" in text
    assert "21 mask updates" in text
    data = json.loads(json.dumps(p.to_dict()))
    assert data["updates"][0] == {"step": 2000, "sparsity": 0.5}
    assert data["final_sparsity"] == pytest.approx(0.9)


def test_constant_sparsity_frequency():
    schedule = keras_prune.ConstantSparsity(0.8, begin_step=10, end_step=45,
                                            frequency=10)
    p = keras_prune.preview(schedule, 60)
    assert p.updates == [(10, 0.8), (20, 0.8), (30, 0.8), (40, 0.8)]
    assert p.sparsity[:10].max() == 0.0 and p.sparsity[10:].min() == 0.8


def test_custom_schedule():
    class Steps(keras_prune.PruningSchedule):
        def __call__(self, step):
            raise NotImplementedError  # preview uses the host-side methods

        def should_prune_at(self, step):
            return step in (3, 7)

        def sparsity_at(self, step):
            return 0.3 if step < 7 else 0.6

        def get_config(self):
            return {}

    p = keras_prune.preview(Steps(), 10)
    assert p.updates == [(3, 0.3), (7, 0.6)]
    assert p.sparsity.tolist() == [0, 0, 0, .3, .3, .3, .3, .6, .6, .6]


def test_bad_input():
    with pytest.raises(ValueError, match=re.escape(
            "preview expects a keras_prune.PruningSchedule")):
        keras_prune.preview(0.5, 100)
    schedule = keras_prune.ConstantSparsity(0.5, 0)
    with pytest.raises(ValueError, match=re.escape(
            "steps must be a positive integer (the number of training steps, "
            "e.g. epochs * steps_per_epoch), got 0.")):
        keras_prune.preview(schedule, 0)
    with pytest.raises(ValueError, match="got 10.5"):
        keras_prune.preview(schedule, 10.5)
