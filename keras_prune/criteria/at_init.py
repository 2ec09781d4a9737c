"""Criteria for pruning at initialization: `snip` and `grasp` (need data).

SynFlow, the third, prunes in rounds between which the masks change, so it
is a method (`keras_prune.methods.at_init.prune_at_init`), not a criterion.
"""

import keras
import numpy as np
from keras import ops

from keras_prune import backend
from keras_prune.criteria.base import GRADIENTS
from keras_prune.criteria.base import Criterion
from keras_prune.criteria.base import register
from keras_prune.criteria.data import _length
from keras_prune.criteria.data import batches
from keras_prune.criteria.data import check_data
from keras_prune.criteria.data import mean_gradients
from keras_prune.criteria.taylor import Taylor


@register("snip")
class SNIP(Taylor):
    """SNIP's connection sensitivity |w * dL/dw| (Lee et al. 2019).

    The same scores as `taylor` (this is that criterion under the paper's
    name): the mean gradient over `data` of the untrained model, global
    scope, one shot. Needs `data=` and a loss.
    """

    description = "SNIP, |w * dL/dw| at initialization (needs data= and a loss)"


@register("grasp")
class GraSP(Criterion):
    """GraSP (Wang et al. 2020): keep the gradient flow after pruning.

    GraSP's score is `-w * (H g)`, where `g` is the mean gradient of the
    loss of `model(x) / temperature` over `data` and `H` its Hessian; GraSP
    removes the HIGHEST scores (those whose removal reduces the gradient
    norm least, or increases it). As this package keeps the highest scores,
    the criterion returns `w * (H g)` shifted by one constant (its minimum
    over all prunable weights) to be non-negative: the same ranking, global
    or per layer. `H g` is exact, by double backpropagation on every backend
    (`backend.hessian_vector_products`), w.r.t. the prunable weights only
    (the authors' code differentiates conv and linear weights only), with
    BatchNorm on its moving statistics (`training=False`).

    The model's output must be logits (dividing probabilities by the
    temperature is not GraSP): use a loss with `from_logits=True`.

    Args:
        temperature: T, the logits are divided by it (200 in the paper).
    """

    needs = GRADIENTS
    description = ("GraSP, -w * Hg at initialization, highest removed "
                   "(needs data= and a loss on logits)")

    def __init__(self, temperature=200.0):
        if not float(temperature) > 0:
            raise ValueError(
                f"GraSP: temperature must be > 0, got {temperature!r}; the "
                "paper uses 200."
            )
        self.temperature = float(temperature)

    def get_config(self):
        return {"temperature": self.temperature}

    def score(self, layer, variable, weights, context):
        key = ("grasp", self.temperature)
        if key not in context.cache:
            context.cache[key] = grasp_scores(
                context.model, context.data, context.loss,
                context.batch_size, self.temperature,
                prunable_variables(context.model))
        return context.cache[key][id(variable)]


def prunable_variables(model):
    """The variables a pruned model's wrappers mask, in layer order (found
    by their `prunable_weights`, so that this module needs no wrapper)."""
    found = []
    for layer in model.layers:
        if hasattr(layer, "prunable_weights"):
            found.extend(layer.prunable_weights)
        elif isinstance(layer, keras.Model):
            found.extend(prunable_variables(layer))
    return found


def grasp_scores(model, data, loss, batch_size, temperature, variables):
    """`{id(variable): w * (H g) - min}` of `variables` (see `GraSP`)."""
    check_data(data, loss, model, batch_size, "grasp")
    loss_fn = keras.losses.get(model.loss if loss is None else loss)

    def cooled(y, y_pred):
        return ops.mean(loss_fn(y, y_pred / temperature))

    gradients = mean_gradients(model, data, cooled, batch_size, "grasp")
    vectors = [gradients[id(v)] for v in variables]
    products = backend.hessian_vector_products(model, cooled, variables)
    total, seen = None, 0
    for x, y in batches(data, batch_size, "grasp"):
        n = _length(x)
        hg = [np.asarray(p, np.float64) * n for p in products(x, y, vectors)]
        total = hg if total is None else [a + b for a, b in zip(total, hg)]
        seen += n
    raw = [ops.convert_to_numpy(v).astype(np.float64) * (h / seen)
           for v, h in zip(variables, total)]
    lowest = min(float(r.min()) for r in raw)
    return {id(v): r - lowest for v, r in zip(variables, raw)}
