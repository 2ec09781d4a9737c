"""Which layers are pruned, and with which settings: `per_layer`, `exclude`.

`prune_low_magnitude(model, ..., per_layer={...}, exclude=[...])` resolves,
for every layer, the `PruningSpec` it gets (or None: left unwrapped).
Everything is validated up front, before any layer is copied, so a typo in a
layer name or a bad override fails with a message naming it.
"""

import numbers

from keras_prune.core import registry
from keras_prune.core.schedules import ConstantSparsity
from keras_prune.core.schedules import FixedMasks
from keras_prune.core.schedules import PolynomialDecay
from keras_prune.core.schedules import PruningSchedule

# What a per_layer dict may set.
_OVERRIDABLE = (
    "pruning_schedule",
    "sparsity",
    "block_size",
    "block_pooling_type",
    "sparsity_m_by_n",
    "prune_depthwise",
    "criterion",
)
# Overrides that take a layer out of a global ranking: it gets its own.
_OWN_TARGET = (
    "pruning_schedule", "sparsity", "block_size", "sparsity_m_by_n",
    "criterion",
)


def with_sparsity(schedule, sparsity, owner="per_layer"):
    """`schedule` with its final sparsity replaced by `sparsity`.

    ConstantSparsity and FixedMasks get the new target; PolynomialDecay the
    new final sparsity (and its initial one capped at it), same steps.
    """
    if isinstance(schedule, PolynomialDecay):
        return PolynomialDecay(
            min(schedule.initial_sparsity, sparsity),
            sparsity,
            schedule.begin_step,
            schedule.end_step,
            power=schedule.power,
            frequency=schedule.frequency,
        )
    if isinstance(schedule, ConstantSparsity):
        return ConstantSparsity(
            sparsity,
            schedule.begin_step,
            schedule.end_step,
            frequency=schedule.frequency,
        )
    if isinstance(schedule, FixedMasks):
        return FixedMasks(sparsity)
    raise ValueError(
        f"{owner}: a sparsity of {sparsity} needs a built-in schedule to "
        f"adapt, and the schedule is {type(schedule).__name__}; give this "
        "layer its own schedule instead: {'pruning_schedule': ...}."
    )


class Selection:
    """Resolves per-layer pruning specs.

    Args:
        base: the `PruningSpec` given to `prune_low_magnitude`.
        layers: every layer the call can reach (to check names).
        per_layer: None, or a dict whose keys are layer names or callables
            `fn(layer) -> bool`, and whose values are a float (sparsity), a
            `PruningSchedule`, or a dict of spec settings (keys in
            `_OVERRIDABLE`). A name beats a callable; callables are tried in
            order; the first match wins.
        exclude: None, or a list of layer names / callables: never pruned.
    """

    def __init__(self, base, layers, per_layer=None, exclude=None):
        self.base = base
        names = [layer.name for layer in layers]
        per_layer = dict(per_layer or {})
        if isinstance(exclude, str) or callable(exclude):
            exclude = [exclude]
        exclude = list(exclude or [])
        self._check_names("per_layer", list(per_layer), names)
        self._check_names("exclude", exclude, names)
        self._check_prunable(per_layer, layers)
        self.excluded_names = {k for k in exclude if isinstance(k, str)}
        self.excluded_fns = [k for k in exclude if callable(k)]
        self.by_name = {}
        self.by_fn = []
        for key, settings in per_layer.items():
            spec = self._resolve(key, settings)
            if isinstance(key, str):
                self.by_name[key] = spec
            else:
                self.by_fn.append((key, spec))

    @staticmethod
    def _check_names(what, keys, names):
        for key in keys:
            if isinstance(key, str):
                if key not in names:
                    shown = ", ".join(repr(n) for n in names[:30])
                    more = "" if len(names) <= 30 else ", ..."
                    raise ValueError(
                        f"{what} names the layer {key!r}, which is not in "
                        f"the model. Its layers are: {shown}{more}."
                    )
            elif not callable(key):
                raise ValueError(
                    f"{what} keys must be layer names or callables "
                    f"fn(layer) -> bool, got {key!r}."
                )

    @staticmethod
    def _check_prunable(per_layer, layers):
        """A per_layer entry that names a layer with nothing to prune would
        be ignored: say so instead."""
        by_name = {layer.name: layer for layer in layers}
        for key in per_layer:
            layer = by_name.get(key) if isinstance(key, str) else None
            if layer is not None and not registry.has_rule(layer):
                raise ValueError(
                    f"per_layer names the layer {key!r} "
                    f"({type(layer).__name__}), which has nothing to "
                    "prune: keras_prune has no pruning rule for its class. "
                    "Remove the entry, or implement get_prunable_weights() "
                    "(keras_prune.PrunableLayer) to prune it."
                )

    def _resolve(self, key, spec):
        owner = f"per_layer[{key!r}]" if isinstance(key, str) else "per_layer"
        if isinstance(spec, PruningSchedule):
            spec = {"pruning_schedule": spec}
        elif isinstance(spec, numbers.Real) and not isinstance(spec, bool):
            spec = {"sparsity": spec}
        elif not isinstance(spec, dict):
            raise ValueError(
                f"{owner} must be a sparsity (float), a PruningSchedule or a "
                f"dict of pruning arguments, got {spec!r}."
            )
        unknown = sorted(set(spec) - set(_OVERRIDABLE))
        if unknown:
            raise ValueError(
                f"{owner}: unknown argument(s) {unknown}; a per-layer dict "
                f"may set {list(_OVERRIDABLE)}."
            )
        changes = {k: v for k, v in spec.items() if k != "sparsity"}
        schedule = changes.get("pruning_schedule", self.base.pruning_schedule)
        if "sparsity" in spec:
            schedule = with_sparsity(schedule, spec["sparsity"], owner)
        elif "sparsity_m_by_n" in spec and "pruning_schedule" not in spec:
            if spec["sparsity_m_by_n"] is not None:
                m, n = spec["sparsity_m_by_n"]
                schedule = with_sparsity(schedule, m / n, owner)
        changes["pruning_schedule"] = schedule
        if any(k in spec for k in _OWN_TARGET):
            changes["scope"] = "layer"
        try:
            return self.base.replace(**changes)
        except ValueError as error:
            raise ValueError(f"{owner}: {error}") from None

    def spec_for(self, layer):
        """The `PruningSpec` of `layer`, or None if it is excluded."""
        if layer.name in self.excluded_names or any(
            fn(layer) for fn in self.excluded_fns
        ):
            return None
        if layer.name in self.by_name:
            return self.by_name[layer.name]
        for fn, spec in self.by_fn:
            if fn(layer):
                return spec
        return self.base
