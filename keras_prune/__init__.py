"""keras-prune: neural-network pruning for Keras 3 on TensorFlow, JAX and PyTorch.

The tfmot names (`prune_low_magnitude`, `strip_pruning`, `UpdatePruningStep`,
`ConstantSparsity`, `PolynomialDecay`, ...) with Keras 3 objects: moving from
`tensorflow_model_optimization.sparsity.keras` is a change of import.

Example:

```python
import keras_prune as prune

pruned = prune.prune_low_magnitude(
    model, pruning_schedule=prune.PolynomialDecay(0.0, 0.9, 0, 1000))
pruned.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
pruned.fit(x, y, epochs=3, callbacks=[prune.UpdatePruningStep()])
final = prune.strip_pruning(pruned)
print(prune.SparsityReport(final))
```
"""

from keras_prune.analysis.compare import ComparedModel
from keras_prune.analysis.compare import ModelComparison
from keras_prune.analysis.compare import compare_models
from keras_prune.analysis.nm_check import NMCheck
from keras_prune.analysis.nm_check import check_n_m
from keras_prune.analysis.preview import SchedulePreview
from keras_prune.analysis.preview import preview
from keras_prune.analysis.reconstruction import ReconstructionReport
from keras_prune.analysis.reconstruction import reconstruction_errors
from keras_prune.analysis.report import SparsityReport
from keras_prune.analysis.report import WeightSparsity
from keras_prune.analysis.sensitivity import SensitivityResult
from keras_prune.analysis.sensitivity import sensitivity_analysis
from keras_prune.analysis.summaries import PruningSummaries
from keras_prune.analysis.tickets import LotteryResult
from keras_prune.analysis.tickets import TicketRound
from keras_prune.core.models import strip_pruning
from keras_prune.core.registry import PrunableLayer
from keras_prune.core.registry import PruneForLatencyOnXNNPack
from keras_prune.core.registry import PruningPolicy
from keras_prune.core.schedules import ConstantSparsity
from keras_prune.core.schedules import FixedMasks
from keras_prune.core.schedules import PolynomialDecay
from keras_prune.core.schedules import PruningSchedule
from keras_prune.core.spec import PruningSpec
from keras_prune.criteria.calibrate import CalibrationStatistics
from keras_prune.core.scored import PruneWithScores
from keras_prune.core.wrapper import PruneLowMagnitude
from keras_prune.deploy.compression import ModelSize
from keras_prune.deploy.compression import load_packed
from keras_prune.deploy.compression import model_size
from keras_prune.deploy.compression import save_packed
from keras_prune.deploy.export import ExportResult
from keras_prune.deploy.export import export
from keras_prune.deploy.latency import ChannelBlock
from keras_prune.deploy.latency import measure_channel_block
from keras_prune.methods.at_init import prune_at_init
from keras_prune.methods.at_init import synflow_scores
from keras_prune.methods.calibration import calibration_statistics
from keras_prune.methods.gradual import prune_low_magnitude
from keras_prune.methods.gradual import prune_scope
from keras_prune.methods.learned import supermask
from keras_prune.methods.lottery import RewoundSchedule
from keras_prune.methods.lottery import find_ticket
from keras_prune.methods.oneshot import prune_now
from keras_prune.methods.qat import prune_preserving_qat
from keras_prune.methods.qat import quantize
from keras_prune.methods.rigl import RigL
from keras_prune.methods.rigl import sparse_init
from keras_prune.structured import BatchNormFolding
from keras_prune.structured import ModelCost
from keras_prune.structured import PruningPlan
from keras_prune.structured import apply_plan
from keras_prune.structured import channel_groups
from keras_prune.structured import fold_batchnorm
from keras_prune.structured import model_cost
from keras_prune.structured import plan_by_threshold
from keras_prune.structured import plan_for_budget
from keras_prune.structured import plan_pruning
from keras_prune.structured import prune_iteratively
from keras_prune.training.callbacks import UpdatePruningStep
from keras_prune.training.loop import finalize_pruning
from keras_prune.training.loop import update_masks

# Public sub-modules: keras_prune.criteria.register(...), keras_prune.plots.*
from keras_prune import criteria  # noqa: F401
from keras_prune.analysis import plots  # noqa: F401

__version__ = "0.1.0"

__all__ = [
    "BatchNormFolding",
    "CalibrationStatistics",
    "ComparedModel",
    "ChannelBlock",
    "ConstantSparsity",
    "ExportResult",
    "FixedMasks",
    "LotteryResult",
    "ModelComparison",
    "ModelCost",
    "ModelSize",
    "NMCheck",
    "PolynomialDecay",
    "PrunableLayer",
    "PruneForLatencyOnXNNPack",
    "PruneLowMagnitude",
    "PruneWithScores",
    "PruningPlan",
    "PruningPolicy",
    "PruningSchedule",
    "PruningSpec",
    "PruningSummaries",
    "ReconstructionReport",
    "RewoundSchedule",
    "RigL",
    "SchedulePreview",
    "SensitivityResult",
    "SparsityReport",
    "TicketRound",
    "UpdatePruningStep",
    "WeightSparsity",
    "apply_plan",
    "calibration_statistics",
    "channel_groups",
    "check_n_m",
    "compare_models",
    "criteria",
    "export",
    "finalize_pruning",
    "find_ticket",
    "fold_batchnorm",
    "load_packed",
    "measure_channel_block",
    "model_cost",
    "model_size",
    "prune_low_magnitude",
    "plots",
    "preview",
    "quantize",
    "reconstruction_errors",
    "plan_by_threshold",
    "plan_for_budget",
    "plan_pruning",
    "prune_at_init",
    "prune_iteratively",
    "prune_now",
    "prune_preserving_qat",
    "prune_scope",
    "save_packed",
    "sensitivity_analysis",
    "sparse_init",
    "strip_pruning",
    "supermask",
    "synflow_scores",
    "update_masks",
]
