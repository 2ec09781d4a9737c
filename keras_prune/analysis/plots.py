"""Figures of what pruning does, written to image files.

- `schedule_plot`: a schedule's target sparsity per step, the sparsity the
  masks really have (a staircase: they change only at update steps), the
  update steps marked and the jumps annotated.
- `sparsity_bars`: the sparsity of every prunable weight of a model, with the
  schedule's target marked.
- `sensitivity_plot`: metric vs sparsity for each layer pruned alone.
- `plan_plot`: a structured `PruningPlan`, each group's channel scores
  against the threshold, kept and removed.
- `ticket_plot`: lottery-ticket searches, a metric against the fraction of
  weights remaining (log x), one line per search.

Needs matplotlib (`pip install keras-prune[plots]`). Figures are drawn on
matplotlib's Agg canvas directly and saved to a file: no window opens, and
pyplot's global state (and whatever backend it uses) is left alone. Each
function returns the path it wrote.
"""

import io
import os
import tempfile
import textwrap

import numpy as np

from keras_prune.analysis.report import SparsityReport

# At most this many update steps get a dot on the curve; more would hide it
# (every update is still marked on the step axis).
_MAX_DOTS = 60
# Updates that raise the sparsity by this much at once are annotated.
_JUMP = 0.2


def schedule_plot(preview, path, title=None):
    """Plots a `SchedulePreview`: target, real mask sparsity and updates.

    The dashed line is what the schedule asks for at every step
    (`sparsity_at(step)`); the solid staircase is the sparsity the masks
    actually have, which changes only at the update steps (marked on the
    step axis, and with dots on the staircase when there are few). Updates
    that raise the sparsity by 20 points or more at once are annotated, e.g.
    `PolynomialDecay(0.5, 0.9, begin_step=2000, ...)`: "step 2000: 0 % ->
    50 % in one update". `begin_step`, `end_step` and `frequency`, when the
    schedule has them, are drawn and explained on the plot.

    Args:
        preview: a `SchedulePreview` (`keras_prune.preview(schedule, steps)`).
        path: file to write; PNG unless its extension names another format
            matplotlib knows.
        title: the figure's title; default: the schedule and its arguments.

    Returns:
        `path`.

    Raises:
        ImportError: if matplotlib is not installed.

    Example:

    ```python
    schedule = keras_prune.PolynomialDecay(0.5, 0.9, begin_step=2000,
                                           end_step=4000, frequency=100)
    keras_prune.plots.schedule_plot(keras_prune.preview(schedule, 5000),
                                    "schedule.png")
    ```
    """
    figure, axes = _figure((8, 4.8), path)
    schedule = preview.schedule
    config = schedule.get_config()
    steps = np.arange(preview.steps)
    updates = np.asarray(preview.update_steps, dtype=np.int64)

    axes.plot(
        steps, preview.target, color="gray", linestyle="--", linewidth=1.2,
        label="schedule: sparsity_at(step)",
    )
    # The masks hold from one update to the next: a staircase, drawn "post".
    axes.step(
        np.append(steps, preview.steps), np.append(preview.sparsity,
                                                   preview.sparsity[-1]),
        where="post", color="C0", linewidth=2,
        label="mask sparsity (changes only at updates)",
    )
    every = _every(updates)
    label = f"mask updates: {len(updates)}" + (
        f", every {every} steps" if every else ""
    )
    axes.vlines(
        updates, 0, 0.035, transform=axes.get_xaxis_transform(),
        color="C3", linewidth=0.8, label=label,
    )
    if 0 < len(updates) <= _MAX_DOTS:
        axes.plot(
            updates, preview.target[updates], "o", color="C3", markersize=3.5,
        )
    _mark_steps(axes, config, preview.steps)
    for i, (step, before, after) in enumerate(preview.jumps(_JUMP)[:4]):
        axes.annotate(
            f"step {step}: {before:.0%} \u2192 {after:.0%}\nin one update",
            xy=(step, after),
            xytext=(0.03 + 0.22 * i, 0.93),
            textcoords="axes fraction",
            va="top",
            fontsize=9,
            arrowprops={"arrowstyle": "->", "color": "C3"},
            bbox={"boxstyle": "round", "fc": "white", "ec": "C3"},
        )
    axes.set_xlim(0, preview.steps)
    axes.set_ylim(0, 1)
    _percent_axis(axes.yaxis)
    xlabel = "training step (the optimizer's iteration count)"
    note = _frequency_note(config)
    if note is not None:
        xlabel += "\n" + textwrap.fill(note, 90)
    axes.set_xlabel(xlabel)
    axes.set_ylabel("sparsity")
    if title is None:
        arguments = ", ".join(f"{k}={v:g}" if isinstance(v, float)
                              else f"{k}={v}" for k, v in config.items())
        title = (
            f"{type(schedule).__name__}({arguments}) over "
            f"{preview.steps} steps"
        )
    axes.set_title("\n".join(textwrap.wrap(title, 80)), fontsize=10)
    axes.legend(loc="best", fontsize=8)
    axes.grid(alpha=0.3)
    return _save(figure, path)


def sparsity_bars(report_or_model, path, title=None):
    """Bar chart of the sparsity of every prunable weight of a model.

    One bar per prunable weight (zeros / total); the schedule's target at the
    last mask update is marked on the bar when known (a pruned model), and
    the sparsity of all prunable weights together is a dashed line. Weights
    left dense although prunable (`exclude=`, `per_layer`, a pruning policy)
    are gray bars labelled "excluded". Biases, normalization parameters and
    statistics are not shown: they are never pruned (`SparsityReport` says
    why).

    Args:
        report_or_model: a `SparsityReport`, or a built Keras model (dense,
            pruned or stripped) to build one from.
        path: file to write; PNG unless its extension says otherwise.
        title: the figure's title; default names the model.

    Returns:
        `path`.

    Raises:
        ImportError: if matplotlib is not installed.
        ValueError: if the model has no prunable weights.

    Example:

    ```python
    keras_prune.plots.sparsity_bars(pruned, "sparsity.png")
    ```
    """
    report = report_or_model
    if not isinstance(report, SparsityReport):
        report = SparsityReport(report_or_model)
    entries = [e for e in report.weights if e.prunable or e.excluded]
    if not entries:
        raise ValueError(
            f"sparsity_bars: model {report.model_name!r} has no prunable "
            "weights to plot; print keras_prune.SparsityReport(model) to see "
            "why each weight is not prunable."
        )
    height = 1.9 + 0.38 * len(entries)
    figure, axes = _figure((8, height), path)
    positions = np.arange(len(entries))[::-1]
    colors = ["0.7" if e.excluded else "C0" for e in entries]
    axes.barh(
        positions, [e.sparsity for e in entries], color=colors, height=0.6,
    )
    targets = [(p, e.target) for p, e in zip(positions, entries)
               if e.target is not None]
    if targets:
        axes.plot(
            [t for _, t in targets], [p for p, _ in targets], "|",
            color="C3", markersize=16, markeredgewidth=2.5,
            label="target (schedule at the last mask update)",
        )
    axes.axvline(
        report.prunable_sparsity, color="0.3", linestyle="--", linewidth=1,
        label=f"all prunable weights: {report.prunable_sparsity:.1%}",
    )
    for position, entry in zip(positions, entries):
        note = f"{entry.sparsity:.1%} of {entry.total:,}"
        if entry.excluded:
            note += " (excluded, left dense)"
        # Right of the bar, or of its target mark when that is close.
        x = entry.sparsity
        if entry.target is not None and 0 < entry.target - x < 0.2:
            x = entry.target
        axes.text(x + 0.015, position, note, va="center", fontsize=8)
    axes.set_yticks(positions)
    axes.set_yticklabels(
        [f"{e.path} ({e.layer_class})" for e in entries], fontsize=8
    )
    axes.set_xlim(0, 1.18)
    axes.set_xticks(np.linspace(0, 1, 6))
    _percent_axis(axes.xaxis)
    axes.set_xlabel("sparsity (the fraction of the weight's entries at 0)")
    axes.set_title(
        title or f"Sparsity of the prunable weights of {report.model_name!r}",
        fontsize=10,
    )
    # Below the axes: inside, it would hide bars.
    figure.legend(loc="lower center", ncol=2, fontsize=8, frameon=False)
    axes.grid(axis="x", alpha=0.3)
    return _save(figure, path, bottom=0.35 / height)


def sensitivity_plot(result, path, title=None):
    """Plots metric vs sparsity for each layer pruned alone.

    Every layer's line starts at the baseline (the dense model's metric) at
    sparsity 0; the baseline is also a dashed line across the plot.

    Args:
        result: a `keras_prune.SensitivityResult`, or any object
            with `table` (dict layer -> {sparsity: metric value}), `layers`
            (names, in order), `baseline` (float), `metric_name` (str) and
            `sparsities`; `num_params` (dict layer -> prunable weights), if
            present, is shown in the legend.
        path: file to write; PNG unless its extension says otherwise.
        title: the figure's title; default names the metric.

    Returns:
        `path`.

    Raises:
        ImportError: if matplotlib is not installed.

    Example:

    ```python
    keras_prune.plots.sensitivity_plot(result, "sensitivity.png")
    ```
    """
    figure, axes = _figure((8, 4.8), path)
    table = result.table
    num_params = getattr(result, "num_params", None) or {}
    baseline = float(result.baseline)
    for name in result.layers:
        points = sorted((float(s), float(v)) for s, v in table[name].items())
        if not points or points[0][0] > 0:
            points.insert(0, (0.0, baseline))
        label = name
        if name in num_params:
            label += f" ({num_params[name]:,} weights)"
        axes.plot(
            [s for s, _ in points], [v for _, v in points], marker="o",
            markersize=4, label=label,
        )
    axes.axhline(
        baseline, color="gray", linestyle="--", linewidth=1.2,
        label=f"baseline (dense): {baseline:.4g}",
    )
    axes.set_xlim(0, 1)
    _percent_axis(axes.xaxis)
    axes.set_xlabel("sparsity of the layer (all other layers dense)")
    axes.set_ylabel(result.metric_name)
    axes.set_title(
        title or f"Sensitivity: {result.metric_name} with each layer pruned "
        "alone",
        fontsize=10,
    )
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    return _save(figure, path)


def ticket_plot(results, path, metric="accuracy", title=None):
    """Plots `LotteryResult`s: `metric` against the weights remaining.

    One line per result (its `label` in the legend), x the fraction of
    prunable weights remaining on a log scale, decreasing to the right (as
    in Frankle & Carbin's figures); the dense run is the leftmost point.
    The file is written atomically (a temporary file, then a rename).

    Args:
        results: a `LotteryResult` or a list of them.
        path: file to write (PNG unless its extension names another format).
        metric: a metric every round recorded, default "accuracy".
        title: the figure's title; default: the metric.

    Returns:
        `path`.

    Example:

    ```python
    keras_prune.plots.ticket_plot([ticket, reinit], "lottery.png")
    ```
    """
    results = [results] if hasattr(results, "rounds") else list(results)
    if not results:
        raise ValueError("ticket_plot needs at least one LotteryResult.")
    figure, axes = _figure((8, 4.8), path)
    for i, result in enumerate(results):
        axes.plot(
            result.remaining, result.metric(metric), marker="o",
            markersize=3.5, linewidth=1.6, color=f"C{i}", label=result.label,
        )
    axes.set_xscale("log")
    axes.invert_xaxis()
    from matplotlib.ticker import FuncFormatter

    axes.xaxis.set_major_formatter(
        FuncFormatter(lambda x, _: f"{100 * x:.3g} %"))
    axes.set_xlabel("prunable weights remaining (log scale)")
    axes.set_ylabel(metric)
    axes.set_title(title if title is not None else
                   f"{metric} vs weights remaining")
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format=image_format(path))
    write_atomically(path, buffer.getvalue())
    return path


def write_atomically(path, data):
    """Writes bytes to `path` through a temporary file in its directory and
    a rename, so a reader (or an interrupted run) never sees half a file."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(dir=directory, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        # mkstemp makes the file 0600; give it what open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


# ---- helpers ---------------------------------------------------------------


def image_format(path):
    """The format a plot is written to `path` in: its extension's, or PNG
    when it has none (written to `path` exactly, not to `path + ".png"` as
    matplotlib would). A file object gets PNG.

    Raises:
        ValueError: naming the path, for an extension matplotlib does not
            write.
    """
    if not isinstance(path, (str, os.PathLike)):
        return "png"
    suffix = os.path.splitext(os.fspath(path))[1][1:].lower()
    if not suffix:
        return "png"
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    kinds = FigureCanvasAgg.get_supported_filetypes()
    if suffix not in kinds:
        raise ValueError(
            f"cannot write a plot to {os.fspath(path)!r}: .{suffix} is not an "
            "image format matplotlib writes; end the name in one of "
            + ", ".join(f".{k}" for k in sorted(kinds))
            + " (no extension writes PNG)."
        )
    return suffix


def _figure(size, path):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(
            "keras_prune.plots needs matplotlib: `pip install "
            "keras-prune[plots]` (or `pip install matplotlib`)."
        ) from err
    image_format(path)  # before any drawing
    figure = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _save(figure, path, bottom=0.0):
    figure.tight_layout(rect=(0, bottom, 1, 1))
    figure.savefig(path, format=image_format(path))
    return path


def _percent_axis(axis):
    from matplotlib.ticker import PercentFormatter

    axis.set_major_formatter(PercentFormatter(1.0, decimals=0))


def _every(updates):
    """The constant distance between update steps, or None."""
    gaps = np.unique(np.diff(updates))
    return int(gaps[0]) if len(gaps) == 1 else None


def _mark_steps(axes, config, steps):
    for name in ("begin_step", "end_step"):
        step = config.get(name)
        if step is None or step < 0 or step >= steps:
            continue
        axes.axvline(step, color="0.5", linestyle=":", linewidth=1)
        axes.annotate(
            f"{name}={step}", xy=(step, 0.06),
            xycoords=axes.get_xaxis_transform(), xytext=(-3, 0),
            textcoords="offset points", rotation=90, ha="right",
            va="bottom", fontsize=8, color="0.35",
        )


def _frequency_note(config):
    frequency = config.get("frequency")
    if frequency is None:
        return None
    return (
        f"frequency={frequency}: masks are recomputed every {frequency} "
        "steps from begin_step (up to end_step), and hold in between"
    )


def plan_plot(plan, path, groups=None, max_groups=12, title=None):
    """Plots a `PruningPlan`: each group's channel scores against its cut.

    One panel per channel group: the channels sorted by normalized score
    (highest first), kept ones blue, removed ones red; the dashed line is
    the threshold (TAO mode's `threshold`, or, in the other modes, the
    highest score removed), the dotted line separates kept from removed.
    Channels kept although below the threshold (rounding up, a minimum
    count, an equalized group) show up as blue bars under the line.
    Blocked, ignored and unscored groups are left out (named in the title
    line below the panels' count).

    Args:
        plan: a `keras_prune.structured.PruningPlan`.
        path: file to write; PNG unless its extension says otherwise.
        groups: names or ids of the groups to plot; default: the first
            `max_groups` groups the plan decided.
        max_groups: at most this many panels when `groups` is None.
        title: the figure's title; default names the model and the mode.

    Returns:
        `path`.

    Raises:
        ImportError: if matplotlib is not installed.
        ValueError: if no group of the plan has scores to plot.

    Example:

    ```python
    plan = plan_pruning(model, ratio=0.5)
    keras_prune.plots.plan_plot(plan, "plan.png")  # or plan.plot(...)
    ```
    """
    decided = [
        g for g in plan.groups
        if g["score"] and g["score"][0] is not None and not g["blocked"]
        and not g["rule"][0].startswith(("ignored", "excluded", "unscored"))
    ]
    if groups is not None:
        chosen = [plan._group(name) for name in groups]
        for g in chosen:
            if g["score"][0] is None:
                raise ValueError(
                    f"plan_plot: group {g['name']!r} has no scores to plot "
                    f"({g['rule'][0]})."
                )
    else:
        chosen = decided[:max_groups]
    if not chosen:
        raise ValueError(
            f"plan_plot: the plan for model {plan.model_name!r} has no "
            "decided group with scores to plot (every group is blocked, "
            "ignored or unscored); print plan.summary() to see why."
        )
    columns = min(3, len(chosen))
    rows = -(-len(chosen) // columns)
    figure, first = _figure((max(6.4, 4.2 * columns), 2.7 * rows + 1.0), path)
    figure.delaxes(first)
    panels = figure.subplots(rows, columns, squeeze=False).ravel()
    settings = plan.settings
    for axes, group in zip(panels, chosen):
        _plan_panel(axes, group, settings)
    for axes in panels[len(chosen):]:
        axes.set_visible(False)
    if title is None:
        mode = settings.get("mode", "ratio")
        detail = {
            "ratio": f"ratio {settings.get('ratio')}, {settings.get('scope')}",
            "threshold": f"threshold {settings.get('threshold')}",
            "budget": "budget " + ", ".join(
                f"{k} {v:,}" for k, v in
                settings.get("cost", {}).get("budget", {}).items()
                if v is not None),
        }.get(mode, mode)
        title = (f"Pruning plan for {plan.model_name!r}: "
                 f"{settings.get('criterion', 'l2')} scores, {detail}")
    if len(chosen) < len(plan.groups):
        title += (f"\n{len(chosen)} of {len(plan.groups)} groups shown "
                  f"({len(plan.groups) - len(decided)} blocked, ignored or "
                  "unscored; pass groups= to choose)")
    figure.suptitle(title, fontsize=10)
    return _save(figure, path)


def _plan_panel(axes, group, settings):
    order = np.argsort([-s for s in group["score"]], kind="stable")
    scores = np.asarray(group["score"], dtype=np.float64)[order]
    keep = np.asarray(group["keep"], dtype=bool)[order]
    positions = np.arange(len(scores))
    axes.bar(positions[keep], scores[keep], width=0.8, color="C0",
             label=f"kept {int(keep.sum())}")
    if (~keep).any():
        axes.bar(positions[~keep], scores[~keep], width=0.8, color="C3",
                 label=f"removed {int((~keep).sum())}")
    if settings.get("mode") == "threshold":
        threshold = settings.get("threshold")
        label = f"threshold {threshold:.3g}"
    else:
        threshold = scores[~keep].max() if (~keep).any() else None
        label = f"cut: highest removed {threshold or 0:.3g}"
    if threshold is not None:
        axes.axhline(threshold, color="0.3", linestyle="--", linewidth=1,
                     label=label)
    if keep.any() and (~keep).any():
        axes.axvline(int(keep.sum()) - 0.5, color="0.5", linestyle=":",
                     linewidth=1)
    axes.set_xlim(-0.8, len(scores) - 0.2)
    axes.set_ylim(0, max(1e-12, scores.max(), threshold or 0) * 1.12)
    whole = " (blocked)" if group["blocked"] else ""
    axes.set_title(f"{group['name'][:40]}: {int(keep.sum())} of "
                   f"{group['size']} kept{whole}", fontsize=9)
    axes.set_xlabel("channels, by normalized score", fontsize=8)
    axes.set_ylabel("score", fontsize=8)
    axes.tick_params(labelsize=7)
    axes.legend(fontsize=7, loc="upper right")
    axes.grid(axis="y", alpha=0.3)
