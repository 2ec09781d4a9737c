"""`PruningSpec`: the settings that travel together, validated once.

A pruned layer is described by its schedule (when and how much), its
criterion (which weights matter), its pattern (unstructured, blocks, N:M),
its scope (its own ranking, or one across the model) and a few options.
`prune_low_magnitude` builds one spec, `per_layer` derives others from it
with `replace`, and each `PruneLowMagnitude` wrapper holds one: every
combination is checked when a spec is made, never again.
"""

import dataclasses
import numbers
from typing import Any

import keras
import numpy as np

from keras_prune.core.fake_quant import MODES as QAT_MODES
from keras_prune.core.schedules import ConstantSparsity
from keras_prune.core.schedules import FixedMasks
from keras_prune.core.schedules import PruningSchedule
from keras_prune.criteria import base as criteria

POOLING_TYPES = ("AVG", "MAX")
SCOPES = ("layer", "global", "row")
WEIGHTINGS = (None, "size")


@dataclasses.dataclass(frozen=True, eq=False)
class PruningSpec:
    """What, how and when one layer (or a whole model) is pruned.

    Args:
        pruning_schedule: a `PruningSchedule`; None: tfmot's default
            `ConstantSparsity(0.5, 0)` (with `sparsity_m_by_n=(m, n)`:
            `ConstantSparsity(m / n, 0)`).
        block_size: `(1, 1)` (unstructured) or `(r, c)` blocks of each
            weight's `(-1, last axis)` matrix view.
        block_pooling_type: "AVG" or "MAX": how a block's scores combine.
        sparsity_m_by_n: None or `(m, n)`: m zeros in every n consecutive
            weights along the input dimension.
        prune_depthwise: also prune depthwise kernels.
        scope: "layer", "global" (one ranking across the model) or "row"
            (each output of a layer keeps the same fraction of its inputs).
        global_weighting: None or "size" (global scores divided by
            sqrt(weight size)).
        criterion: how masks are recomputed at schedule steps: a
            registered criterion name, a `Criterion`, or a function
            `fn(layer, variable, weights) -> scores`; None for masks that
            are set directly and never recomputed (`FixedMasks` only).
        qat_mode: None or "int8" (train under int8 fake quantization).

    Raises:
        ValueError: naming the bad value and the fix, when any setting or
            combination is invalid.

    Example:

    ```python
    spec = PruningSpec(keras_prune.PolynomialDecay(0.0, 0.8, 0, 1000),
                       scope="global")
    head = spec.replace(pruning_schedule=keras_prune.ConstantSparsity(0.5, 0),
                        scope="layer")
    ```
    """

    pruning_schedule: Any = None
    block_size: Any = (1, 1)
    block_pooling_type: str = "AVG"
    sparsity_m_by_n: Any = None
    prune_depthwise: bool = False
    scope: str = "layer"
    global_weighting: Any = None
    criterion: Any = "magnitude"
    qat_mode: Any = None

    def __post_init__(self):
        def set_(name, value):  # frozen: fields are normalized once, here
            object.__setattr__(self, name, value)

        schedule = self.pruning_schedule
        if schedule is None:
            schedule = default_schedule(self.sparsity_m_by_n)
        elif isinstance(schedule, dict):
            schedule = keras.saving.deserialize_keras_object(schedule)
        if not isinstance(schedule, PruningSchedule):
            raise ValueError(
                "pruning_schedule must be a keras_prune.PruningSchedule (e.g. "
                f"ConstantSparsity(0.5, 0)), got {schedule!r}."
            )
        set_("pruning_schedule", schedule)
        if self.block_pooling_type not in POOLING_TYPES:
            raise ValueError(
                f"block_pooling_type must be 'AVG' or 'MAX', got "
                f"{self.block_pooling_type!r}."
            )
        set_("block_size", _check_block_size(self.block_size))
        if self.scope not in SCOPES:
            raise ValueError(
                "scope must be 'layer', 'global' or 'row', got "
                f"{self.scope!r}."
            )
        if self.global_weighting not in WEIGHTINGS:
            raise ValueError(
                "global_weighting must be None or 'size', got "
                f"{self.global_weighting!r}."
            )
        if self.qat_mode not in (None,) + QAT_MODES:
            raise ValueError(
                f"qat_mode must be None or one of {list(QAT_MODES)}, got "
                f"{self.qat_mode!r}."
            )
        set_("prune_depthwise", bool(self.prune_depthwise))
        if self.criterion is None:
            if not isinstance(schedule, FixedMasks):
                raise ValueError(
                    "criterion=None (masks set directly, never recomputed) "
                    "needs the FixedMasks schedule; got "
                    f"{type(schedule).__name__}. Name a criterion, e.g. "
                    "'magnitude'."
                )
        else:
            set_("criterion", criteria.get(self.criterion))
            if getattr(self.criterion, "solves", False):
                raise ValueError(
                    f"criterion {self.criterion.name!r} rewrites the weights "
                    "it keeps from calibration data, once: it does not "
                    "rank weights for a wrapper. Use prune_now(model, "
                    f"sparsity, criterion={self.criterion.name!r}, "
                    "calibration_data=x), then fine-tune with a plain fit."
                )
            if not isinstance(schedule, FixedMasks):
                # A gradual schedule recomputes masks later, possibly after
                # a save and reload: the criterion must reload by name.
                criteria.serialize(self.criterion)
        m_by_n = self.sparsity_m_by_n
        if m_by_n is not None:
            m_by_n = check_m_by_n(m_by_n, schedule)
            if self.block_size != (1, 1):
                raise ValueError(
                    f"sparsity_m_by_n={m_by_n} and block_size="
                    f"{self.block_size} cannot be combined: choose one "
                    "pattern."
                )
        set_("sparsity_m_by_n", m_by_n)
        if self.scope == "row" and (self.block_size != (1, 1) or m_by_n):
            raise ValueError(
                "scope='row' ranks single weights within each output row; it "
                "does not combine with block_size or sparsity_m_by_n (N:M "
                "already ranks within each row's groups: use scope='layer')."
            )
        if self.scope == "global" and (self.block_size != (1, 1) or m_by_n):
            raise ValueError(
                "scope='global' ranks single weights across layers; it does "
                "not combine with block_size or sparsity_m_by_n (use "
                "scope='layer')."
            )

    def replace(self, **changes):
        """A new spec with `changes`, validated as a whole."""
        return dataclasses.replace(self, **changes)

    @property
    def unstructured(self):
        """No block or N:M pattern: single weights are ranked."""
        return self.block_size == (1, 1) and self.sparsity_m_by_n is None

    @property
    def plain_magnitude(self):
        """|w| masks of each layer alone (no pattern, no global ranking):
        what the fast update paths compute."""
        return (
            self.scope == "layer"
            and self.unstructured
            and self.criterion is not None
            and self.criterion.name == "magnitude"
        )

    def get_config(self):
        """The wrapper's saved settings (the keys of keras-prune 0.1.0, and
        the criterion)."""
        return {
            "pruning_schedule": keras.saving.serialize_keras_object(
                self.pruning_schedule
            ),
            "block_size": list(self.block_size),
            "block_pooling_type": self.block_pooling_type,
            "prune_depthwise": self.prune_depthwise,
            "sparsity_m_by_n": (
                list(self.sparsity_m_by_n) if self.sparsity_m_by_n else None
            ),
            "scope": self.scope,
            "global_weighting": self.global_weighting,
            "criterion": (
                None if self.criterion is None
                else criteria.serialize(self.criterion)
            ),
            "qat_mode": self.qat_mode,
        }

    def __eq__(self, other):
        return isinstance(other, PruningSpec) and all(
            getattr(self, f.name) is getattr(other, f.name)
            or getattr(self, f.name) == getattr(other, f.name)
            for f in dataclasses.fields(self)
        )

    __hash__ = None


FIELDS = tuple(f.name for f in dataclasses.fields(PruningSpec))


def _check_block_size(block_size):
    try:
        block_size = tuple(block_size)
    except TypeError:
        block_size = (block_size,)
    if len(block_size) != 2 or not all(
        isinstance(b, (int, np.integer)) and not isinstance(b, bool) and b >= 1
        for b in block_size
    ):
        raise ValueError(
            f"block_size must be two positive integers, got {block_size!r}."
        )
    return tuple(int(b) for b in block_size)


def check_m_by_n(m_by_n, schedule):
    """`(m, n)` as ints, checked against the schedule's final sparsity."""
    try:
        values = tuple(m_by_n)
        # Integers only (tfmot too): (2.0, 4.0) is refused, not truncated.
        valid = len(values) == 2 and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool)
            for v in values)
        m, n = (int(v) for v in values) if valid else (0, 0)
        valid = valid and 0 < m < n
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(
            "sparsity_m_by_n must be (m, n) with 0 < m < n: m zeros in every "
            f"n consecutive weights, e.g. (2, 4); got {m_by_n!r}."
        )
    final = None if schedule is None else final_sparsity(schedule)
    if final is not None and not np.isclose(final, m / n):
        raise ValueError(
            f"sparsity_m_by_n=({m}, {n}) prunes exactly {m / n:.0%} of the "
            f"weights, but the pruning schedule ends at {final:.0%}. Give the "
            f"schedule a final sparsity of {m / n} (ConstantSparsity({m / n}, "
            f"begin_step) for one-shot {m}:{n}, PolynomialDecay(0.0, {m / n}, "
            "...) for gradual), or leave pruning_schedule out."
        )
    return m, n


def final_sparsity(schedule):
    """The sparsity a built-in schedule ends at (None if unknown)."""
    for name in ("final_sparsity", "target_sparsity"):
        value = getattr(schedule, name, None)
        if isinstance(value, numbers.Real):
            return float(value)
    return None


def default_schedule(sparsity_m_by_n=None):
    """tfmot's default `ConstantSparsity(0.5, 0)`; for N:M, one-shot m/n."""
    if sparsity_m_by_n is None:
        return ConstantSparsity(0.5, 0)
    m, n = check_m_by_n(sparsity_m_by_n, None)
    return ConstantSparsity(m / n, 0)
