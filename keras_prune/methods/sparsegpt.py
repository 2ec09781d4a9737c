"""SparseGPT (Frantar & Alistarh 2023) through `prune_now`.

`prune_now(model, 0.5, criterion="sparsegpt", calibration_data=x)`: each
Dense/EinsumDense layer of the pruned copy gets the Gram matrix X^T X of
its inputs on the calibration data (`criteria.calibrate`, float64), and
`methods.obs.sparsegpt` chooses its mask and updates the weights it keeps
to make up for the pruned ones (the OBS update, column by column).

Sequential (the default, as the paper): the layers are taken one top-level
layer of the model at a time (a transformer block, or one Dense of a
Sequential), each measured on the outputs of the blocks before it, already
pruned; the layers inside one block are measured together, before any of
them is pruned (the paper's code does the same). That costs one pass of
the calibration data through the model per top-level layer holding
prunable layers; `sequential=False` measures every layer in one pass, on
the dense model's activations.
"""

import numbers
import warnings

from keras import ops

from keras_prune import backend
from keras_prune.core.layers import pruned_layers
from keras_prune.criteria import calibrate
from keras_prune.criteria.base import ACTIVATIONS
from keras_prune.criteria.base import Criterion
from keras_prune.criteria.base import register
from keras_prune.methods import obs


@register("sparsegpt")
class SparseGPT(Criterion):
    """SparseGPT: prune each layer's output rows by the OBS criterion
    w^2 / [H^-1]_ii^2 and update the kept weights to reconstruct the
    layer's output on calibration data (H = X^T X).

    Not a score: it rewrites the weights it keeps, once, so it runs in
    `prune_now` only (with `calibration_data`), per output row (the same
    fraction of every row, chosen block by block: the paper's adaptive mask
    selection) or N:M (`sparsity_m_by_n`).

    Args:
        block_size: columns per block of mask selection and lazy update
            (128, the paper's).
        damping: lambda = damping * mean(diag(H)) is added to H's diagonal
            (0.01, the paper's). A layer with fewer calibration rows than
            input features has a singular H that only the damping inverts:
            it is pruned, and one UserWarning names such layers.
        sequential: each top-level layer (transformer block) measured on
            the outputs of the already-pruned layers before it (the
            paper's); False: every layer measured on the dense model in
            one pass (faster, usually a little worse).

    Example:

    ```python
    pruned, report = keras_prune.prune_now(
        model, 0.5, criterion="sparsegpt", calibration_data=x[:128])
    # Options: criterion={"name": "sparsegpt", "config": {"damping": 0.1}}
    print(report.reconstruction)
    ```
    """

    needs = ACTIVATIONS
    solves = True
    description = ("OBS pruning with weight updates from calibration data "
                   "(SparseGPT; prune_now with calibration_data)")

    def __init__(self, block_size=128, damping=0.01, sequential=True):
        if (isinstance(block_size, bool)
                or not isinstance(block_size, numbers.Integral)
                or block_size < 1):
            raise ValueError(
                f"sparsegpt: block_size must be a positive integer, got "
                f"{block_size!r}; 128 is the paper's.")
        if (isinstance(damping, bool) or not isinstance(damping, numbers.Real)
                or not 0 <= damping < float("inf")):
            raise ValueError(
                f"sparsegpt: damping must be a finite number >= 0, got "
                f"{damping!r}; 0.01 (1 % of the mean diagonal) is the "
                "paper's.")
        if not isinstance(sequential, bool):
            raise ValueError(
                f"sparsegpt: sequential must be True or False, got "
                f"{sequential!r}.")
        self.block_size = int(block_size)
        self.damping = float(damping)
        self.sequential = sequential

    def get_config(self):
        return {"block_size": self.block_size, "damping": self.damping,
                "sequential": self.sequential}

    def score(self, layer, variable, weights, context):
        raise ValueError(
            "criterion 'sparsegpt' does not score weights: it rewrites the "
            "weights it keeps from calibration data, once. Use "
            "prune_now(model, sparsity, criterion='sparsegpt', "
            "calibration_data=x).")

    def check_options(self, scope, block_size, sparsity_m_by_n,
                      global_weighting):
        """A one-line ValueError for `prune_now` options SparseGPT has no
        meaning for."""
        if tuple(block_size) != (1, 1):
            raise ValueError(
                f"criterion 'sparsegpt' prunes single weights, not blocks: "
                f"leave block_size at (1, 1) (got {tuple(block_size)}); "
                "sparsity_m_by_n=(2, 4) gives its N:M pattern.")
        if sparsity_m_by_n is not None and scope not in (None, "layer"):
            raise ValueError(
                f"criterion 'sparsegpt' with sparsity_m_by_n chooses N of "
                f"every M inputs of each output row; scope={scope!r} is not "
                "available with it: use scope='layer' (the default for N:M).")
        if sparsity_m_by_n is None and scope not in (None, "row"):
            raise ValueError(
                f"criterion 'sparsegpt' prunes the same fraction of every "
                f"output row (its adaptive mask selection), so scope="
                f"{scope!r} is not available: use scope='row' (the "
                "default), or per_layer= for sparsities per layer.")
        if global_weighting is not None:
            raise ValueError(
                f"criterion 'sparsegpt' has no global ranking, so "
                f"global_weighting={global_weighting!r} has no meaning: "
                "leave it at None.")

    def solve(self, pruned, batches, sparsity_m_by_n=None):
        """Prunes the Dense/EinsumDense wrappers of `pruned` (a pruned copy
        with all-ones masks) in place: masks and kept weights."""
        wrappers = calibrate.measured(pruned_layers(pruned))
        if sparsity_m_by_n is not None:
            _check_groups(wrappers, sparsity_m_by_n)
        stages = _stages(pruned, wrappers) if self.sequential else [wrappers]
        short = []
        for stage in stages:
            found = calibrate.collect(pruned, batches, stage, gram=True)
            for wrapper in stage:
                statistics = found[wrapper.prunable_weights[0].path]
                if statistics.rows < statistics.layout.features:
                    short.append((wrapper.layer.name, statistics))
                self._prune(wrapper, statistics, sparsity_m_by_n)
        if short:
            _warn_rank_deficient(short, self.damping)

    def _prune(self, wrapper, statistics, n_m):
        (kernel,) = wrapper.prunable_weights
        layout = statistics.layout
        rows = layout.as_rows(ops.convert_to_numpy(kernel))
        target = float(wrapper.pruning_schedule.sparsity_at(0))
        # sparsity_m_by_n is (zeros, group); the solver keeps n of m.
        keep_n_m = None if n_m is None else (n_m[1] - n_m[0], n_m[1])
        new, keep = obs.sparsegpt(
            rows, statistics.gram, target, n_m=keep_n_m,
            block_size=_block(self.block_size, n_m), damping=self.damping)
        backend.assign(kernel, layout.from_rows(new))
        wrapper.set_masks([(layout.from_rows(keep), 0.0)], 0)


def _warn_rank_deficient(short, damping):
    """One warning for every layer whose X^T X had fewer rows than
    features: rank-deficient, invertible only through the damping."""
    names = ", ".join(
        f"{name!r} ({s.rows} rows < {s.layout.features} features)"
        for name, s in short[:3])
    more = "" if len(short) <= 3 else f" and {len(short) - 3} more"
    need = max(s.layout.features for _, s in short)
    warnings.warn(
        f"sparsegpt: {len(short)} layer(s) saw fewer calibration rows "
        f"(samples x tokens) than input features: {names}{more}; their "
        f"X^T X is rank-deficient and only damping={damping} makes it "
        f"invertible, so their weight updates fit the calibration data "
        f"closely. Pass at least {need} rows of calibration_data for a "
        "full-rank estimate.", stacklevel=4)


def _block(block_size, n_m):
    """The block size, rounded down to a multiple of m for N:M (at least
    m): no group of m columns may straddle two blocks."""
    if n_m is None:
        return block_size
    m = n_m[1]
    return max(m, block_size // m * m)


def _check_groups(wrappers, n_m):
    n, m = n_m
    for wrapper in wrappers:
        (kernel,) = wrapper.prunable_weights
        features = calibrate.FeatureLayout(wrapper.layer, kernel).features
        if features % m:
            raise ValueError(
                f"sparsegpt: layer {wrapper.layer.name!r} has {features} "
                f"input features, not a multiple of m ({m}) for "
                f"sparsity_m_by_n={tuple(n_m)}; exclude it "
                f"(exclude=[{wrapper.layer.name!r}]).")


def _stages(model, wrappers):
    """`wrappers` grouped by the top-level layer of `model` holding them,
    in the model's order (the paper's sequential blocks)."""
    remaining = {id(w): w for w in wrappers}
    stages = []
    for layer in model.layers:
        inside = [layer] if id(layer) in remaining else [
            w for w in pruned_layers(layer) if id(w) in remaining]
        for wrapper in inside:
            del remaining[id(wrapper)]
        if inside:
            stages.append(inside)
    if remaining:
        stages.append(list(remaining.values()))
    return stages


def solves(criterion):
    """Whether `criterion` rewrites weights (runs through `solve`)."""
    return bool(getattr(criterion, "solves", False))

