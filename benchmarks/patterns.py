"""Sparsity patterns and scopes: accuracy on Fashion-MNIST and the cost of a
global threshold over 100 M weights.

Not part of the test suite. Run from the repository root:

    .venv/bin/python benchmarks/patterns.py                 # full run, ~25-35 min
    .venv/bin/python benchmarks/patterns.py --quick         # smoke run, ~2 min
    .venv/bin/python benchmarks/patterns.py --bench accuracy --seeds 0,1,2
    .venv/bin/python benchmarks/patterns.py --bench global --global-backends jax
    .venv/bin/python benchmarks/patterns.py --from-json /tmp/patterns.json

It prints Markdown tables (goal, PASS/MISS) and, in a full run (unless
--no-write; a --quick run only with --write), writes them to
benchmarks/results/patterns.md. Every measurement runs in a worker
subprocess of this script (KERAS_BACKEND set, 1 intra-op and 1 inter-op
thread: common.py's `thread_env` plus `limit_threads`, TensorFlow's /
torch's thread setters); workers run one at a time.

Accuracy benchmarks (`--bench accuracy`, one process per seed, backend
`--backend`, default tensorflow). LeNet-300-100 (784-300-100-10, relu,
softmax output) on Fashion-MNIST (`load_fashion_mnist()`, flattened), Adam
1e-3, batch 128, sparse categorical cross-entropy. Per seed: initial weights
from `keras.utils.set_random_seed(seed)`; per-epoch permutations of the
training set from `np.random.default_rng(seed)`, fed epoch by epoch as
pre-permuted arrays with `shuffle=False`; every run of a seed uses the same
initial weights and the same permutations. Test accuracy = argmax of
`predict` on the 10,000 test images.

1. One-shot 95 %: the dense model trained 10 epochs, then
   `keras_prune.prune_now(model, 0.95, scope=...)` with scope="global",
   scope="layer" and scope="global" + global_weighting="size"; accuracy
   right after pruning, then 2 epochs of plain `fit` (new Adam 1e-3, the
   permutations of epochs 11-12, no callback: `FixedMasks` hold the masks)
   and accuracy again. Reported: the per-layer sparsity of each allocation,
   and the exact zeros after fine-tuning (must equal those after pruning).
   Goal: global >= 80 % after fine-tuning (tfmot-style layer-wise: 47.5 %).
2. 2:4 after gradual training: from the initial weights,
   `prune_low_magnitude(model, PolynomialDecay(0.0, 0.5, 0, E,
   frequency=100), sparsity_m_by_n=(2, 4))`, 10 epochs with
   `UpdatePruningStep()`, `strip_pruning`, accuracy, and
   `check_n_m(stripped, 2, 4).ok`. Baseline: the dense run of (1) (same
   initial weights, same permutations, same optimizer). Goal: within 0.3
   point of dense (tfmot: 88.54 vs 88.19).
3. Block (1, 4) AVG at 90 % vs unstructured 90 %, both
   `PolynomialDecay(0.0, 0.9, 0, E, frequency=100)`, 10 epochs. Goal: block
   within 0.5 point of unstructured (tfmot: block 1x4 AVG 90 % -> 87.92).
E = 60 % of all training steps rounded down to a multiple of the frequency
(2800 of 4690), so that the last mask update applies the final sparsity
exactly (with N:M an update below m/n would leave groups short of m zeros).

Global threshold over ~100 M weights (`--bench global`, one process per
backend of `--global-backends`, one after the other; ~1.5 GB each). Six
bias-free Dense layers, 4 x (4096, 4096) + 2 x (8192, 2048) = 100,663,296
float32 weights (402.7 MB), standard-normal values from NumPy, each wrapped
in `PruneLowMagnitude(..., scope="global")`. Timed, median of 3 (a 4th run
under `tracemalloc` gives the traced peak):
- `keras_prune.training.updater.update_global_masks(wrappers, 0.9, step)`:
  |w| to the host twice, the selection, masks, thresholds and baked weights
  assigned back to the backend variables;
- `keras_prune.core.patterns.global_masks(score_fns, sizes, 0.9)` on NumPy arrays
  (`score_fns` return `np.abs(w)`): the selection alone;
- in three states of the weights before the update: dense (the first
  update), 80 % exact zeros (a late update of a gradual schedule: the
  bracket lies among the 20 % non-zeros) and 90 % exact zeros (every later
  update at the final sparsity; the zeros fill the pruned slots: no
  selection at all). The zeros are the global 80 % / 90 % selection of the
  dense weights, so the states are what the schedule leaves;
- reference: a full sort of the concatenated |w| (`np.concatenate`,
  `np.abs(out=)`, in-place `ndarray.sort()`), what a sort-based global
  threshold costs, median of 3 (dense state; `--sort-repeats`).
Memory: peak extra = peak RSS during the call (VmHWM after resetting it
through /proc/self/clear_refs) minus RSS before it: every allocation
(NumPy's and the backend's) that was touched; and tracemalloc's peak (NumPy
reports its allocations to it; the backends' own buffers are not traced,
and an allocated but untouched buffer counts in full). Both relative to the
weights' bytes. Goal: the whole update <= 1.5 s and <= 1x the weights'
bytes extra (judged on the RSS peak).
"""

import gc
import math
import os
import re
import statistics
import tempfile
import time

import common
from common import fit_epochs, kernel_zeros

BATCH = 128
EPOCHS = 10
FINETUNE_EPOCHS = 2
FREQUENCY = 100
ONESHOT_SPARSITY = 0.95
GLOBAL_SHAPES = [(4096, 4096)] * 4 + [(8192, 2048)] * 2
QUICK_GLOBAL_SHAPES = [(512, 512)] * 4 + [(1024, 256)] * 2
GLOBAL_SPARSITY = 0.9
GLOBAL_STATES = (("dense", 0.0), ("80 % zeros", 0.8), ("90 % zeros", 0.9))

# Goals (from the brief) and tfmot's measured figures (../shared/ANCHORS.md).
GOAL_GLOBAL_ACC = 0.80
GOAL_NM_GAP = 0.003
GOAL_BLOCK_GAP = 0.005
GOAL_UPDATE_S = 1.5
GOAL_MEMORY_X = 1.0
TFMOT = {
    "dense": 0.8819,
    "2:4": 0.8854,
    "block": 0.8792,
    "unstructured 90": 0.8822,
    "oneshot global": 0.815,
    "oneshot layer": 0.475,
}

# ---------------------------------------------------------------------------
# Worker side
# ---------------------------------------------------------------------------


def _lenet():
    import keras

    return keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(300, activation="relu", name="dense_300"),
            keras.layers.Dense(100, activation="relu", name="dense_100"),
            keras.layers.Dense(10, activation="softmax", name="dense_10"),
        ],
        name="lenet_300_100",
    )


def _compiled(model):
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def _accuracy(model, x, y):
    import numpy as np

    probs = model.predict(x, batch_size=1000, verbose=0)
    return float(np.mean(np.argmax(probs, axis=-1) == y))


def _mask_sparsity(pruned):
    """Per wrapper of a pruned model: layer, shape, size, pruned (mask 0)."""
    import numpy as np
    from keras import ops

    from keras_prune.core.layers import pruned_layers

    out = []
    for wrapper in pruned_layers(pruned):
        for variable, mask in zip(wrapper.prunable_weights, wrapper.masks):
            keep = ops.convert_to_numpy(mask)
            out.append(
                {
                    "layer": wrapper.layer.name,
                    "shape": list(keep.shape),
                    "n": int(keep.size),
                    "pruned": int(keep.size - np.count_nonzero(keep)),
                }
            )
    return out


def accuracy_worker(spec, log):
    import keras
    import numpy as np

    import keras_prune
    from keras_prune.datasets import load_fashion_mnist

    common.limit_threads()
    seed = spec["seed"]
    epochs, ft_epochs = spec["epochs"], spec["finetune_epochs"]
    frequency = spec["frequency"]
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
    x_train = x_train.reshape(len(x_train), 784)[: spec["n_train"]]
    y_train = y_train[: spec["n_train"]]
    x_test = x_test.reshape(len(x_test), 784)[: spec["n_test"]]
    y_test = y_test[: spec["n_test"]]
    n = len(x_train)
    keras.utils.set_random_seed(seed)
    init = _lenet().get_weights()
    rng = np.random.default_rng(seed)
    perms = [rng.permutation(n) for _ in range(epochs + ft_epochs)]
    steps_per_epoch = math.ceil(n / BATCH)
    total_steps = epochs * steps_per_epoch
    end_step = int(0.6 * total_steps) // frequency * frequency

    def train(model, epoch_range, callbacks=()):
        t0 = time.perf_counter()
        fit_epochs(model, x_train, y_train, perms, epoch_range, BATCH, callbacks)
        return time.perf_counter() - t0

    result = {
        "seed": seed,
        "backend": keras.backend.backend(),
        "n_train": n,
        "n_test": len(x_test),
        "epochs": epochs,
        "finetune_epochs": ft_epochs,
        "total_steps": total_steps,
        "end_step": end_step,
        "frequency": frequency,
    }

    # ---- dense baseline --------------------------------------------------
    dense = _lenet()
    dense.set_weights(init)
    _compiled(dense)
    wall = train(dense, range(epochs))
    trained = dense.get_weights()
    result["dense"] = {"accuracy": _accuracy(dense, x_test, y_test), "wall_s": wall}
    log(f"seed {seed} dense: {result['dense']['accuracy']:.4f} ({wall:.0f}s)")

    # ---- (1) one-shot 95 %: global vs layer-wise ---------------------------
    oneshot = {}
    variants = (
        ("global", dict(scope="global")),
        ("layer", dict(scope="layer")),
        ("global, size", dict(scope="global", global_weighting="size")),
    )
    for label, kwargs in variants:
        model = _lenet()
        model.set_weights(trained)
        t0 = time.perf_counter()
        pruned, _report = keras_prune.prune_now(model, spec["oneshot"], **kwargs)
        prune_s = time.perf_counter() - t0
        after_prune = _accuracy(pruned, x_test, y_test)
        allocation = _mask_sparsity(pruned)
        _compiled(pruned)
        wall = train(pruned, range(epochs, epochs + ft_epochs))
        after_ft = _accuracy(pruned, x_test, y_test)
        stripped = keras_prune.strip_pruning(pruned)
        after_ft_stripped = _accuracy(stripped, x_test, y_test)
        zeros = kernel_zeros(stripped)
        oneshot[label] = {
            "kwargs": kwargs,
            "prune_now_s": prune_s,
            "after_prune": after_prune,
            "after_finetune": after_ft,
            "after_finetune_stripped": after_ft_stripped,
            "allocation": allocation,
            "zeros_after_finetune": zeros,
            "masks_held": all(
                z["zeros"] >= a["pruned"] for z, a in zip(zeros, allocation)
            ),
            "finetune_wall_s": wall,
        }
        log(
            f"seed {seed} prune_now {label}: {after_prune:.4f} -> "
            f"{after_ft:.4f} ({wall:.0f}s)"
        )
    result["oneshot"] = oneshot

    # ---- (2) 2:4 gradual, (3) block 1x4 vs unstructured 90 % ----------------
    gradual = {}
    configs = (
        ("2:4", 0.5, dict(sparsity_m_by_n=(2, 4))),
        ("block 1x4 AVG 90 %", 0.9, dict(block_size=(1, 4), block_pooling_type="AVG")),
        ("unstructured 90 %", 0.9, {}),
    )
    for label, sparsity, kwargs in configs:
        model = _lenet()
        model.set_weights(init)
        schedule = keras_prune.PolynomialDecay(
            0.0, sparsity, 0, end_step, frequency=frequency
        )
        pruned = _compiled(
            keras_prune.prune_low_magnitude(model, schedule, **kwargs)
        )
        wall = train(pruned, range(epochs), [keras_prune.UpdatePruningStep()])
        stripped = keras_prune.strip_pruning(pruned)
        entry = {
            "sparsity": sparsity,
            "kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()},
            "accuracy": _accuracy(stripped, x_test, y_test),
            "accuracy_pruned_model": _accuracy(pruned, x_test, y_test),
            "zeros": kernel_zeros(stripped),
            "wall_s": wall,
        }
        if "sparsity_m_by_n" in kwargs:
            check = keras_prune.check_n_m(stripped, 2, 4)
            entry["check_n_m_ok"] = bool(check.ok)
            entry["check_n_m_violations"] = len(check.violations)
            entry["check_n_m_checked"] = list(check.checked)
        gradual[label] = entry
        log(f"seed {seed} {label}: {entry['accuracy']:.4f} ({wall:.0f}s)")
    result["gradual"] = gradual
    return result


# ---- global threshold over ~100 M weights ------------------------------------


def _status_kb(field):
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+)", f.read()).group(1))


def _reset_peak():
    """Resets VmHWM (peak RSS) to the current RSS; False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _measured(fn, traced=False):
    """Runs fn(); returns (seconds, peak extra RSS bytes, traced peak bytes)."""
    import resource
    import tracemalloc

    gc.collect()
    can_reset = _reset_peak()
    rss0 = _status_kb("VmRSS")
    maxrss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if traced:
        tracemalloc.start()
        tracemalloc.reset_peak()
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    traced_peak = None
    if traced:
        traced_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    if can_reset:
        extra = (_status_kb("VmHWM") - rss0) * 1024
    else:  # ru_maxrss only grows: meaningful only above the earlier peak
        extra = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - maxrss0) * 1024
    del out
    return seconds, extra, traced_peak


def _timed(fn, repeats, prepare=None, trace=True):
    """Median of `repeats` runs (each after prepare()), + one traced run."""
    runs = []
    for _ in range(repeats):
        if prepare:
            prepare()
        runs.append(_measured(fn))
    traced = (None, None, None)
    if trace:
        if prepare:
            prepare()
        traced = _measured(fn, traced=True)
    return {
        "seconds": [r[0] for r in runs],
        "median_s": float(statistics.median(r[0] for r in runs)),
        "rss_extra": [r[1] for r in runs],
        "rss_extra_max": max(r[1] for r in runs),
        "traced_peak": traced[2],
        "traced_run_s": traced[0],
        "traced_run_rss_extra": traced[1],
    }


def _profiled(fn, top=10):
    """One cProfile'd run: the `top` functions by own time, [name, s].

    NumPy's ufuncs (abs, comparisons, multiply) are not profiled calls:
    their time is the own time of the Python function that calls them.
    """
    import cProfile
    import pstats

    profile = cProfile.Profile()
    t0 = time.perf_counter()
    profile.enable()
    out = fn()
    profile.disable()
    total = time.perf_counter() - t0
    del out
    stats = pstats.Stats(profile).stats
    rows = sorted(
        (
            (f"{os.path.basename(file)}:{func}" if file != "~" else func, tt)
            for (file, _line, func), (_cc, _nc, tt, _ct, _callers) in stats.items()
        ),
        key=lambda r: -r[1],
    )
    def short(name):
        name = re.sub(r"<method '(\w+)' of '([\w.]+)' objects>", r"\2.\1", name)
        return re.sub(r"<built-in method ([\w.]+)>", r"\1", name)

    return {
        "total_s": total,
        "top": [[short(n), float(t)] for n, t in rows[:top]],
    }


def _median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        del out
    return float(statistics.median(times))


def _components(components, state, arrays, repeats):
    """Times of the NumPy primitives the selection is made of (100 M)."""
    import numpy as np

    from keras_prune.core import patterns

    if state == "dense":
        components["`np.abs`, all tensors"] = _median_time(
            lambda: [np.abs(a).size for a in arrays], repeats
        )
        components["`np.compress(~(a == 0), a)`, dense tensors"] = _median_time(
            lambda: [np.compress(~(a == 0).reshape(-1), a.reshape(-1)).size for a in arrays], repeats
        )
        components["`a[a != 0]` (boolean index), dense tensors"] = _median_time(
            lambda: [a[a != 0].size for a in arrays], repeats
        )
        k = patterns.num_pruned(sum(a.size for a in arrays), GLOBAL_SPARSITY)
        flat = np.concatenate([np.abs(a).reshape(-1) for a in arrays])
        times = []
        for _ in range(repeats):
            work = flat.copy()
            t0 = time.perf_counter()
            work.partition(k - 1)
            times.append(time.perf_counter() - t0)
            del work
        del flat
        components["`ndarray.partition(k)` of all the scores, concatenated"] = float(
            statistics.median(times)
        )
    elif state == "90 % zeros":
        components["`np.flatnonzero(a == 0)` (the ties at threshold 0), 90 % zeros"] = _median_time(
            lambda: [np.flatnonzero(a == 0).size for a in arrays], repeats
        )
        components["`np.count_nonzero(a == 0)`, 90 % zeros"] = _median_time(
            lambda: [np.count_nonzero(a == 0) for a in arrays], repeats
        )
        components["`np.compress(~(a == 0), a)`, 90 % zeros"] = _median_time(
            lambda: [np.compress(~(a == 0).reshape(-1), a.reshape(-1)).size for a in arrays], repeats
        )


def global_worker(spec, log):
    import keras
    import numpy as np
    from keras import ops

    import keras_prune
    from keras_prune.core import patterns
    from keras_prune.training.updater import update_global_masks

    common.limit_threads()
    shapes = [tuple(s) for s in spec["shapes"]]
    repeats = spec["repeats"]
    rng = np.random.default_rng(0)
    originals = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
    sizes = [w.size for w in originals]
    nbytes = sum(w.nbytes for w in originals)
    result = {
        "backend": keras.backend.backend(),
        "shapes": [list(s) for s in shapes],
        "weights": int(sum(sizes)),
        "weight_bytes": int(nbytes),
        "rss_reset": _reset_peak(),
    }
    log(f"{result['backend']}: {sum(sizes):,} weights, {nbytes / 1e6:.0f} MB")

    # Zeros of each state: the global selection at 80 % / 90 % of the dense
    # weights (what a schedule leaves behind), as keep-masks.
    abs_fns = [lambda w=w: np.abs(w) for w in originals]
    state_keeps = {}
    for name, zeros in GLOBAL_STATES:
        if zeros:
            state_keeps[name] = patterns.global_masks(abs_fns, sizes, zeros)[0]

    # ---- the selection alone, on NumPy arrays ----------------------------
    selection = {}
    components = {}
    result["components"] = components
    for name, _zeros in GLOBAL_STATES:
        if name in state_keeps:
            arrays = [w * k for w, k in zip(originals, state_keeps[name])]
        else:
            arrays = originals
        fns = [lambda w=w: np.abs(w) for w in arrays]
        selection[name] = _timed(
            lambda: patterns.global_masks(fns, sizes, GLOBAL_SPARSITY), repeats
        )
        masks, _ = patterns.global_masks(fns, sizes, GLOBAL_SPARSITY)
        selection[name]["pruned"] = int(sum(m.size - np.count_nonzero(m) for m in masks))
        del masks
        _components(components, name, arrays, repeats)
        del arrays, fns
        log(f"selection {name}: {selection[name]['median_s']:.3f}s")
    result["selection"] = selection
    result["expected_pruned"] = patterns.num_pruned(sum(sizes), GLOBAL_SPARSITY)

    # ---- reference: full sort of the concatenated |w| ----------------------
    def full_sort():
        flat = np.concatenate([w.reshape(-1) for w in originals])
        np.abs(flat, out=flat)
        flat.sort()
        k = patterns.num_pruned(flat.size, GLOBAL_SPARSITY)
        return flat[k - 1]

    if spec["sort_repeats"]:
        result["sort"] = _timed(full_sort, spec["sort_repeats"], trace=False)
        log(f"np.sort: {result['sort']['median_s']:.3f}s")

    # ---- the whole update on the backend's variables -----------------------
    wrappers = []
    for i, (shape, w) in enumerate(zip(shapes, originals)):
        layer = keras.layers.Dense(
            shape[1], use_bias=False, kernel_initializer="zeros", name=f"d{i}"
        )
        layer.build((None, shape[0]))
        layer.kernel.assign(w)
        wrappers.append(
            keras_prune.PruneLowMagnitude(
                layer, keras_prune.ConstantSparsity(GLOBAL_SPARSITY, 0),
                scope="global",
            )
        )
    gc.collect()
    result["rss_after_build_mb"] = _status_kb("VmRSS") / 1024
    kernels = [wr.layer.kernel for wr in wrappers]
    all_true = [np.ones(w.shape, dtype=bool) for w in originals]
    components["`ops.convert_to_numpy(kernel.value)`, all kernels"] = _median_time(
        lambda: [ops.convert_to_numpy(k.value).size for k in kernels], repeats
    )
    components["`kernel.assign(ndarray)`, all kernels"] = _median_time(
        lambda: [k.assign(w) for k, w in zip(kernels, originals)], repeats
    )
    components["`mask.assign(bool ndarray)`, all masks"] = _median_time(
        lambda: [wr.masks[0].assign(t) for wr, t in zip(wrappers, all_true)],
        repeats,
    )
    del all_true
    update = {}
    step = [0]

    for name, _zeros in GLOBAL_STATES:
        keeps = state_keeps.get(name)

        def prepare(keeps=keeps):
            for wrapper, w, i in zip(wrappers, originals, range(len(originals))):
                wrapper.layer.kernel.assign(w if keeps is None else w * keeps[i])
            step[0] += 1

        def run():
            return update_global_masks(wrappers, GLOBAL_SPARSITY, step[0])

        update[name] = _timed(run, repeats, prepare)
        prepare()
        update[name]["profile"] = _profiled(run)
        pruned = sum(
            int(np.count_nonzero(~ops.convert_to_numpy(m)))
            for wr in wrappers for m in wr.masks
        )
        zeros = sum(
            int(np.count_nonzero(ops.convert_to_numpy(wr.layer.kernel) == 0))
            for wr in wrappers
        )
        update[name]["pruned"] = pruned
        update[name]["zeros_after"] = zeros
        log(f"update {name}: {update[name]['median_s']:.3f}s")
    result["update"] = update
    return result


def work(spec, log):
    """The measurement `spec["kind"]` names, in a worker (common.worker_main)."""
    return {"accuracy": accuracy_worker,
            "global": global_worker}[spec["kind"]](spec, log)


# ---------------------------------------------------------------------------
# Orchestrator
# ---------------------------------------------------------------------------


def _run_worker(backend, spec, tmp):
    stem = os.path.join(tmp, f"{spec['kind']}_{backend}_{spec.get('seed', 0)}")
    return common.run_worker(__file__, backend, spec, stem, spec["kind"], threads=1)


# ---- rendering -----------------------------------------------------------------


def _pct(x):
    return f"{100 * x:.2f}"


def _mean(xs):
    return sum(xs) / len(xs)


def _each(xs):
    return " / ".join(_pct(x) for x in xs)


def _verdict(ok):
    return "**PASS**" if ok else "**MISS**"


def render_accuracy(runs):
    lines = []
    add = lines.append
    r0 = runs[0]
    seeds = [r["seed"] for r in runs]
    add(
        f"Backend {r0['backend']}; seeds {', '.join(map(str, seeds))}; "
        f"{r0['n_train']:,} training / {r0['n_test']:,} test images; "
        f"{r0['epochs']} epochs = {r0['total_steps']:,} steps; schedules end at "
        f"step {r0['end_step']:,} (frequency {r0['frequency']}). Accuracies in %, "
        "mean over seeds, then each seed."
    )
    add("")
    dense = [r["dense"]["accuracy"] for r in runs]

    # (1)
    add(f"#### 1. One-shot {ONESHOT_SPARSITY:.0%} (`prune_now`) + {r0['finetune_epochs']} epoch{'s' if r0['finetune_epochs'] != 1 else ''} of fine-tuning")
    add("")
    add("| scope | after pruning | after fine-tuning | (each seed) | tfmot | goal | |")
    add("|---|---|---|---|---|---|---|")
    labels = list(r0["oneshot"])
    for label in labels:
        before = [r["oneshot"][label]["after_prune"] for r in runs]
        after = [r["oneshot"][label]["after_finetune"] for r in runs]
        tf_ref, goal, verdict = "", "", ""
        if label == "global":
            tf_ref = _pct(TFMOT["oneshot global"])
            goal = f"≥ {100 * GOAL_GLOBAL_ACC:.0f}"
            verdict = _verdict(_mean(after) >= GOAL_GLOBAL_ACC)
        elif label == "layer":
            tf_ref = _pct(TFMOT["oneshot layer"])
        add(
            f"| `{label}` | {_pct(_mean(before))} | **{_pct(_mean(after))}** | "
            f"{_each(after)} | {tf_ref} | {goal} | {verdict} |"
        )
    add(f"| dense (before pruning) | | {_pct(_mean(dense))} | {_each(dense)} | {_pct(TFMOT['dense'])} | | |")
    add("")
    held = all(r["oneshot"][l]["masks_held"] for r in runs for l in labels)
    add(
        "Per-layer sparsity of each allocation (seed "
        f"{r0['seed']}; the other seeds differ by < 1 point), % of the "
        "kernel pruned:"
    )
    add("")
    layers = [a["layer"] for a in r0["oneshot"][labels[0]]["allocation"]]
    add("| scope | " + " | ".join(
        f"{a['layer']} ({'×'.join(map(str, a['shape']))})"
        for a in r0["oneshot"][labels[0]]["allocation"]) + " | all |")
    add("|---|" + "---|" * (len(layers) + 1))
    for label in labels:
        alloc = r0["oneshot"][label]["allocation"]
        total = sum(a["pruned"] for a in alloc) / sum(a["n"] for a in alloc)
        add(f"| `{label}` | " + " | ".join(
            f"{100 * a['pruned'] / a['n']:.2f}" for a in alloc
        ) + f" | {100 * total:.2f} |")
    add("")
    add(
        "Masks held through fine-tuning (zeros of the stripped kernels ≥ the "
        f"pruned count, every run): {'yes' if held else 'NO'}."
    )
    add("")

    # (2) and (3)
    def col(label):
        return [r["gradual"][label]["accuracy"] for r in runs]

    nm, block, unstr = col("2:4"), col("block 1x4 AVG 90 %"), col("unstructured 90 %")
    nm_ok = all(r["gradual"]["2:4"]["check_n_m_ok"] for r in runs)
    add("#### 2. 2:4 after gradual training; 3. block 1×4 AVG vs unstructured at 90 %")
    add("")
    add("| run | accuracy | (each seed) | weight sparsity | tfmot | goal | |")
    add("|---|---|---|---|---|---|---|")

    def sparsity(label):
        z = r0["gradual"][label]["zeros"]
        return f"{100 * sum(x['zeros'] for x in z) / sum(x['n'] for x in z):.2f} %"

    gap_nm = _mean(nm) - _mean(dense)
    gap_block = _mean(block) - _mean(unstr)
    add(f"| dense | {_pct(_mean(dense))} | {_each(dense)} | 0 % | {_pct(TFMOT['dense'])} | | |")
    add(
        f"| 2:4 (`sparsity_m_by_n=(2, 4)`) | **{_pct(_mean(nm))}** | {_each(nm)} | "
        f"{sparsity('2:4')} | {_pct(TFMOT['2:4'])} | ≥ dense − 0.3 | "
        f"{_verdict(gap_nm >= -GOAL_NM_GAP)} ({100 * gap_nm:+.2f} pt) |"
    )
    add(
        f"| `check_n_m(stripped, 2, 4).ok` | {'True' if nm_ok else 'False'} (every seed) | | | | True | {_verdict(nm_ok)} |"
    )
    add(
        f"| unstructured 90 % | {_pct(_mean(unstr))} | {_each(unstr)} | "
        f"{sparsity('unstructured 90 %')} | {_pct(TFMOT['unstructured 90'])} | | |"
    )
    add(
        f"| block 1×4 AVG 90 % | **{_pct(_mean(block))}** | {_each(block)} | "
        f"{sparsity('block 1x4 AVG 90 %')} | {_pct(TFMOT['block'])} | "
        f"≥ unstructured − 0.5 | {_verdict(gap_block >= -GOAL_BLOCK_GAP)} "
        f"({100 * gap_block:+.2f} pt) |"
    )
    add("")
    paired_nm = [n - d for n, d in zip(nm, dense)]
    paired_block = [b - u for b, u in zip(block, unstr)]
    add(
        "Paired differences per seed (points): 2:4 − dense "
        + ", ".join(f"{100 * d:+.2f}" for d in paired_nm)
        + "; block − unstructured "
        + ", ".join(f"{100 * d:+.2f}" for d in paired_block)
        + ". Wall time of one 10-epoch run: "
        + f"{_mean([r['dense']['wall_s'] for r in runs]):.0f} s dense, "
        + f"{_mean([r['gradual']['2:4']['wall_s'] for r in runs]):.0f} s 2:4, "
        + f"{_mean([r['gradual']['block 1x4 AVG 90 %']['wall_s'] for r in runs]):.0f} s block, "
        + f"{_mean([r['gradual']['unstructured 90 %']['wall_s'] for r in runs]):.0f} s unstructured."
    )
    goals = {
        "global one-shot ≥ 80 %": _mean([r["oneshot"]["global"]["after_finetune"] for r in runs]) >= GOAL_GLOBAL_ACC,
        "2:4 within 0.3 pt of dense": gap_nm >= -GOAL_NM_GAP,
        "check_n_m ok": nm_ok,
        "block within 0.5 pt of unstructured": gap_block >= -GOAL_BLOCK_GAP,
    }
    return lines, goals


def _mb(x):
    return f"{x / 1e6:.0f} MB"


def render_global(results):
    lines = []
    add = lines.append
    r0 = results[0]
    add(
        f"{r0['weights']:,} float32 weights ({_mb(r0['weight_bytes'])}) in "
        f"{len(r0['shapes'])} Dense kernels ("
        + ", ".join("×".join(map(str, s)) for s in r0["shapes"])
        + f"), target {GLOBAL_SPARSITY:.0%}: exactly {r0['expected_pruned']:,} "
        "pruned. Times: median of the runs listed; *extra RSS* = peak RSS during "
        "the call − RSS before it (max over the timed runs); *traced* = "
        "tracemalloc's peak (one more run; NumPy allocations only). × = "
        "relative to the weights' bytes."
    )
    add("")
    add(
        "| backend | weights before | **`update_global_masks`** | (runs) | "
        "extra RSS | traced | selection alone (`global_masks`, NumPy) | "
        "extra RSS | traced | goal ≤ 1.5 s, ≤ 1× | |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|---|")
    goals = {}
    for r in results:
        w = r["weight_bytes"]
        for name, _z in GLOBAL_STATES:
            u, s = r["update"][name], r["selection"][name]
            ok = u["median_s"] <= GOAL_UPDATE_S and u["rss_extra_max"] <= GOAL_MEMORY_X * w
            goals[f"100 M update {r['backend']} {name}"] = ok
            why = []
            if u["median_s"] > GOAL_UPDATE_S:
                why.append(f"time ×{u['median_s'] / GOAL_UPDATE_S:.2f}")
            if u["rss_extra_max"] > GOAL_MEMORY_X * w:
                why.append(f"memory ×{u['rss_extra_max'] / w:.2f}")
            add(
                f"| {r['backend']} | {name} | **{u['median_s']:.2f} s** | "
                + " / ".join(f"{t:.2f}" for t in u["seconds"])
                + f" | {_mb(u['rss_extra_max'])} ({u['rss_extra_max'] / w:.2f}×) | "
                f"{_mb(u['traced_peak'])} ({u['traced_peak'] / w:.2f}×) | "
                f"{s['median_s']:.2f} s | {_mb(s['rss_extra_max'])} "
                f"({s['rss_extra_max'] / w:.2f}×) | {_mb(s['traced_peak'])} "
                f"({s['traced_peak'] / w:.2f}×) | "
                f"{_verdict(ok)}{' (' + ', '.join(why) + ')' if why else ''} |"
            )
    add("")
    sorts = [r for r in results if "sort" in r]
    if sorts:
        add(
            "Reference, full sort of the concatenated |w| (dense weights; "
            "`np.concatenate` + `np.abs(out=)` + in-place sort, median of "
            f"{len(sorts[0]['sort']['seconds'])}): "
            + "; ".join(
                f"{r['backend']} process {r['sort']['median_s']:.2f} s, extra RSS "
                f"{_mb(r['sort']['rss_extra_max'])} ({r['sort']['rss_extra_max'] / r['weight_bytes']:.2f}×), "
                f"{r['sort']['median_s'] / r['selection']['dense']['median_s']:.1f}× the "
                f"selection, {r['sort']['median_s'] / r['update']['dense']['median_s']:.1f}× the whole update"
                for r in sorts
            )
            + "."
        )
        add("")
    add(
        "Where the update's time goes (one cProfile'd run per state; own "
        "time of the top functions; NumPy ufuncs such as `abs` and the "
        "comparisons count in the Python function calling them: "
        "`wrapper.py:_score` is the `np.abs`, `patterns.py:_bracket_pass` and "
        "`_zeros_and_sample` the comparisons, `wrapper.py:_baked` the "
        "multiply):"
    )
    add("")
    for r in results:
        for name, _z in GLOBAL_STATES:
            prof = r["update"][name].get("profile")
            if not prof:
                continue
            add(
                f"- {r['backend']}, {name} ({prof['total_s']:.2f} s profiled): "
                + ", ".join(f"`{n}` {t:.2f}" for n, t in prof["top"][:6])
            )
    add("")
    if all("components" in r for r in results):
        add(
            "Primitives, median of 3, seconds for all six tensors together "
            "(the update runs the score and comparison passes twice):"
        )
        add("")
        add("| primitive | " + " | ".join(r["backend"] + " process" for r in results) + " |")
        add("|---|" + "---|" * len(results))
        for key in results[0]["components"]:
            add(
                f"| {key} | "
                + " | ".join(f"{r['components'].get(key, float('nan')):.3f}" for r in results)
                + " |"
            )
        add("")
    counts_ok = all(
        r["update"][n]["pruned"] == r["expected_pruned"]
        and r["selection"][n]["pruned"] == r["expected_pruned"]
        for r in results for n, _ in GLOBAL_STATES
    )
    add(
        "Exact count (masks of every run prune exactly "
        f"{r0['expected_pruned']:,}): {'yes' if counts_ok else 'NO'}. RSS after "
        "building the wrapped layers: "
        + ", ".join(f"{r['backend']} {r['rss_after_build_mb']:.0f} MB" for r in results)
        + "."
    )
    goals["100 M exact count"] = counts_ok
    return lines, goals


def render(data):
    lines = []
    add = lines.append
    add("Every worker process used 1 intra-op / 1 inter-op thread and ran "
        "alone among this script's workers.")
    add("")
    goals = {}
    if data.get("accuracy"):
        add("### Accuracy on Fashion-MNIST, LeNet-300-100")
        add("")
        acc_lines, acc_goals = render_accuracy(data["accuracy"])
        lines += acc_lines
        goals.update(acc_goals)
        add("")
    if data.get("global"):
        add(f"### Global threshold over ~100 M weights (`update_global_masks`, sparsity {GLOBAL_SPARSITY})")
        add("")
        g_lines, g_goals = render_global(data["global"])
        lines += g_lines
        goals.update(g_goals)
        add("")
    add("**Goals**: " + "; ".join(f"{k}: {'PASS' if ok else 'MISS'}" for k, ok in goals.items()) + ".")
    return "\n".join(lines)


def measure(args, data):
    benches = set(args.bench.split(","))
    if not benches <= {"accuracy", "global"}:
        raise SystemExit("--bench: a subset of accuracy,global")
    seeds = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")]
    data["quick"] = args.quick
    with tempfile.TemporaryDirectory(prefix="patterns_") as tmp:
        if "accuracy" in benches:
            data["accuracy"] = []
            for seed in seeds:
                spec = {
                    "kind": "accuracy",
                    "seed": seed,
                    "n_train": 4096 if args.quick else 60000,
                    "n_test": 2000 if args.quick else 10000,
                    "epochs": 3 if args.quick else EPOCHS,
                    "finetune_epochs": 1 if args.quick else FINETUNE_EPOCHS,
                    "frequency": 10 if args.quick else FREQUENCY,
                    "oneshot": ONESHOT_SPARSITY,
                }
                data["accuracy"].append(_run_worker(args.backend, spec, tmp))
                if args.json:  # keep partial results of a long run
                    common.save_json(args.json, data)
        if "global" in benches:
            data["global"] = []
            for backend in args.global_backends:
                spec = {
                    "kind": "global",
                    "shapes": QUICK_GLOBAL_SHAPES if args.quick else GLOBAL_SHAPES,
                    "repeats": args.repeats,
                    "sort_repeats": (
                        args.sort_repeats if args.sort_repeats is not None
                        else (1 if args.quick else 3)
                    ),
                }
                data["global"].append(_run_worker(backend, spec, tmp))
                if args.json:
                    common.save_json(args.json, data)


def main(argv=None):
    parser = common.parser(
        "patterns.py", __doc__, write_by_default=True,
        quick="smoke run: 4,096 images, 3 epochs, 1.6 M weights (~2 min)")
    parser.add_argument("--bench", default="accuracy,global",
                        help="comma-separated subset of accuracy,global")
    parser.add_argument("--backend", default="tensorflow",
                        choices=common.BACKENDS,
                        help="backend of the accuracy benchmarks (default tensorflow)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2)")
    common.add_backends(parser, "--global-backends",
                        help="backends of the 100 M-weight benchmark, one "
                             "process each")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (median)")
    parser.add_argument("--sort-repeats", type=int, default=None,
                        help="full-sort reference runs per backend (default 3; 0 = skip)")
    return common.main(parser, measure, render, argv, work=work,
                       label="kind")


if __name__ == "__main__":
    main()
