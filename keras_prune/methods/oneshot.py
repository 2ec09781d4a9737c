"""One-shot pruning of a trained model (`prune_now`) and the N:M checker.

`prune_now` prunes at once, without training: the returned copy holds its
masks (schedule `FixedMasks`), so ordinary fine-tuning keeps them and needs
no callback. `check_n_m` verifies an N:M pattern on any model, pruned,
stripped or loaded from a file.
"""

import numpy as np
from keras import ops

from keras_prune.core import patterns
from keras_prune.core import registry
from keras_prune.core.layers import all_layers
from keras_prune.methods.gradual import prune_low_magnitude
from keras_prune.core.layers import pruned_layers
from keras_prune.analysis.report import SparsityReport
from keras_prune.core.schedules import FixedMasks
from keras_prune.core.wrapper import update_global_masks

_CRITERIA = ("magnitude", "random")


def _criterion_scores(criterion, wrapper, seed):
    """Scores per prunable weight of `wrapper` for the named criterion."""
    if criterion == "magnitude":
        return wrapper.scores()
    if criterion == "random":
        rng = np.random.default_rng(seed)
        return [rng.random(tuple(v.shape)) for v in wrapper.prunable_weights]
    found = []
    for variable in wrapper.prunable_weights:
        score = np.asarray(
            criterion(wrapper.layer, variable, ops.convert_to_numpy(variable))
        )
        if score.shape != tuple(variable.shape):
            raise ValueError(
                f"criterion returned scores of shape {score.shape} for "
                f"{variable.path!r}, whose shape is {tuple(variable.shape)}."
            )
        found.append(np.abs(score) if np.any(score < 0) else score)
    return found


def prune_now(
    model,
    sparsity,
    scope="global",
    criterion="magnitude",
    *,
    global_weighting=None,
    per_layer=None,
    exclude=None,
    block_size=(1, 1),
    block_pooling_type="AVG",
    sparsity_m_by_n=None,
    prune_depthwise=False,
    seed=0,
):
    """Prunes a trained model at once (post-training, one-shot).

    Args:
        model: a built Functional or Sequential Keras model (not modified).
        sparsity: fraction in [0, 1) to prune: of all prunable weights
            together (`scope="global"`) or of each one (`scope="layer"`).
        scope: "global" (default: one threshold across layers) or "layer".
        criterion: "magnitude" (|w|), "random" (a baseline), or a callable
            `fn(layer, variable, weights) -> scores` returning an array of
            the weight's shape (larger = more important; negative scores are
            made absolute).
        global_weighting: None or "size" (see `prune_low_magnitude`).
        per_layer, exclude, block_size, block_pooling_type, sparsity_m_by_n,
        prune_depthwise: as in `prune_low_magnitude`. A layer with its own
            sparsity in `per_layer` is pruned to it on its own.
        seed: seed of the "random" criterion.

    Returns:
        `(pruned, report)`: a pruned copy whose masks are held (schedule
        `FixedMasks`: fine-tune it with a plain `fit`, no callback needed;
        `strip_pruning` it when done) and its `SparsityReport`.

    Example:

    ```python
    pruned, report = keras_prune.prune_now(model, 0.9, scope="global")
    pruned.compile("adam", "sparse_categorical_crossentropy")
    pruned.fit(x, y, epochs=2)          # masks held
    final = keras_prune.strip_pruning(pruned)
    ```
    """
    if criterion not in _CRITERIA and not callable(criterion):
        raise ValueError(
            f"criterion must be one of {list(_CRITERIA)} or a callable "
            f"fn(layer, variable, weights) -> scores, got {criterion!r}."
        )
    pruned = prune_low_magnitude(
        model,
        FixedMasks(sparsity),
        block_size=block_size,
        block_pooling_type=block_pooling_type,
        sparsity_m_by_n=sparsity_m_by_n,
        prune_depthwise=prune_depthwise,
        scope=scope,
        global_weighting=global_weighting,
        per_layer=per_layer,
        exclude=exclude,
    )
    wrappers = pruned_layers(pruned)
    scored = [
        (w, _criterion_scores(criterion, w, seed + i))
        for i, w in enumerate(wrappers)
    ]
    together = [(w, s) for w, s in scored if w.scope == "global"]
    for wrapper, scores in scored:
        if wrapper.scope != "global":
            target = wrapper.pruning_schedule.sparsity_at(0)
            wrapper.update_masks(target, 0, scores=scores)
    if together:
        update_global_masks(
            [w for w, _ in together], sparsity, 0, [s for _, s in together]
        )
    return pruned, SparsityReport(pruned)


class NMCheck:
    """What `check_n_m` found.

    Attributes:
        m_by_n: the `(m, n)` checked: at least m zeros in every n.
        violations: list of `(weight path, group index, non-zeros)`; the
            group index is into the weight with its input axis moved last
            and split into groups of n.
        checked: paths of the weights checked.
        skipped: `{path: reason}` of prunable weights not checked.
    """

    def __init__(self, m_by_n, violations, checked, skipped):
        self.m_by_n = m_by_n
        self.violations = violations
        self.checked = checked
        self.skipped = skipped

    @property
    def ok(self):
        """True when no checked group breaks the pattern."""
        return not self.violations

    def __bool__(self):
        return self.ok

    def __str__(self):
        m, n = self.m_by_n
        lines = [
            f"N:M check ({m} zeros in every {n}): {len(self.checked)} weights "
            f"checked, {len(self.violations)} violating groups"
        ]
        for path, group, nonzero in self.violations[:50]:
            lines.append(f"  {path} group {group}: {nonzero} non-zeros")
        if len(self.violations) > 50:
            lines.append(f"  ... {len(self.violations) - 50} more")
        for path, reason in self.skipped.items():
            lines.append(f"  skipped {path}: {reason}")
        return "\n".join(lines)


def check_n_m(model, m, n):
    """Checks that every group of n consecutive weights has >= m zeros.

    Groups run along each weight's input dimension (see
    `keras_prune.core.registry.input_axis`), as `sparsity_m_by_n=(m, n)` prunes
    them; a partial last group counts as padded with zeros. Works on pruned
    models (the effective, masked weights are checked), stripped ones and
    plain loaded models.

    In a pruned model only the weights pruned with `sparsity_m_by_n=(m, n)`
    are checked; in a plain model every prunable weight that has an input
    dimension. Others are listed in `skipped`.

    Returns:
        An `NMCheck` (truthy when valid) listing every violating group.

    Example:

    ```python
    result = keras_prune.check_n_m(model, 2, 4)
    assert result.ok, str(result)
    ```
    """
    if not (isinstance(m, int) and isinstance(n, int) and 0 < m < n):
        raise ValueError(
            f"check_n_m needs integers 0 < m < n (m zeros in every n), got "
            f"m={m!r}, n={n!r}."
        )
    violations, checked, skipped = [], [], {}
    wrappers = pruned_layers(model)
    if wrappers:
        targets = []
        for wrapper in wrappers:
            for variable, mask in zip(wrapper.prunable_weights, wrapper.masks):
                if wrapper.sparsity_m_by_n != (m, n):
                    skipped[variable.path] = (
                        f"pruned with sparsity_m_by_n="
                        f"{wrapper.sparsity_m_by_n}"
                    )
                    continue
                value = ops.convert_to_numpy(variable) * ops.convert_to_numpy(
                    mask
                )
                targets.append((wrapper.layer, variable, value))
    else:
        targets, seen = [], set()
        for layer in all_layers(model):
            for variable in registry.prunable_weights(layer):
                if id(variable) not in seen:
                    seen.add(id(variable))
                    value = ops.convert_to_numpy(variable)
                    targets.append((layer, variable, value))
    for layer, variable, value in targets:
        axis = registry.input_axis(layer, variable)
        if axis is None:
            skipped[variable.path] = "no input dimension to group"
            continue
        checked.append(variable.path)
        for group, nonzero in patterns.n_m_violations(value, (m, n), axis):
            violations.append((variable.path, group, nonzero))
    return NMCheck((m, n), violations, checked, skipped)
