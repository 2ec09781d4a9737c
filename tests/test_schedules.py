import math
import re

import keras
import numpy as np
import pytest
from keras import ops

from keras_prune.core import schedules
from keras_prune.core.schedules import ConstantSparsity
from keras_prune.core.schedules import PolynomialDecay
from keras_prune.core.schedules import PruningSchedule


def reference_should_prune(step, begin, end, frequency):
    return (
        begin <= step
        and (step <= end or end == -1)
        and (step - begin) % frequency == 0
    )


def reference_polynomial(step, initial, final, begin, end, power):
    p = min(max((step - begin) / (end - begin), 0.0), 1.0)
    return final + (initial - final) * (1 - p) ** power


@pytest.mark.parametrize(
    "step, expected", [(0, 0.0), (10, 0.2168), (50, 0.70), (100, 0.80)]
)
def test_polynomial_decay_known_values(step, expected):
    schedule = PolynomialDecay(0.0, 0.8, begin_step=0, end_step=100)
    assert schedule.sparsity_at(step) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "initial, final, begin, end, power, frequency",
    [
        (0.0, 0.8, 0, 100, 3, 10),
        (0.5, 0.9, 20, 170, 1, 7),
        (0.2, 0.2, 5, 6, 2.5, 1),
        (0.1, 0.95, 3, 50, 0.5, 100),
    ],
)
def test_polynomial_decay_matches_reference(
    initial, final, begin, end, power, frequency
):
    schedule = PolynomialDecay(initial, final, begin, end, power, frequency)
    for step in range(end + 30):
        should_prune, sparsity = schedule(step)
        assert bool(ops.convert_to_numpy(should_prune)) == (
            reference_should_prune(step, begin, end, frequency)
        ), step
        assert float(ops.convert_to_numpy(sparsity)) == pytest.approx(
            reference_polynomial(step, initial, final, begin, end, power),
            abs=1e-6,
        ), step


@pytest.mark.parametrize(
    "begin, end, frequency",
    [(0, -1, 100), (0, -1, 1), (13, 60, 7), (10, 10, 3), (25, -1, 4)],
)
def test_constant_sparsity_matches_reference(begin, end, frequency):
    schedule = ConstantSparsity(0.6, begin, end, frequency)
    for step in range(250):
        assert schedule.should_prune_at(step) == reference_should_prune(
            step, begin, end, frequency
        ), step
        assert schedule.sparsity_at(step) == pytest.approx(0.6, abs=1e-6)


@pytest.mark.filterwarnings("ignore:Explicitly requested dtype int64")
@pytest.mark.parametrize(
    "schedule, expected",
    [
        (PolynomialDecay(0.0, 0.8, 0, 100, frequency=10), 0.2168),
        (ConstantSparsity(0.3, 0, frequency=5), 0.3),
    ],
)
@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_call_with_tensor_step(schedule, expected, dtype):
    should_prune, sparsity = schedule(ops.convert_to_tensor(10, dtype=dtype))
    assert keras.backend.standardize_dtype(should_prune.dtype) == "bool"
    assert keras.backend.standardize_dtype(sparsity.dtype) == "float32"
    assert bool(ops.convert_to_numpy(should_prune))
    assert float(ops.convert_to_numpy(sparsity)) == pytest.approx(
        expected, abs=1e-6
    )


def test_host_methods_return_python_types():
    schedule = PolynomialDecay(0.0, 0.8, 0, 100)
    assert type(schedule.should_prune_at(np.int64(100))) is bool
    assert type(schedule.sparsity_at(100)) is float


def test_numpy_integer_arguments_are_accepted():
    schedule = ConstantSparsity(0.5, np.int64(10), np.int32(20), np.int64(5))
    assert schedule.get_config() == {
        "target_sparsity": 0.5,
        "begin_step": 10,
        "end_step": 20,
        "frequency": 5,
    }
    assert type(schedule.begin_step) is int


CONSTANT_ERRORS = [
    (
        dict(target_sparsity=1.0, begin_step=0),
        "ConstantSparsity: target_sparsity must be in [0, 1), got 1.0; it is "
        "the fraction of weights set to zero (0.5 removes half), and 1.0 "
        "would prune every weight.",
    ),
    (
        dict(target_sparsity=-0.1, begin_step=0),
        "ConstantSparsity: target_sparsity must be in [0, 1), got -0.1;",
    ),
    (
        dict(target_sparsity="0.5", begin_step=0),
        "ConstantSparsity: target_sparsity must be in [0, 1), got '0.5';",
    ),
    (
        dict(target_sparsity=0.5, begin_step=10.5),
        "ConstantSparsity: begin_step must be an integer, got 10.5 (float); "
        "pass a whole number of training steps.",
    ),
    (
        dict(target_sparsity=0.5, begin_step=0, end_step=True),
        "ConstantSparsity: end_step must be an integer, got True (bool);",
    ),
    (
        dict(target_sparsity=0.5, begin_step=0, frequency=100.0),
        "ConstantSparsity: frequency must be an integer, got 100.0 (float);",
    ),
    (
        dict(target_sparsity=0.5, begin_step=-1),
        "ConstantSparsity: begin_step must be non-negative, got -1; it is the "
        "training step of the first mask update (0 = first step).",
    ),
    (
        dict(target_sparsity=0.5, begin_step=0, frequency=0),
        "ConstantSparsity: frequency must be positive, got 0; it is the number "
        "of training steps between mask updates (e.g. 100).",
    ),
    (
        dict(target_sparsity=0.5, begin_step=10, end_step=5),
        "ConstantSparsity: end_step (5) must be -1 (prune until training ends) "
        "or at least begin_step (10).",
    ),
    (
        dict(target_sparsity=0.5, begin_step=10, end_step=-2),
        "ConstantSparsity: end_step (-2) must be -1",
    ),
]

POLYNOMIAL_ERRORS = [
    (
        dict(initial_sparsity=0.0, final_sparsity=1.0),
        "PolynomialDecay: final_sparsity must be in [0, 1), got 1.0; it is the "
        "fraction of weights set to zero (0.5 removes half), and 1.0 would "
        "prune every weight.",
    ),
    (
        dict(initial_sparsity=-0.5),
        "PolynomialDecay: initial_sparsity must be in [0, 1), got -0.5;",
    ),
    (
        dict(end_step=1000.0),
        "PolynomialDecay: end_step must be an integer, got 1000.0 (float); "
        "pass a whole number of training steps.",
    ),
    (
        dict(frequency=-5),
        "PolynomialDecay: frequency must be positive, got -5;",
    ),
    (
        dict(end_step=-1),
        "PolynomialDecay: end_step must be set, got -1; the sparsity ramp "
        "needs a step at which it reaches final_sparsity. Use ConstantSparsity "
        "to prune without an end step.",
    ),
    (
        dict(begin_step=1000, end_step=1000),
        "PolynomialDecay: end_step (1000) must be greater than begin_step "
        "(1000); use ConstantSparsity for a one-step prune.",
    ),
    (
        dict(begin_step=1000, end_step=500),
        "PolynomialDecay: end_step (500) must be greater than begin_step "
        "(1000);",
    ),
    (
        dict(power=0),
        "PolynomialDecay: power must be a finite number greater than 0, got 0; "
        "1 raises sparsity linearly, 3 (the default) raises it fast at first "
        "and slowly near end_step.",
    ),
    (
        dict(power=math.inf),
        "PolynomialDecay: power must be a finite number greater than 0, got "
        "inf;",
    ),
    (
        dict(power="3"),
        "PolynomialDecay: power must be a finite number greater than 0, got "
        "'3';",
    ),
    (
        dict(initial_sparsity=0.8, final_sparsity=0.5),
        "PolynomialDecay: initial_sparsity (0.8) must be ≤ final_sparsity "
        "(0.5): sparsity only grows during pruning (masks never regrow).",
    ),
]


@pytest.mark.parametrize("kwargs, message", CONSTANT_ERRORS)
def test_constant_sparsity_validation(kwargs, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        ConstantSparsity(**kwargs)


@pytest.mark.parametrize("kwargs, message", POLYNOMIAL_ERRORS)
def test_polynomial_decay_validation(kwargs, message):
    kwargs = {
        **dict(
            initial_sparsity=0.0, final_sparsity=0.8, begin_step=0, end_step=100
        ),
        **kwargs,
    }
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        PolynomialDecay(**kwargs)


SCHEDULES = [
    ConstantSparsity(0.25, begin_step=3, end_step=90, frequency=9),
    PolynomialDecay(0.1, 0.9, begin_step=5, end_step=205, power=2, frequency=4),
]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_config_round_trip(schedule):
    restored = type(schedule).from_config(schedule.get_config())
    assert type(restored) is type(schedule)
    assert restored.get_config() == schedule.get_config()
    assert repr(restored) == repr(schedule)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_keras_serialization_round_trip(schedule):
    config = keras.saving.serialize_keras_object(schedule)
    assert config["registered_name"] == f"keras_prune>{type(schedule).__name__}"
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is type(schedule)
    assert restored.get_config() == schedule.get_config()


def test_repr_shows_config():
    assert repr(ConstantSparsity(0.5, 0)) == (
        "ConstantSparsity(target_sparsity=0.5, begin_step=0, end_step=-1, "
        "frequency=100)"
    )


@keras.saving.register_keras_serializable(package="keras_prune_tests")
class ScheduleHolder(keras.layers.Layer):
    """A layer that stores a pruning schedule in its config."""

    def __init__(self, schedule, **kwargs):
        super().__init__(**kwargs)
        self.schedule = schedule

    def call(self, inputs):
        return inputs

    def get_config(self):
        return {
            **super().get_config(),
            "schedule": keras.saving.serialize_keras_object(self.schedule),
        }

    @classmethod
    def from_config(cls, config):
        schedule = keras.saving.deserialize_keras_object(config.pop("schedule"))
        return cls(schedule, **config)


def define_exponential_sparsity():
    # A user-style schedule: no decorator, no custom_objects at load time.
    class ExponentialSparsity(PruningSchedule):
        def __init__(self, final_sparsity, begin_step, rate, frequency=10):
            self.final_sparsity = final_sparsity
            self.begin_step = begin_step
            self.rate = rate
            self.frequency = frequency

        def __call__(self, step):
            should_prune = self._should_prune_in_step(
                step, self.begin_step, -1, self.frequency
            )
            elapsed = ops.cast(
                ops.convert_to_tensor(step) - self.begin_step, "float32"
            )
            growth = 1.0 - ops.exp(-self.rate * ops.maximum(elapsed, 0.0))
            sparsity = self.final_sparsity * growth
            return should_prune, ops.cast(sparsity, "float32")

        def get_config(self):
            return {
                "final_sparsity": self.final_sparsity,
                "begin_step": self.begin_step,
                "rate": self.rate,
                "frequency": self.frequency,
            }

    return ExponentialSparsity


def test_custom_subclass_saves_in_keras_file(tmp_path):
    define_exponential_sparsity()
    ExponentialSparsity = define_exponential_sparsity()  # redefining is fine
    assert (
        keras.saving.get_registered_name(ExponentialSparsity)
        == "Custom>ExponentialSparsity"
    )
    assert (
        keras.saving.get_custom_objects()["Custom>ExponentialSparsity"]
        is ExponentialSparsity
    )

    schedule = ExponentialSparsity(0.9, begin_step=10, rate=0.05)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, ScheduleHolder(schedule, name="holder")(inputs))
    path = tmp_path / "model.keras"
    model.save(path)

    loaded = keras.saving.load_model(path)
    restored = loaded.get_layer("holder").schedule
    assert type(restored) is ExponentialSparsity
    assert restored.get_config() == schedule.get_config()
    assert restored.should_prune_at(30) and not restored.should_prune_at(35)
    assert restored.sparsity_at(30) == pytest.approx(
        0.9 * (1 - math.exp(-0.05 * 20)), abs=1e-6
    )


def test_custom_subclass_does_not_shadow_builtin_name():
    class PolynomialDecay(ConstantSparsity):  # noqa: F811 - shadows on purpose
        pass

    assert (
        keras.saving.get_registered_name(PolynomialDecay)
        == "Custom>PolynomialDecay"
    )
    assert (
        keras.saving.get_custom_objects()["keras_prune>PolynomialDecay"]
        is schedules.PolynomialDecay
    )
