"""`check_n_m`: verifies an N:M pattern on any model (pruned, stripped or
loaded from a file)."""

from keras import ops

from keras_prune.core import patterns
from keras_prune.core import registry
from keras_prune.core.walk import all_layers
from keras_prune.core.layers import pruned_layers


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
