"""Planners: each turns a model into a `PruningPlan` its own way.

- `ratio.plan_pruning`: a fraction of every group, or of all groups;
- `budget.plan_for_budget`: the fewest removals meeting a params/MACs budget;
- `threshold.plan_by_threshold`: NVIDIA TAO's threshold on normalized norms;
- `iterative.prune_iteratively`: ratio or budget in steps, fine-tuning
  between them.

`common` holds what they share (settings checks, scoring, ordering,
rounding).
"""

from keras_prune.structured.planners.budget import plan_for_budget
from keras_prune.structured.planners.iterative import IterativePruning
from keras_prune.structured.planners.iterative import prune_iteratively
from keras_prune.structured.planners.ratio import plan_pruning
from keras_prune.structured.planners.threshold import plan_by_threshold

__all__ = [
    "IterativePruning",
    "plan_by_threshold",
    "plan_for_budget",
    "plan_pruning",
    "prune_iteratively",
]
