"""Structured pruning: remove whole channels, get a smaller, faster model.

model -> `channel_groups` (graph.py) -> group scores (importance.py) ->
`PruningPlan` (plan.py) -> `apply_plan` / `verify` (surgery.py);
`fold_batchnorm` (fold.py) for inference.
"""

from keras_prune.structured.graph import ChannelGraph
from keras_prune.structured.graph import ChannelGroup
from keras_prune.structured.graph import Member
from keras_prune.structured.graph import channel_groups
from keras_prune.structured.iterative import IterativePruning
from keras_prune.structured.iterative import prune_iteratively
from keras_prune.structured.plan import PruningPlan
from keras_prune.structured.plan import plan_pruning
from keras_prune.structured.budget import plan_for_budget
from keras_prune.structured.cost import LayerCost
from keras_prune.structured.cost import ModelCost
from keras_prune.structured.cost import model_cost
from keras_prune.structured.fold import BatchNormFolding
from keras_prune.structured.fold import fold_batchnorm
from keras_prune.structured.threshold import plan_by_threshold
from keras_prune.structured.surgery import apply_plan
from keras_prune.structured.surgery import verify
from keras_prune.structured.surgery import zeroed_reference

__all__ = [
    "BatchNormFolding",
    "ChannelGraph",
    "ChannelGroup",
    "IterativePruning",
    "LayerCost",
    "Member",
    "ModelCost",
    "PruningPlan",
    "apply_plan",
    "channel_groups",
    "fold_batchnorm",
    "model_cost",
    "plan_by_threshold",
    "plan_for_budget",
    "plan_pruning",
    "prune_iteratively",
    "verify",
    "zeroed_reference",
]
