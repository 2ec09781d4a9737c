"""Pruning schedules: when masks are updated and how sparse they become.

A pruning schedule is called with the current training step and answers two
questions: should the pruning masks be updated at this step, and what
fraction of the weights should be zero once they are. Schedules follow the
semantics of `tensorflow_model_optimization.sparsity.keras` ("tfmot") and are
modelled on `keras.optimizers.schedules.LearningRateSchedule`: `__call__` is
written with `keras.ops`, so `step` may be a Python int or a backend tensor.

Every subclass of `PruningSchedule` is registered with Keras serialization
when it is defined, so custom schedules save inside `.keras` files and load
back with plain `keras.saving.load_model` without a decorator.
"""

import abc
import math
import numbers

import keras
import numpy as np
from keras import ops


class PruningSchedule(abc.ABC):
    """Base class of pruning schedules.

    A schedule maps a training step to `(should_prune, sparsity)`:

    - `should_prune`: whether the pruning masks are recomputed at this step.
      Between updates the masks stay fixed.
    - `sparsity`: the fraction of weights set to zero when the masks are
      recomputed (0.5 removes half of the weights).

    Subclasses implement `__call__` with `keras.ops` (so it works on Python
    ints and on backend tensors) and `get_config`. Any subclass, including
    one defined in a user script without a decorator, is registered with
    Keras serialization under `"Custom>ClassName"` when it is defined, so it
    can be saved in a `.keras` file and loaded back in the same process.
    Defining a class with the same name again replaces the registration.

    Example:

    ```python
    class StepSparsity(keras_prune.PruningSchedule):
        # 50% sparsity from step 0, 80% from step 1000; update every 100 steps.

        def __call__(self, step):
            step = keras.ops.convert_to_tensor(step)
            sparsity = keras.ops.where(step < 1000, 0.5, 0.8)
            should_prune = self._should_prune_in_step(step, 0, -1, 100)
            return should_prune, keras.ops.cast(sparsity, "float32")

        def get_config(self):
            return {}

    StepSparsity().sparsity_at(1500)  # 0.8
    ```
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # Record "Custom>ClassName", the name a bare
        # `@keras.saving.register_keras_serializable()` would give, in both
        # the name table read by `serialize_keras_object` and the object
        # table (`keras.saving.get_custom_objects()`) read when loading.
        # A later explicit decorator overrides the recorded name. Classes
        # inside keras_prune are decorated with package="keras_prune"
        # instead, so a user class that shares a built-in's name does not
        # replace the built-in in the registry.
        if cls.__module__.partition(".")[0] != "keras_prune":
            keras.saving.register_keras_serializable(package="Custom")(cls)

    @abc.abstractmethod
    def __call__(self, step):
        """Returns the pruning decision for a training step.

        Args:
            step: Scalar integer, the current training step (a Python int or
                a backend tensor).

        Returns:
            A tuple `(should_prune, sparsity)`: a scalar bool tensor that
            says whether the masks are updated at `step`, and a scalar
            float32 tensor with the target fraction of zero weights.
        """

    @abc.abstractmethod
    def get_config(self):
        """Returns the constructor arguments of the schedule as a dict."""

    @classmethod
    def from_config(cls, config):
        """Instantiates a schedule from its config.

        Args:
            config: Output of `get_config()`.

        Returns:
            A schedule instance.
        """
        return cls(**config)

    def should_prune_at(self, step: int) -> bool:
        """Returns whether the masks are updated at `step`, as a Python bool.

        Args:
            step: Python int, the training step.

        Returns:
            `True` if the masks are recomputed at `step`.
        """
        return bool(ops.convert_to_numpy(self(step)[0]))

    def sparsity_at(self, step: int) -> float:
        """Returns the target sparsity at `step`, as a Python float.

        Args:
            step: Python int, the training step.

        Returns:
            The fraction of weights that should be zero at `step`.
        """
        return float(ops.convert_to_numpy(self(step)[1]))

    def end_sparsity(self):
        """The sparsity the schedule ends at and keeps, or None when it has
        none. Soft movement pruning ramps its threshold by
        `sparsity_at(step) / end_sparsity()`; a custom schedule supports it
        by returning its final sparsity here.
        """
        return None

    @staticmethod
    def _should_prune_in_step(step, begin_step, end_step, frequency):
        """Returns whether `step` is a pruning step, for use in `__call__`.

        Pruning happens at `begin_step`, `begin_step + frequency`,
        `begin_step + 2 * frequency`, ... as long as the step is at most
        `end_step` (`end_step=-1` means no end).

        Args:
            step: Scalar integer, a Python int or a backend tensor.
            begin_step: Python int, the first pruning step.
            end_step: Python int, the last step at which pruning may happen,
                or -1 to prune until training ends.
            frequency: Python int, the number of steps between mask updates.

        Returns:
            A scalar bool tensor.
        """
        step = ops.convert_to_tensor(step)
        should_prune = ops.logical_and(
            ops.greater_equal(step, begin_step),
            ops.equal(ops.mod(step - begin_step, frequency), 0),
        )
        if end_step != -1:
            should_prune = ops.logical_and(
                should_prune, ops.less_equal(step, end_step)
            )
        return should_prune

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _check_integer(owner, name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(
            f"{owner}: {name} must be an integer, got {value!r} "
            f"({type(value).__name__}); pass a whole number of training steps."
        )


def _check_sparsity(owner, name, value):
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not 0 <= value < 1
    ):
        raise ValueError(
            f"{owner}: {name} must be in [0, 1), got {value!r}; it is the "
            "fraction of weights set to zero (0.5 removes half), and 1.0 "
            "would prune every weight."
        )


def _check_steps(owner, begin_step, end_step, frequency):
    _check_integer(owner, "begin_step", begin_step)
    _check_integer(owner, "end_step", end_step)
    _check_integer(owner, "frequency", frequency)
    if begin_step < 0:
        raise ValueError(
            f"{owner}: begin_step must be non-negative, got {begin_step}; it "
            "is the training step of the first mask update (0 = first step)."
        )
    if frequency <= 0:
        raise ValueError(
            f"{owner}: frequency must be positive, got {frequency}; it is the "
            "number of training steps between mask updates (e.g. 100)."
        )



def _host_should_prune(step, begin_step, end_step, frequency):
    """`PruningSchedule._should_prune_in_step` on Python ints."""
    step = int(step)
    return (
        step >= begin_step
        and (end_step == -1 or step <= end_step)
        and (step - begin_step) % frequency == 0
    )

@keras.saving.register_keras_serializable(package="keras_prune")
class ConstantSparsity(PruningSchedule):
    """Prunes to a fixed sparsity at regular intervals.

    The masks are recomputed at `begin_step`, `begin_step + frequency`,
    `begin_step + 2 * frequency`, ... up to and including `end_step`, each
    time setting the `target_sparsity` fraction of the weights to zero. The
    first update jumps straight to `target_sparsity`.

    Args:
        target_sparsity: Fraction of weights set to zero, in [0, 1).
            0.5 removes half of the weights.
        begin_step: Training step of the first mask update (>= 0).
        end_step: Last training step at which the masks may be updated, or
            -1 (default) to keep updating them until training ends.
        frequency: Number of training steps between mask updates (> 0).

    Example:

    ```python
    schedule = keras_prune.ConstantSparsity(
        0.5, begin_step=1000, frequency=100
    )
    schedule.should_prune_at(1100)  # True
    schedule.should_prune_at(1150)  # False
    schedule.sparsity_at(1150)  # 0.5
    ```
    """

    def __init__(self, target_sparsity, begin_step, end_step=-1, frequency=100):
        owner = type(self).__name__
        _check_sparsity(owner, "target_sparsity", target_sparsity)
        _check_steps(owner, begin_step, end_step, frequency)
        if end_step != -1 and end_step < begin_step:
            raise ValueError(
                f"{owner}: end_step ({end_step}) must be -1 (prune until "
                f"training ends) or at least begin_step ({begin_step})."
            )
        self.target_sparsity = float(target_sparsity)
        self.begin_step = int(begin_step)
        self.end_step = int(end_step)
        self.frequency = int(frequency)

    def __call__(self, step):
        should_prune = self._should_prune_in_step(
            step, self.begin_step, self.end_step, self.frequency
        )
        return should_prune, ops.convert_to_tensor(
            self.target_sparsity, dtype="float32"
        )

    def should_prune_at(self, step):
        # Pure Python: the training callback asks at every batch.
        return _host_should_prune(
            step, self.begin_step, self.end_step, self.frequency
        )

    def sparsity_at(self, step):
        return self.target_sparsity

    def end_sparsity(self):
        return self.target_sparsity

    def get_config(self):
        return {
            "target_sparsity": self.target_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "frequency": self.frequency,
        }


@keras.saving.register_keras_serializable(package="keras_prune")
class PolynomialDecay(PruningSchedule):
    """Raises sparsity from `initial_sparsity` to `final_sparsity`.

    The masks are recomputed at `begin_step`, `begin_step + frequency`, ...
    up to and including `end_step`. The target sparsity at `step` is

    ```python
    p = clip((step - begin_step) / (end_step - begin_step), 0, 1)
    sparsity = final + (initial - final) * (1 - p) ** power
    ```

    so it equals `initial_sparsity` at `begin_step`: `initial_sparsity=0.5`
    removes half of the weights AT `begin_step` (a jump), it is not a warm
    start from 0. With `power > 1` sparsity grows fast at first and slowly
    near `end_step`, where it reaches `final_sparsity` and stays.

    The last mask update happens at the last step `begin_step + k * frequency`
    that is at most `end_step`; choose `end_step - begin_step` as a multiple
    of `frequency` so that this update applies `final_sparsity` exactly.

    Args:
        initial_sparsity: Sparsity applied at `begin_step`, in [0, 1) and at
            most `final_sparsity`.
        final_sparsity: Sparsity reached at `end_step`, in [0, 1).
        begin_step: Training step of the first mask update (>= 0).
        end_step: Training step at which `final_sparsity` is reached; must be
            greater than `begin_step`.
        power: Exponent of the polynomial, a finite number > 0 (1 is linear).
        frequency: Number of training steps between mask updates (> 0).

    Example:

    ```python
    schedule = keras_prune.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=0.8, begin_step=0, end_step=100,
        frequency=10,
    )
    schedule.sparsity_at(10)  # 0.2168
    schedule.sparsity_at(50)  # 0.7
    schedule.sparsity_at(100)  # 0.8
    schedule.should_prune_at(110)  # False: after end_step
    ```
    """

    def __init__(
        self,
        initial_sparsity,
        final_sparsity,
        begin_step,
        end_step,
        power=3,
        frequency=100,
    ):
        owner = type(self).__name__
        _check_sparsity(owner, "initial_sparsity", initial_sparsity)
        _check_sparsity(owner, "final_sparsity", final_sparsity)
        _check_steps(owner, begin_step, end_step, frequency)
        if end_step == -1:
            raise ValueError(
                f"{owner}: end_step must be set, got -1; the sparsity ramp "
                "needs a step at which it reaches final_sparsity. Use "
                "ConstantSparsity to prune without an end step."
            )
        if end_step <= begin_step:
            raise ValueError(
                f"{owner}: end_step ({end_step}) must be greater than "
                f"begin_step ({begin_step}); use ConstantSparsity for a "
                "one-step prune."
            )
        if (
            isinstance(power, bool)
            or not isinstance(power, numbers.Real)
            or not math.isfinite(power)
            or power <= 0
        ):
            raise ValueError(
                f"{owner}: power must be a finite number greater than 0, got "
                f"{power!r}; 1 raises sparsity linearly, 3 (the default) "
                "raises it fast at first and slowly near end_step."
            )
        if initial_sparsity > final_sparsity:
            raise ValueError(
                f"{owner}: initial_sparsity ({initial_sparsity}) must be ≤ "
                f"final_sparsity ({final_sparsity}): sparsity only grows "
                "during pruning (masks never regrow)."
            )
        self.initial_sparsity = float(initial_sparsity)
        self.final_sparsity = float(final_sparsity)
        self.begin_step = int(begin_step)
        self.end_step = int(end_step)
        self.power = float(power)
        self.frequency = int(frequency)

    def __call__(self, step):
        step = ops.convert_to_tensor(step)
        should_prune = self._should_prune_in_step(
            step, self.begin_step, self.end_step, self.frequency
        )
        progress = ops.divide(
            ops.cast(step - self.begin_step, "float32"),
            float(self.end_step - self.begin_step),
        )
        progress = ops.clip(progress, 0.0, 1.0)
        sparsity = self.final_sparsity + (
            self.initial_sparsity - self.final_sparsity
        ) * ops.power(1.0 - progress, self.power)
        return should_prune, ops.cast(sparsity, "float32")

    def should_prune_at(self, step):
        # Pure Python: the training callback asks at every batch.
        return _host_should_prune(
            step, self.begin_step, self.end_step, self.frequency
        )

    def sparsity_at(self, step):
        p = (int(step) - self.begin_step) / (self.end_step - self.begin_step)
        p = min(max(p, 0.0), 1.0)
        return self.final_sparsity + (
            self.initial_sparsity - self.final_sparsity
        ) * (1.0 - p) ** self.power

    def end_sparsity(self):
        return self.final_sparsity

    def get_config(self):
        return {
            "initial_sparsity": self.initial_sparsity,
            "final_sparsity": self.final_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "power": self.power,
            "frequency": self.frequency,
        }


@keras.saving.register_keras_serializable(package="keras_prune")
class FixedMasks(PruningSchedule):
    """Never updates the masks: they stay as they were set.

    The schedule of one-shot pruning (`keras_prune.prune_now`): the masks
    are computed once, before training, and fine-tuning holds them, so a
    model whose wrappers all use `FixedMasks` trains without
    `UpdatePruningStep`.

    Args:
        target_sparsity: the sparsity the masks were set to (reported).

    Example:

    ```python
    schedule = keras_prune.FixedMasks(0.9)
    schedule.should_prune_at(0)  # False
    ```
    """

    def __init__(self, target_sparsity):
        _check_sparsity("FixedMasks", "target_sparsity", target_sparsity)
        self.target_sparsity = float(target_sparsity)

    def __call__(self, step):
        return (
            ops.convert_to_tensor(False),
            ops.convert_to_tensor(self.target_sparsity, dtype="float32"),
        )

    def should_prune_at(self, step):
        return False

    def sparsity_at(self, step):
        return self.target_sparsity

    def get_config(self):
        return {"target_sparsity": self.target_sparsity}
