"""Overhead of keras_prune's mask mechanism, on TensorFlow, JAX and PyTorch.

Not part of the test suite. Run from the repository root:

    .venv/bin/python benchmarks/overhead.py --write    # all backends, < 9 min
    .venv/bin/python benchmarks/overhead.py --backends torch --rounds 9
    .venv/bin/python benchmarks/overhead.py --quick       # smoke run, ~2 min
    .venv/bin/python benchmarks/overhead.py --threads 0   # backends' own threads

Each backend runs in its own worker process (KERAS_BACKEND=...); this script
orchestrates them and prints Markdown tables with ratios.

1. Train-step time, pruned / dense, for LeNet-300-100 (Dense 300-100-10 on 784
   inputs) and a small CNN (Conv2D 32 3x3 - MaxPool - Conv2D 64 3x3 - MaxPool -
   Flatten - Dense 10) on Fashion-MNIST images (`load_fashion_mnist()`),
   batch 128, Adam(1e-3), `shuffle=False`. Pruned =
   `prune_low_magnitude(model, ConstantSparsity(0.9, 0, frequency=F))`,
   F = 100 and F = 1, trained with `UpdatePruningStep()` (on TensorFlow,
   F = 1 updates the masks inside the train step: `instep.InStepUpdates`);
   and, for a side-by-side comparison of TensorFlow's fast paths, "F=1
   steady" (F = 1 without the in-step updates: the compiled steady-state
   check `SteadyUpdates` called from the callback) and "F=1 host" (neither:
   every update made on the host).
   Protocol: every model is compiled once and warmed up by one untimed short
   fit (tracing / compilation). A round is the sequence dense, P1, dense, P2,
   ..., dense (the order of the pruned configurations P rotates between
   rounds); each element is one `fit` of one epoch of `--lenet-steps` (100) /
   `--cnn-steps` (50) batches that starts from the same state: same initial
   weights, masks all ones, optimizer slots and iterations zero, so the
   schedule's step 0 (a mask update) is the first step of every pruned fit.
   Per-step times come from a callback that records `time.perf_counter()` in
   `on_train_batch_begin` only: step k lasts from batch-begin k to
   batch-begin k + 1 (the last step ends at `on_epoch_end`, after Keras has
   waited for pending batch-end callbacks), so a mask update, made by
   `UpdatePruningStep.on_train_batch_begin(k)`, is counted in step k. The
   timer has no `on_train_batch_end` hook on purpose: such a hook makes Keras
   dispatch batch-end callbacks synchronously, which would change what is
   measured on JAX and torch. With 100 steps per LeNet fit and F = 100 every
   fit holds exactly one mask update (the amortized rate); a 50-step CNN fit
   holds one too (twice the amortized rate: pessimistic).
   Per fit: mean step time (includes the updates) and median step time (hides
   them). Headline ratio = median over rounds of (pruned fit's mean /
   average of the two neighbouring dense fits' means).
2. One mask update of a 2000x2000 Dense kernel (4 M weights) to 90 %:
   `PruneLowMagnitude.update_masks(0.9, step)` vs a full sort of the same |w|
   with the backend's `keras.ops.sort` (what tfmot does per layer:
   `tf.math.top_k(k=n)`, also timed) and with `np.sort`, for three states of
   the kernel: dense (first update), 80 % zeros (a late step of a gradual
   schedule), 90 % zeros (every later update at constant sparsity).
3. Memory: bytes of masks + thresholds + step variables vs bytes of the
   pruned kernels (and of all weights), measured on the backend tensors.

`--threads` (default 1) sets every backend's intra-op threads: on a shared
2-core machine, multi-threaded torch (OpenMP) step times swing by 10-50x with
the other processes' load.

`benchmarks/overhead_profile.py` splits the torch overhead into its parts and
reuses this script's models, data and timed `fit`.
"""

import statistics
import time

import common

BATCH = 128
MAX_STEPS = 200
N_TRAIN = BATCH * MAX_STEPS  # 25,600 Fashion-MNIST images, full batches only
SPARSITY = 0.9
UPDATE_SHAPE = (2000, 2000)

# ---------------------------------------------------------------------------
# Worker side (one backend per process)
# ---------------------------------------------------------------------------


def _median(xs):
    return float(statistics.median(xs))


def _mean(xs):
    return float(sum(xs) / len(xs))


def _models():
    import keras

    def lenet():
        return keras.Sequential(
            [
                keras.Input((784,)),
                keras.layers.Dense(300, activation="relu"),
                keras.layers.Dense(100, activation="relu"),
                keras.layers.Dense(10, activation="softmax"),
            ],
            name="lenet_300_100",
        )

    def cnn():
        return keras.Sequential(
            [
                keras.Input((28, 28, 1)),
                keras.layers.Conv2D(32, 3, activation="relu"),
                keras.layers.MaxPooling2D(),
                keras.layers.Conv2D(64, 3, activation="relu"),
                keras.layers.MaxPooling2D(),
                keras.layers.Flatten(),
                keras.layers.Dense(10, activation="softmax"),
            ],
            name="small_cnn",
        )

    return {"lenet": lenet, "cnn": cnn}


def _data(model_name):
    from keras_prune.datasets import load_fashion_mnist

    (x, y), _ = load_fashion_mnist()
    x, y = x[:N_TRAIN], y[:N_TRAIN]
    if model_name == "lenet":
        x = x.reshape(len(x), 784)
    return x, y


def _step_timer():
    """A callback recording per-step wall times from batch-begin hooks only.

    It has no `on_train_batch_end` on purpose (see the module docstring).
    """
    import keras

    class StepTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs = []  # one list of step times (s) per epoch

        def on_epoch_begin(self, epoch, logs=None):
            self._begins = []

        def on_train_batch_begin(self, batch, logs=None):
            self._begins.append(time.perf_counter())

        def on_epoch_end(self, epoch, logs=None):
            # Keras has waited for pending async batch-end callbacks by now.
            stamps = self._begins + [time.perf_counter()]
            self.epochs.append([b - a for a, b in zip(stamps[:-1], stamps[1:])])

    return StepTimer()


# ---- 1. train-step timing ----------------------------------------------------


# F: ConstantSparsity's frequency. On TensorFlow, F = 1 updates the masks
# inside the train step (instep.InStepUpdates) where the count does not
# change. "F=1 steady": F = 1 without the in-step updates, with the compiled
# steady-state check called from the callback (SteadyUpdates, the previous
# fast path); "F=1 host": neither, every update made on the host. Both only
# differ from "F=1" on TensorFlow: the changes measured side by side.
CONFIGS = ("dense", "F=100", "F=1", "F=1 steady", "F=1 host")


def _slow_path_callback(steady):
    """`UpdatePruningStep` without the in-step updates (a private hook) and,
    unless `steady`, without `SteadyUpdates` either."""
    import keras_prune

    class PassThrough:
        def apply(self, wrappers, sparsities, step):
            return list(wrappers)

    class SlowPath(keras_prune.UpdatePruningStep):
        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            # Before the first trace: the train function never reads them.
            self._plan.deactivate()
            self._plan.in_step = None
            if not steady:
                self._pruner.steady = PassThrough()

    return SlowPath()


def _make_model(model_name, config, initial_weights):
    import keras

    import keras_prune

    model = _models()[model_name]()
    model.set_weights(initial_weights)
    if config != "dense":
        frequency = int(config.split()[0].split("=")[1])
        model = keras_prune.prune_low_magnitude(
            model,
            keras_prune.ConstantSparsity(SPARSITY, 0, frequency=frequency),
        )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def _reset(model, weights):
    """Same start for every round: weights, masks, step, optimizer state."""
    from keras import ops

    model.set_weights(weights)
    optimizer = model.optimizer
    if optimizer.built:
        for v in optimizer.variables:
            v.assign(ops.zeros(v.shape, dtype=v.dtype))


def _fit_once(model, config, x, y, callbacks=None):
    """One epoch over (x, y); per-step times of every step.

    `callbacks` run after the step timer; by default none for "dense" and
    `UpdatePruningStep()` for a pruned config.
    """
    import keras_prune

    if callbacks is None:
        callbacks = (
            [] if config == "dense"
            else [_slow_path_callback(config.endswith("steady"))]
            if config.endswith(("host", "steady"))
            else [keras_prune.UpdatePruningStep()]
        )
    timer = _step_timer()  # first: its batch-begin stamp precedes the update
    t0 = time.perf_counter()
    model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[timer, *callbacks],
    )
    wall = time.perf_counter() - t0
    (steps,) = timer.epochs
    return {
        "mean": _mean(steps),
        "median": _median(steps),
        "n": len(steps),
        "fit_wall": wall,
    }


def bench_train(model_name, rounds, steps, log):
    import keras
    import numpy as np

    from keras_prune.core.layers import pruned_layers

    keras.utils.set_random_seed(0)
    initial = _models()[model_name]().get_weights()
    x, y = _data(model_name)
    x, y = x[: steps * BATCH], y[: steps * BATCH]
    models, starts = {}, {}
    for config in CONFIGS:
        models[config] = _make_model(model_name, config, initial)
        starts[config] = models[config].get_weights()
    # Warm-up (compilation / tracing), not timed: one short fit per config.
    for config in CONFIGS:
        _fit_once(models[config], config, x[: 10 * BATCH], y[: 10 * BATCH])
    # Rounds: dense, P1, dense, P2, ..., dense -- every pruned fit sits
    # between two dense fits, and its ratio is taken against their average
    # (robust to load that drifts on a shared machine). The order of the
    # pruned configurations rotates from round to round.
    pruned = CONFIGS[1:]
    results = {c: [] for c in CONFIGS}
    ratios = {c: {"mean": [], "median": []} for c in pruned}
    for r in range(rounds):
        shift = r % len(pruned)
        order = pruned[shift:] + pruned[:shift]
        sequence = [c for p in order for c in ("dense", p)] + ["dense"]
        runs = []
        for config in sequence:
            _reset(models[config], starts[config])
            runs.append((config, _fit_once(models[config], config, x, y)))
        for i, (config, run) in enumerate(runs):
            results[config].append(run)
            if config != "dense":
                before, after = runs[i - 1][1], runs[i + 1][1]
                for stat in ("mean", "median"):
                    ratios[config][stat].append(
                        run[stat] / ((before[stat] + after[stat]) / 2)
                    )
        log(
            f"{model_name} round {r + 1}/{rounds}: "
            + ", ".join(
                f"{c} {run['mean'] * 1e3:.2f}ms" for c, run in runs
            )
        )
    out = {}
    for config in CONFIGS:
        mine = results[config]
        out[config] = {
            "mean_ms": [s["mean"] * 1e3 for s in mine],
            "median_ms": [s["median"] * 1e3 for s in mine],
            "steps_per_round": mine[0]["n"],
        }
        if config != "dense":
            out[config]["ratios_mean"] = ratios[config]["mean"]
            out[config]["ratios_median"] = ratios[config]["median"]
            out[config]["ratio_best"] = min(s["mean"] for s in mine) / min(
                s["mean"] for s in results["dense"]
            )
            # Sanity: the pruned model really is 90 % sparse after training.
            layers = pruned_layers(models[config])
            zeros = sum(
                int(np.sum(keras.ops.convert_to_numpy(v.value) == 0))
                for l in layers
                for v in l.prunable_weights
            )
            total = sum(
                int(np.prod(v.shape)) for l in layers for v in l.prunable_weights
            )
            out[config]["sparsity_after"] = zeros / total
    return out


# ---- 2. one mask update vs a full sort ------------------------------------


def _timeit(fn, setup=None, repeats=7):
    times = []
    fn_result = None
    for _ in range(repeats + 1):  # first call = warm-up
        if setup:
            setup()
        t0 = time.perf_counter()
        fn_result = fn()
        times.append(time.perf_counter() - t0)
    del fn_result
    return _median(times[1:])


UPDATE_STATES = (
    # (name, sparsity of the kernel before the timed update)
    ("first update: dense weights", None),
    ("gradual: 80 % -> 90 %", 0.8),
    ("steady: 90 % -> 90 %", SPARSITY),
)


def bench_update(repeats):
    """One `update_masks(0.9, step)` of a 4 M kernel vs full sorts.

    Three states of the kernel before the update: dense random weights (the
    first update), already 80 % zeros (a gradual schedule), already 90 %
    zeros (every later update of ConstantSparsity, and PolynomialDecay after
    its end). Sorts are timed on the same |w| as the update.
    """
    import keras
    import numpy as np
    from keras import ops

    import keras_prune
    from keras_prune.core import patterns

    keras.utils.set_random_seed(0)
    rows, cols = UPDATE_SHAPE
    layer = keras_prune.PruneLowMagnitude(
        keras.layers.Dense(cols), keras_prune.ConstantSparsity(SPARSITY, 0)
    )
    layer.build((None, rows))
    kernel = layer.prunable_weights[0]
    original = ops.convert_to_numpy(kernel.value).copy()
    n = original.size
    k = patterns.num_pruned(n, SPARSITY)
    out = {"n": int(n), "states": []}
    for name, before in UPDATE_STATES:

        def setup(before=before):
            kernel.assign(original)
            if before is not None:
                layer.update_masks(before, 0)

        setup()
        absw = np.abs(ops.convert_to_numpy(kernel.value))
        flat = ops.convert_to_tensor(absw.reshape(-1))
        row = {"state": name}
        row["update_s"] = _timeit(
            lambda: layer.update_masks(SPARSITY, 1), setup=setup, repeats=repeats
        )
        row["magnitude_mask_s"] = _timeit(
            lambda: patterns.magnitude_mask(absw, SPARSITY), repeats=repeats
        )

        def backend_sort():
            return float(ops.convert_to_numpy(ops.sort(flat)[k - 1]))

        row["ops_sort_s"] = _timeit(backend_sort, repeats=max(2, repeats // 2))
        if before is None:

            def backend_topk():  # tfmot's literal op: top_k with k = n
                values, _ = ops.top_k(flat, n)
                return float(ops.convert_to_numpy(values[n - k]))

            row["ops_top_k_s"] = _timeit(
                backend_topk, repeats=max(2, repeats // 2)
            )
        row["np_sort_s"] = _timeit(
            lambda: np.sort(absw.reshape(-1))[k - 1], repeats=repeats
        )
        # The sort and the selection agree on the threshold.
        threshold = patterns.magnitude_mask(absw, SPARSITY)[1]
        assert backend_sort() == threshold, (backend_sort(), threshold)
        out["states"].append(row)
    return out


# ---- 3. memory -----------------------------------------------------------


def _nbytes(variable):
    """Bytes of the backend tensor behind a variable, as the backend stores it."""
    import keras

    value = variable.value
    backend = keras.backend.backend()
    if backend == "torch":
        return int(value.element_size() * value.nelement())
    if backend == "jax":
        return int(value.nbytes)
    if backend == "tensorflow":
        return int(value.dtype.size * int(value.shape.num_elements()))
    return int(keras.ops.convert_to_numpy(value).nbytes)


def bench_memory():
    import keras

    import keras_prune
    from keras_prune.core.layers import pruned_layers

    out = {}
    for name, build in _models().items():
        pruned = keras_prune.prune_low_magnitude(
            build(), keras_prune.ConstantSparsity(SPARSITY, 0)
        )
        layers = pruned_layers(pruned)
        kernels = sum(_nbytes(v) for l in layers for v in l.prunable_weights)
        masks = sum(_nbytes(m) for l in layers for m in l.masks)
        thresholds = sum(_nbytes(t) for l in layers for t in l.thresholds)
        steps = sum(_nbytes(l.pruning_step) for l in layers)
        wrapper_ids = {
            id(v)
            for l in layers
            for v in list(l.masks) + list(l.thresholds) + [l.pruning_step]
        }
        model_weights = sum(
            _nbytes(v) for v in pruned.weights if id(v) not in wrapper_ids
        )
        mask_dtypes = sorted({str(m.value.dtype) for l in layers for m in l.masks})
        out[name] = {
            "kernels": kernels,
            "all_weights": model_weights,
            "masks": masks,
            "thresholds": thresholds,
            "steps": steps,
            "mask_dtypes": mask_dtypes,
            "n_wrappers": len(layers),
        }
    del keras
    return out


def work(spec, log):
    """Memory, the 4 M-weight update and the train steps on this worker's
    backend."""
    import keras

    if spec["threads"] and keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(spec["threads"])
    result = {"backend": keras.backend.backend()}
    t0 = time.perf_counter()
    result["memory"] = bench_memory()
    result["update"] = bench_update(repeats=3 if spec["quick"] else 5)
    log(f"memory, mask update done ({time.perf_counter() - t0:.0f}s)")
    for model_name in spec["models"]:
        steps = spec["lenet_steps"] if model_name == "lenet" else spec[
            "cnn_steps"]
        result[model_name] = bench_train(model_name, spec["rounds"], steps,
                                         log)
        log(f"{model_name} done ({time.perf_counter() - t0:.0f}s)")
    result["seconds"] = time.perf_counter() - t0
    return result


# ---------------------------------------------------------------------------
# Orchestrator
# ---------------------------------------------------------------------------


def measure(args, data):
    if args.rounds is None:
        args.rounds = 2 if args.quick else 5
    if args.lenet_steps is None:
        args.lenet_steps = 40 if args.quick else 100
    if args.cnn_steps is None:
        args.cnn_steps = 10 if args.quick else 50
    if max(args.lenet_steps, args.cnn_steps) > N_TRAIN // BATCH:
        raise SystemExit(f"at most {N_TRAIN // BATCH} steps per round")
    models = args.models.split(",")
    if not set(models) <= {"lenet", "cnn"}:
        raise SystemExit("--models: a subset of lenet,cnn")
    data["quick"] = args.quick
    data["settings"] = {"rounds": args.rounds, "lenet_steps": args.lenet_steps,
                        "cnn_steps": args.cnn_steps, "models": models,
                        "threads": args.threads}
    data["results"] = common.run_backends(
        "overhead.py", args.backends,
        dict(data["settings"], quick=args.quick), threads=args.threads)


GOALS = {"F=100": 1.03, "F=1": 1.25}


def _goal(config, ratio):
    goal = GOALS[config.split()[0]]
    if ratio <= goal:
        return f"≤ {goal}: met"
    return f"≤ {goal}: missed by {100 * (ratio / goal - 1):.1f} %"


def render(data):
    results, settings = data["results"], data["settings"]
    models = settings["models"]
    lines = []
    add = lines.append
    add(
        f"{settings['rounds']} rounds of dense, P1, dense, P2, …, dense; "
        f"each a `fit` of {settings['lenet_steps']} steps (LeNet) / "
        f"{settings['cnn_steps']} steps (CNN), batch {BATCH}, after one "
        "untimed warm-up fit; intra-op threads: "
        f"{settings['threads'] or 'backend default'}."
    )
    add("")
    add(
        "### 1. Train step, pruned / dense "
        "(goal ≤ 1.03× at F=100, ≤ 1.25× at F=1)"
    )
    add("")
    add(
        "**ratio** = median over rounds of (mean step time of the pruned fit / "
        "average of the mean step times of the dense fits just before and "
        "after it); means include the mask-update steps. *best* = fastest "
        "pruned fit / fastest dense fit (mean step times; least disturbed by "
        "other processes). *ratio of medians*: like **ratio** with per-fit "
        "median step times (hides the updates; on JAX the median step is only "
        "the asynchronous dispatch). Step times in ms: median over all fits."
    )
    add("")
    add(
        "| backend | model | config | dense mean | pruned mean | **ratio** | "
        "per-round ratios (min–max) | best | dense median | pruned median | "
        "ratio of medians | goal (on **ratio**) |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        for model_name in models:
            timed = r[model_name]
            dense = timed["dense"]
            for config in CONFIGS[1:]:
                d = timed[config]
                ratio = _median(d["ratios_mean"])
                add(
                    f"| {r['backend']} | {model_name} | {config} | "
                    f"{_median(dense['mean_ms']):.2f} | "
                    f"{_median(d['mean_ms']):.2f} | "
                    f"**{ratio:.3f}×** | "
                    f"{min(d['ratios_mean']):.3f}–{max(d['ratios_mean']):.3f} | "
                    f"{d['ratio_best']:.3f}× | "
                    f"{_median(dense['median_ms']):.2f} | "
                    f"{_median(d['median_ms']):.2f} | "
                    f"{_median(d['ratios_median']):.3f}× | "
                    f"{_goal(config, ratio)} |"
                )
    add("")
    add(
        "Kernel sparsity after the last round: "
        + "; ".join(
            f"{r['backend']} "
            + ", ".join(
                f"{m} {c} {100 * r[m][c]['sparsity_after']:.1f} %"
                for m in models
                for c in CONFIGS[1:]
            )
            for r in results
        )
        + "."
    )
    add("")
    rows, cols = UPDATE_SHAPE
    add(
        f"### 2. One mask update of a {rows}×{cols} Dense kernel "
        f"({rows * cols / 1e6:.0f} M weights) to sparsity 0.9 "
        "(goal ≥ 10× faster than a full sort)"
    )
    add("")
    add(
        "`update_masks(0.9, step)`: |w| to host, `magnitude_mask` (exact "
        "zeros counted first, `np.partition` of the rest), mask, threshold "
        "and baked kernel assigned back. "
        "Sorts of the same |w|: `keras.ops.sort` (full sort, threshold read "
        "back; tfmot runs `tf.math.top_k(k=n)`, also a full sort, per layer "
        "at every update) and `np.sort`. Median of repeats."
    )
    add("")
    add(
        "| backend | kernel before the update | `update_masks` | of which "
        "`magnitude_mask` | `ops.sort` | `ops.top_k(k=n)` | `np.sort` | "
        "**ops.sort / update** | np.sort / update |"
    )
    add("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        for u in r["update"]["states"]:
            cells = [
                r["backend"],
                u["state"],
                f"{1e3 * u['update_s']:.1f} ms",
                f"{1e3 * u['magnitude_mask_s']:.1f} ms",
                f"{1e3 * u['ops_sort_s']:.0f} ms",
                f"{1e3 * u['ops_top_k_s']:.0f} ms" if "ops_top_k_s" in u else "",
                f"{1e3 * u['np_sort_s']:.1f} ms",
                f"**{u['ops_sort_s'] / u['update_s']:.1f}×**",
                f"{u['np_sort_s'] / u['update_s']:.2f}×",
            ]
            add("| " + " | ".join(cells) + " |")
    add("")
    add(
        "### 3. Memory of the pruning state "
        "(goal ≤ 25 % of the kernels; tfmot: float32 mask, +100 %)"
    )
    add("")
    add(
        "| backend | model | pruned kernels | masks | thresholds + steps | "
        "**state / kernels** | state / all weights | mask dtype |"
    )
    add("|---|---|---|---|---|---|---|---|")
    for r in results:
        for model_name, m in r["memory"].items():
            extra = m["masks"] + m["thresholds"] + m["steps"]
            add(
                f"| {r['backend']} | {model_name} | {m['kernels']:,} B | "
                f"{m['masks']:,} B | {m['thresholds'] + m['steps']} B | "
                f"**{100 * extra / m['kernels']:.3f} %** | "
                f"{100 * extra / m['all_weights']:.3f} % | "
                f"{', '.join(m['mask_dtypes'])} |"
            )
    return "\n".join(lines)


def main(argv=None):
    parser = common.parser("overhead.py", __doc__, backends=common.BACKENDS,
                           threads=1,
                           quick="smoke run: 2 rounds of 40 / 10 steps, "
                                 "fewer repeats")
    parser.add_argument(
        "--rounds", type=int, default=None, help="interleaved rounds (5)"
    )
    parser.add_argument(
        "--lenet-steps", type=int, default=None, help="steps per fit (100)"
    )
    parser.add_argument(
        "--cnn-steps", type=int, default=None, help="steps per fit (50)"
    )
    parser.add_argument(
        "--models", default="lenet,cnn", help="subset of lenet,cnn (default both)"
    )
    return common.main(parser, measure, render, argv, work=work)


if __name__ == "__main__":
    main()
