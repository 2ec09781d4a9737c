"""`random`: uniform scores, the baseline a criterion must beat."""

from keras_prune.criteria.base import Criterion
from keras_prune.criteria.base import register


@register("random")
class Random(Criterion):
    """Uniform random scores in [0, 1), a baseline.

    Seeded by the context's seed and the variable's path, so every mask
    update of a run ranks a variable's weights in the same random order
    (gradual pruning removes more of the same order, as it does by |w|)
    and a given seed prunes the same weights on every backend.
    """

    description = "uniform random scores (a baseline)"

    def score(self, layer, variable, weights, context):
        return context.rng(variable.path).random(weights.shape)
