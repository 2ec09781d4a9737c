"""The rest of the `keras-prune demo` tour, after gradual pruning: the packed
files, structured pruning of the same network with its measured speed-up,
and the files a user looks at afterwards.

- `shrink_step`: `plan_pruning` + `apply_plan` on the dense CNN (whole
  channels removed), fine-tuned, with its parameters and MACs
  (`model_cost`) and latency against the dense model (interleaved rounds,
  the median of per-round ratios and its 95 % interval).
- `packed_sizes`: the pruned model in the sparse packed format, float32 and
  int8 (`save_packed`).
- `write_files`: dense.keras, pruned.keras, small.keras, the packed files
  and (with matplotlib) the schedule and sparsity plots, into one folder.
"""

import importlib.util
import os

from keras_prune.analysis import plots
from keras_prune.analysis import sizes
from keras_prune.analysis.compare import measured_ratio
from keras_prune.analysis.compare import latency_in_words
from keras_prune.analysis.preview import preview
from keras_prune.analysis.report import SparsityReport
from keras_prune.cli import common
from keras_prune.core.models import uncompiled
from keras_prune.deploy.compression import save_packed
from keras_prune.structured import apply_plan
from keras_prune.structured import model_cost
from keras_prune.structured import plan_pruning

# The files the tour writes, in the order it lists them.
MODELS = ("dense.keras", "pruned.keras", "small.keras")
PACKED = ("pruned.kpack", "pruned-int8.kpack")
PLOTS = ("schedule.png", "sparsity.png")
# Timed rounds of the latency of dense vs small, at a batch large enough
# that the computation, not the per-call overhead, is timed.
LATENCY_ROUNDS = 30
LATENCY_BATCH = 256


def outputs(directory):
    """The paths the tour writes into `directory` (plots only with
    matplotlib installed)."""
    names = MODELS + PACKED
    if importlib.util.find_spec("matplotlib") is not None:
        names += PLOTS
    return [os.path.join(directory, name) for name in names]


def shrink_step(dense, train, test, ratio, epochs, batch_size, compile_fn,
                verbose, say):
    """The dense model with `ratio` of every layer's channels removed
    (L2 norm of the filters, `plan_pruning`), fine-tuned `epochs` epochs.

    Returns:
        A dict: `model`, `plan`, `accuracy`, `cost` and `dense_cost`
        (`ModelCost`), `latency` (dense and small median seconds at batch
        `LATENCY_BATCH` and their ratio, see `latency_in_words`).
    """
    (x_train, y_train), (x_test, y_test) = train, test
    plan = plan_pruning(dense, ratio)
    small = apply_plan(dense, plan)
    compile_fn(small)
    say(f"   {len(plan.groups)} channel groups, {ratio:.0%} of each removed; "
        f"fine-tuning {epochs} epoch(s)")
    small.fit(x_train, y_train, batch_size, epochs, verbose=verbose)
    _, accuracy = small.evaluate(x_test, y_test, batch_size=1000, verbose=0)
    x = x_test[:LATENCY_BATCH]
    times = sizes.latency_samples([dense, small], [x, x], LATENCY_ROUNDS,
                                  warmup=5)
    ratio_found = measured_ratio(*sizes.paired_ratio(*times))
    return {
        "model": small,
        "plan": plan,
        "accuracy": float(accuracy),
        "cost": model_cost(small),
        "dense_cost": model_cost(dense),
        "latency": {
            "batch": LATENCY_BATCH,
            "rounds": LATENCY_ROUNDS,
            "dense_s": sorted(times[0])[len(times[0]) // 2],
            "small_s": sorted(times[1])[len(times[1]) // 2],
            "versus_dense": ratio_found,
            "words": latency_in_words(ratio_found),
        },
    }


def packed_sizes(stripped, directory):
    """Bytes of the stripped pruned model packed as float32 and as int8,
    written to `directory` (`PACKED`)."""
    found = {}
    for values, name in zip(("float32", "int8"), PACKED):
        path = os.path.join(directory, name)
        save_packed(stripped, path, values=values, overwrite=True)
        found[values] = os.path.getsize(path)
    return found


def write_files(directory, dense, stripped, small, schedule, steps):
    """Writes the models (uncompiled) and, with matplotlib, the plots into
    `directory`, each atomically; returns the paths written."""
    written = []
    for name, model in zip(MODELS, (dense, stripped, small)):
        path = os.path.join(directory, name)
        plain = uncompiled(model) if model.compiled else model
        common.write_atomically(path, plain.save)
        written.append(path)
    written += [os.path.join(directory, name) for name in PACKED]
    if importlib.util.find_spec("matplotlib") is not None:
        shown = preview(schedule, steps)
        paths = [os.path.join(directory, name) for name in PLOTS]
        common.write_atomically(paths[0], shown.plot)
        common.write_atomically(
            paths[1], lambda p: plots.sparsity_bars(SparsityReport(stripped), p))
        written += paths
    return written


def next_commands(directory):
    """What to try next on the files the tour wrote: `(what, command)`."""
    d = directory.rstrip("/")
    return [
        ("every weight: its zeros, whether it is prunable, or why not",
         f"keras-prune report {d}/pruned.keras"),
        ("accuracy, size and latency side by side",
         f"keras-prune compare {d}/dense.keras {d}/small.keras "
         "--data fashion_mnist"),
        ("a deeper cut: 70 % of every layer's channels",
         f"keras-prune shrink {d}/dense.keras -o {d}/smaller.keras "
         "--ratio 0.7"),
        ("one-shot pruning, one threshold across layers",
         f"keras-prune prune {d}/dense.keras -o {d}/oneshot.keras "
         "--sparsity 0.9 --scope global"),
    ]
