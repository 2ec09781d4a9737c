"""Structured pruning: remove whole channels, get a smaller, faster model.

model -> `channel_groups` (graph.py, with one rule per layer class in
layer_rules/) -> group scores (importance.py, channel criteria from
`keras_prune.criteria`) -> `PruningPlan` (plan.py, made by a planner in
planners/) -> `apply_plan` / `verify` (surgery.py); `fold_batchnorm`
(fold.py) for inference; `model_cost` (cost.py). The named choices of the
planners are `REDUCTIONS`, `NORMALIZERS`, `EQUALIZATIONS`, `SCOPES` and
`ROUNDINGS`.
"""

from keras_prune.structured.choices import EQUALIZATIONS
from keras_prune.structured.choices import NORMALIZERS
from keras_prune.structured.choices import REDUCTIONS
from keras_prune.structured.choices import ROUNDINGS
from keras_prune.structured.choices import SCOPES
from keras_prune.structured.cost import LayerCost
from keras_prune.structured.cost import ModelCost
from keras_prune.structured.cost import model_cost
from keras_prune.structured.fold import BatchNormFolding
from keras_prune.structured.fold import fold_batchnorm
from keras_prune.structured.graph import ChannelGraph
from keras_prune.structured.graph import ChannelGroup
from keras_prune.structured.graph import Member
from keras_prune.structured.graph import channel_groups
from keras_prune.structured.plan import PruningPlan
from keras_prune.structured.planners import IterativePruning
from keras_prune.structured.planners import plan_by_threshold
from keras_prune.structured.planners import plan_for_budget
from keras_prune.structured.planners import plan_pruning
from keras_prune.structured.planners import prune_iteratively
from keras_prune.structured.surgery import apply_plan
from keras_prune.structured.surgery import verify
from keras_prune.structured.surgery import zeroed_reference

__all__ = [
    "EQUALIZATIONS",
    "NORMALIZERS",
    "REDUCTIONS",
    "ROUNDINGS",
    "SCOPES",
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
