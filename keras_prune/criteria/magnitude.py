"""`magnitude`: |w|, tfmot's criterion and the default everywhere."""

import numpy as np

from keras_prune import backend
from keras_prune.criteria.base import Criterion
from keras_prune.criteria.base import register


@register("magnitude")
class Magnitude(Criterion):
    """|w|: the smallest weights are pruned first.

    Computed from a view of the backend's buffer (`backend.host_view`): one
    new array per variable, never a copy of the weights first. The gradual
    path's fast updates (`training.tf_fast_path`) apply to this criterion
    only.
    """

    description = "|w| (tfmot's; the default)"

    def layer_scores(self, layer, variables, context):
        return [np.abs(backend.host_view(v)) for v in variables]

    def score(self, layer, variable, weights, context):
        return np.abs(weights)
