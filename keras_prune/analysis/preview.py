"""`preview(schedule, steps)`: look at a pruning schedule before training.

Answers "what does `initial_sparsity=0.5` mean?" and "what does `frequency`
do?" with numbers: the target sparsity at every step, and the steps at which
the masks really change (only those steps prune; in between, the masks hold).
"""

import numpy as np

from keras_prune.analysis import plots
from keras_prune.core.schedules import PruningSchedule

# A preview keeps two float64 values per step and asks the schedule about
# every step: 2 million steps take ~32 MB and about a second. More is
# refused (the limit named) rather than growing without bound.
MAX_STEPS = 2_000_000


class SchedulePreview:
    """What a schedule does over `steps` training steps.

    Attributes:
        schedule: the `PruningSchedule` previewed.
        steps: number of steps previewed (0 .. steps - 1).
        target: float array, the schedule's sparsity at every step (what the
            next mask update would prune to).
        update_steps: int array, the steps at which masks are recomputed.
        sparsity: float array, the sparsity the masks actually have during
            every step: 0 before the first update, then the target of the
            latest update (a step function).
    """

    def __init__(self, schedule, steps):
        self.schedule = schedule
        self.steps = steps
        self.target = np.array(
            [schedule.sparsity_at(s) for s in range(steps)], dtype=np.float64
        )
        self.update_steps = np.array(
            [s for s in range(steps) if schedule.should_prune_at(s)],
            dtype=np.int64,
        )
        self.sparsity = np.zeros(steps, dtype=np.float64)
        for i, step in enumerate(self.update_steps):
            end = (
                self.update_steps[i + 1]
                if i + 1 < len(self.update_steps)
                else steps
            )
            self.sparsity[step:end] = self.target[step]

    @property
    def updates(self):
        """`[(step, sparsity)]` of every mask update."""
        return [(int(s), float(self.target[s])) for s in self.update_steps]

    def jumps(self, at_least=0.05):
        """Updates that raise the sparsity by `at_least` or more at once.

        `PolynomialDecay(initial_sparsity=0.5, ...)` shows here: half of the
        weights go at `begin_step`.
        """
        found, previous = [], 0.0
        for step, sparsity in self.updates:
            if sparsity - previous >= at_least:
                found.append((step, previous, sparsity))
            previous = sparsity
        return found

    def to_dict(self):
        """JSON-able: the schedule config, updates and jumps."""
        return {
            "schedule": type(self.schedule).__name__,
            "config": self.schedule.get_config(),
            "steps": self.steps,
            "updates": [
                {"step": step, "sparsity": sparsity}
                for step, sparsity in self.updates
            ],
            "jumps": [
                {"step": step, "from": before, "to": after}
                for step, before, after in self.jumps()
            ],
            "final_sparsity": float(self.sparsity[-1]) if self.steps else 0.0,
        }

    def to_text(self, max_rows=40):
        """A plain-text table of the mask updates, and what to notice."""
        config = ", ".join(
            f"{k}={v}" for k, v in self.schedule.get_config().items()
        )
        lines = [
            f"{type(self.schedule).__name__}({config}) over {self.steps} steps",
            f"{len(self.update_steps)} mask updates; masks hold between them",
            "",
            f"{'step':>8}  {'sparsity':>8}  change",
        ]
        previous, updates = 0.0, self.updates
        shown = updates
        if len(updates) > max_rows:
            half = max_rows // 2
            shown = updates[:half] + [None] + updates[-half:]
        for row in shown:
            if row is None:
                lines.append(f"{'...':>8}")
                continue
            step, sparsity = row
            before = previous
            previous = sparsity
            lines.append(
                f"{step:>8}  {sparsity:>7.1%}  {sparsity - before:+.1%}"
            )
        if not updates:
            lines.append("  (no mask update in these steps)")
        for step, before, after in self.jumps(at_least=0.2):
            lines.append(
                f"note: at step {step} the sparsity jumps from {before:.0%} "
                f"to {after:.0%} in one update"
            )
        return "\n".join(lines)

    def __str__(self):
        return self.to_text()

    def plot(self, path, title=None):
        """Writes a PNG: target curve, actual (stepped) sparsity, updates.

        Needs matplotlib (`pip install keras-prune[plots]`).
        """
        return plots.schedule_plot(self, path, title=title)


def preview(schedule, steps):
    """What `schedule` does over `steps` training steps.

    Args:
        schedule: a `PruningSchedule`.
        steps: number of training steps (> 0), e.g. `epochs * steps_per_epoch`.

    Returns:
        A `SchedulePreview`: sparsity per step, update steps, `plot(path)`.

    Example:

    ```python
    p = keras_prune.preview(
        keras_prune.PolynomialDecay(0.5, 0.9, begin_step=2000, end_step=4000),
        steps=5000)
    p.updates[0]   # (2000, 0.5): half of the weights go at step 2000
    print(p)
    ```
    """
    if not isinstance(schedule, PruningSchedule):
        raise ValueError(
            "preview expects a keras_prune.PruningSchedule (e.g. "
            f"PolynomialDecay(0.0, 0.8, 0, 1000)), got {schedule!r}."
        )
    if (
        isinstance(steps, bool)
        or not isinstance(steps, (int, np.integer))
        or steps <= 0
    ):
        raise ValueError(
            f"steps must be a positive integer (the number of training "
            f"steps, e.g. epochs * steps_per_epoch), got {steps!r}."
        )
    if steps > MAX_STEPS:
        raise ValueError(
            f"steps={steps:,} is more than a preview holds ({MAX_STEPS:,}: "
            "it keeps the sparsity of every step); preview the first "
            f"{MAX_STEPS:,} steps, or a schedule with a shorter end_step "
            "and a larger frequency."
        )
    return SchedulePreview(schedule, int(steps))
