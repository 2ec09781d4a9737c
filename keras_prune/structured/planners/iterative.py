"""Iterative structured pruning: prune a little, fine-tune, repeat.

`prune_iteratively(model, steps=3, ratio=0.5, fine_tune=...)` reaches the
same final channel counts as one `plan_pruning(model, ratio=0.5)` (scope
`"layer"`), in `steps` rounds: round i plans on the current (already
smaller, fine-tuned) model, so the scores see what fine-tuning changed,
removes what is left to reach `ratio * i / steps` of the ORIGINAL channels
of every group (Torch-Pruning's linear `iterative_steps`), builds the
smaller model and fine-tunes it. With `target_params` / `target_macs` the
budget moves linearly from the original cost to the target instead.

Why a loop and not a callback: surgery builds a new, smaller model; a
callback cannot replace the model `fit` is training. Fine-tuning is yours:
a function of the model, or `fit` arguments.
"""

import collections
import numbers

import keras

from keras_prune.criteria import GRADIENTS
from keras_prune.structured.cost import model_cost
from keras_prune.structured.graph import channel_groups
from keras_prune.structured.planners.budget import absolute_budget
from keras_prune.structured.planners.budget import check_target
from keras_prune.structured.planners.budget import plan_for_budget
from keras_prune.structured.planners.common import check_ratio
from keras_prune.structured.planners.common import check_settings
from keras_prune.structured.planners.ratio import ratio_plan
from keras_prune.structured.surgery import apply_plan

IterativePruning = collections.namedtuple(
    "IterativePruning", ["model", "plans", "histories"])
IterativePruning.__doc__ = """What `prune_iteratively` made.

Attributes:
    model: the final smaller model.
    plans: one `PruningPlan` per step; plan i was made for (and replays on)
        the model of step i - 1 (plan 0: the input model).
    histories: what fine-tuning returned at each step (a
        `keras.callbacks.History` for `fit` arguments), or None.
"""


def prune_iteratively(model, steps=3, ratio=None, *, target_params=None,
                      target_macs=None, fine_tune=None, compile_kwargs=None,
                      criterion="l2", round_to=None, ignored_layers=(),
                      scope=None, reduction="mean", normalizer="max", seed=0,
                      data=None, loss=None, batch_size=32, rounding="up"):
    """Prune in `steps` rounds, fine-tuning after each.

    Args:
        model: a built Functional or Sequential model (not modified).
        steps: number of prune + fine-tune rounds (>= 1).
        ratio: the final fraction of every group's channels to remove (of
            the ORIGINAL model's), reached linearly: step i removes what is
            left to reach `ratio * i / steps`. Default 0.5 when no target is
            given.
        target_params / target_macs: the final budget instead (int =
            absolute, float = fraction of the original, as in
            `plan_pruning`), reached linearly from the original cost.
        fine_tune: None (no fine-tuning), a function `fine_tune(model)`
            called on each new smaller model (its result is kept in
            `histories`), or a dict of `model.fit` arguments (`x`, `y`,
            `epochs`, ...; `verbose` defaults to 0).
        compile_kwargs: with `fit` arguments: how to compile each new model
            (`dict(optimizer=..., loss=...)`); default: the input model's
            compile configuration (each step gets a fresh optimizer).
        criterion, round_to, ignored_layers, scope, reduction, normalizer,
            seed, data, loss, batch_size, rounding: as for `plan_pruning`; with
            `criterion="taylor"`, `data` and `loss` score every step.

    Returns:
        `IterativePruning(model, plans, histories)`.

    Example:

    ```python
    def fine_tune(small):
        small.compile("adam", "sparse_categorical_crossentropy")
        small.fit(x, y, epochs=1, verbose=0)

    small, plans, _ = prune_iteratively(model, steps=3, ratio=0.5,
                                        fine_tune=fine_tune)
    ```
    """
    if (not isinstance(steps, numbers.Integral) or isinstance(steps, bool)
            or steps < 1):
        raise ValueError(
            f"steps must be a positive integer (the prune + fine-tune "
            f"rounds), got {steps!r}."
        )
    budget_mode = target_params is not None or target_macs is not None
    if budget_mode and ratio is not None:
        raise ValueError(
            f"prune_iteratively: give ratio ({ratio!r}) or a target "
            f"(target_params={target_params!r}, "
            f"target_macs={target_macs!r}), not both."
        )
    ratio = 0.5 if ratio is None and not budget_mode else ratio
    if not budget_mode:
        check_ratio(ratio)
    check_target("target_params", target_params)
    check_target("target_macs", target_macs)
    if scope is None:
        scope = "global" if budget_mode else "layer"
    found = check_settings(criterion, round_to, scope, reduction, normalizer,
                           data, loss, model, batch_size, rounding)
    tune = _fine_tuner(model, fine_tune, compile_kwargs)
    if found.needs == GRADIENTS and loss is None:
        loss = model.loss  # the smaller models are not compiled with it

    if budget_mode:
        original = model_cost(model)
        final = {"params": absolute_budget(target_params, original.params),
                 "macs": absolute_budget(target_macs, original.macs)}
    else:
        # The first step plans on this graph; the ratio is of its sizes.
        graph = channel_groups(model)
        base_sizes = {g.name: g.size for g in graph.groups}
    common = dict(criterion=criterion, round_to=round_to, rounding=rounding,
                  ignored_layers=ignored_layers, scope=scope,
                  reduction=reduction, normalizer=normalizer, seed=seed,
                  data=data, loss=loss, batch_size=batch_size)
    current, plans, histories = model, [], []
    for step in range(1, steps + 1):
        if budget_mode:
            targets = {
                f"target_{key}": _between(getattr(original, key), final[key],
                                          step, steps)
                for key in ("params", "macs")
            }
            plan = plan_for_budget(current, **targets, **common)
        else:
            plan = ratio_plan(current, ratio * step / steps,
                              base_sizes=base_sizes,
                              graph=graph if step == 1 else None, **common)
        plan.settings["iteration"] = [step, steps]
        current = apply_plan(current, plan)
        plans.append(plan)
        histories.append(tune(current))
    return IterativePruning(current, plans, histories)


def _between(start, end, step, steps):
    """The step's absolute budget on the line from `start` to `end`."""
    if end is None:
        return None
    if step == steps:
        return end
    return int(round(start - (start - end) * step / steps))


def _fine_tuner(model, fine_tune, compile_kwargs):
    """A function `new model -> history`, checked before any work."""
    if fine_tune is None:
        return lambda small: None
    if callable(fine_tune):
        return fine_tune
    if not isinstance(fine_tune, dict):
        raise ValueError(
            "fine_tune must be None, a function of the model, or a dict of "
            f"model.fit arguments; got {type(fine_tune).__name__}."
        )
    if "x" not in fine_tune:
        raise ValueError(
            "fine_tune as model.fit arguments needs at least x= (and y= "
            f"unless x is a dataset); got the keys {sorted(fine_tune)}."
        )
    if compile_kwargs is None:
        config = model.get_compile_config() if model.compiled else None
        if not config:
            raise ValueError(
                f"fine_tune with fit arguments needs compile_kwargs="
                "dict(optimizer=..., loss=...) or a compiled model; model "
                f"{model.name!r} is not compiled."
            )
    elif not isinstance(compile_kwargs, dict):
        raise ValueError(
            "compile_kwargs must be a dict of model.compile arguments, got "
            f"{type(compile_kwargs).__name__}."
        )
    fit = dict({"verbose": 0}, **fine_tune)

    def tune(small):
        if compile_kwargs is None:
            small.compile_from_config(config)
        else:
            arguments = dict(compile_kwargs)
            optimizer = arguments.get("optimizer")
            if isinstance(optimizer, keras.optimizers.Optimizer):
                # An optimizer is built for one model's variables.
                arguments["optimizer"] = optimizer.from_config(
                    optimizer.get_config())
            small.compile(**arguments)
        return small.fit(**fit)

    return tune
