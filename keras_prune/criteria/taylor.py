"""`taylor`: first-order Taylor importance of each weight (needs data)."""

import numpy as np

from keras_prune.criteria.base import GRADIENTS
from keras_prune.criteria.base import Criterion
from keras_prune.criteria.base import register


@register("taylor")
class Taylor(Criterion):
    """|w * dL/dw|: the loss change, to first order, of zeroing a weight.

    Molchanov et al. 2016/2019 ("Pruning convolutional neural networks for
    resource efficient inference"; "Importance estimation for neural
    network pruning"), per weight; the gradient is the mean over the
    context's data (`training=False`). At initialization this is SNIP's
    connection sensitivity (Lee et al. 2019). Needs `data=` and a loss.
    """

    needs = GRADIENTS
    description = "|w * dL/dw| on data (needs data= and a loss)"

    def score(self, layer, variable, weights, context):
        gradient = context.gradient(variable)
        return np.abs(np.asarray(weights, np.float64) * gradient)
