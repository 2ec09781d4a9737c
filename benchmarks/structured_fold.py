"""BatchNorm folding: CPU inference latency of dense and pruned models,
each with and without `fold_batchnorm`.

Not part of the test suite. Run from the repository root:

    .venv/bin/python benchmarks/structured_fold.py            # full, ~7 min
    .venv/bin/python benchmarks/structured_fold.py --quick    # smoke, ~3 min
    .venv/bin/python benchmarks/structured_fold.py --write --json /tmp/f.json
    .venv/bin/python benchmarks/structured_fold.py --from-json /tmp/f.json

It prints Markdown tables; with --write it writes them to
benchmarks/results/structured_fold.md (never without --write).

Two models, each in one worker subprocess per backend of `--backends`
(KERAS_BACKEND set before Keras is imported, 1 intra-op / 1 inter-op
thread: common.py's `thread_env(1)` and `limit_threads`):

- the ResNet-style CNN of benchmarks/structured.py (`resnet_cnn`, 28x28x1,
  32/64/128 filters, Conv2D without bias + BatchNormalization everywhere),
  random (untrained) weights: latency does not depend on the values;
- `keras.applications.MobileNetV2(weights=None)`, 224x224x3, alpha 1.0.

Each is pruned by `plan_pruning(ratio=0.5, criterion="l2")` + `apply_plan`,
and the dense and the pruned model are folded with `fold_batchnorm`: four
models. Their BatchNorm statistics are set to random values first, so the
folded models' max |difference| from the unfolded ones (relative to the
output magnitude, on 4 random inputs, `predict`) checks the fold. MACs and
parameters from `model_cost` (folding changes no MAC: BatchNormalization
counts 0). The four models are timed like structured.py's latency part
(`_time_models`: the compiled forward pass, TensorFlow a `tf.function`, JAX
a `jax.jit` of `stateless_call`, torch the eager model under
`inference_mode`; warm-up calls, then rounds in which the models take turns,
order rotating; medians) at batch 1 and 32 on random inputs.

Printed per backend and batch: each model's median, the folding speed-up
(unfolded / folded, dense and pruned), the pruning speed-up without folding
(dense / pruned) and with it (dense folded / pruned folded), each ÷ the MAC
reduction, and dense unfolded / pruned folded (both steps).
"""

import os
import tempfile
import time

import common
from structured import _cost, _m, _ms, _time_models, resnet_cnn

MODELS = ("resnet", "mobilenet")
TITLES = {
    "resnet": "ResNet-style CNN (28×28×1, 32/64/128 filters, random weights)",
    "mobilenet": "MobileNetV2 (weights=None, 224×224, alpha 1.0)",
}
LABELS = ("dense", "dense folded", "pruned", "pruned folded")
RATIO = 0.5
BATCHES = (1, 32)
# Rounds at batch 1 / 32 (every round times each of the four models once).
REPEATS = {"resnet": (200, 50), "mobilenet": (40, 8)}
QUICK_REPEATS = {"resnet": (20, 5), "mobilenet": (5, 2)}

# ---------------------------------------------------------------------------
# Worker side
# ---------------------------------------------------------------------------


def _random_batchnorm(model, rng):
    """Non-trivial statistics, so that a wrong fold shows."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            for w in layer.weights:
                if "variance" in w.name or w.name == "gamma":
                    value = rng.uniform(0.5, 1.5, w.shape)
                else:
                    value = rng.normal(0, 0.5, w.shape)
                w.assign(value.astype(w.dtype))


def _relative_error(expected, got):
    import numpy as np

    return float(np.max(np.abs(expected - got)) / np.max(np.abs(expected)))


def work(spec, log):
    """The four models of `spec["model"]`, checked and timed on this
    worker's backend."""
    import keras
    import numpy as np

    from keras_prune.structured import apply_plan, fold_batchnorm, plan_pruning

    common.limit_threads()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    if spec["model"] == "resnet":
        dense = resnet_cnn()
    else:
        dense = keras.applications.MobileNetV2(weights=None)
    _random_batchnorm(dense, rng)
    pruned = apply_plan(dense, plan_pruning(dense, ratio=RATIO,
                                            criterion="l2"))
    result = {"backend": keras.backend.backend(), "model": spec["model"],
              "build_s": time.perf_counter() - t0}
    t0 = time.perf_counter()
    foldings = [fold_batchnorm(dense), fold_batchnorm(pruned)]
    result["fold_s"] = (time.perf_counter() - t0) / 2
    models = [dense, foldings[0].model, pruned, foldings[1].model]
    result["cost"] = [_cost(m) for m in models]
    result["layers"] = [len(m.layers) for m in models]
    result["folded"] = [len(f.folded) for f in foldings]
    result["not_folded"] = [f.not_folded for f in foldings]
    shape = tuple(dense.inputs[0].shape[1:])
    images = rng.random((max(BATCHES),) + shape).astype("float32")
    result["max_rel_diff"] = [
        _relative_error(a.predict(images[:4], verbose=0),
                        b.predict(images[:4], verbose=0))
        for a, b in ((models[0], models[1]), (models[2], models[3]))]
    log(f"built, pruned, folded ({result['folded']} BatchNorms; max "
        f"relative difference {result['max_rel_diff']})")
    repeats = dict(zip(BATCHES, spec["repeats"]))
    result["latency"] = _time_models(
        models, BATCHES, repeats, images, log, predict=False,
        warmup=5 if spec["model"] == "resnet" else 2)
    return result


# ---------------------------------------------------------------------------
# Orchestrator
# ---------------------------------------------------------------------------


def _run_worker(backend, spec, tmp):
    stem = os.path.join(tmp, f"{spec['model']}_{backend}")
    return common.run_worker(__file__, backend, spec, stem, spec["model"],
                             threads=1)


def render_model(runs):
    lines = []
    add = lines.append
    r0 = runs[0]
    add("| model | parameters | MACs (1 sample) | layers | BatchNorms folded "
        "| max rel. difference folded vs unfolded (" + ", ".join(
            r["backend"] for r in runs) + ") |")
    add("|---|---|---|---|---|---|")
    for i, label in enumerate(LABELS):
        cost = r0["cost"][i]
        if i % 2:
            folded = str(r0["folded"][i // 2])
            diff = ", ".join(f"{r['max_rel_diff'][i // 2]:.1e}" for r in runs)
        else:
            folded, diff = "", ""
        add(f"| {label} | {cost['params']:,} | {_m(cost['macs'])} | "
            f"{r0['layers'][i]} | {folded} | {diff} |")
    kept = {k: v for nf in r0["not_folded"] for k, v in nf.items()}
    if kept:
        add("")
        add("Not folded: " + "; ".join(f"{k}: {v}" for k, v in kept.items())
            + ".")
    add("")
    dense, pruned = r0["cost"][0]["macs"], r0["cost"][2]["macs"]
    reduction = dense / pruned
    add(f"MAC reduction of the pruned model: {reduction:.2f}×. Compiled "
        "forward pass, 1 thread, medians of "
        + " / ".join(str(r0["latency"][str(b)]["repeats"]) for b in BATCHES)
        + f" interleaved rounds at batch {' / '.join(map(str, BATCHES))}. "
        "Fold speed-up = unfolded / folded; pruning speed-up = dense / "
        "pruned, and ÷ the MAC reduction (1.0 = latency falls as the MACs).")
    add("")
    add("| backend | batch | dense ms | dense folded ms | pruned ms | pruned "
        "folded ms | fold speed-up dense / pruned | pruning speed-up "
        "unfolded (÷ MACs) | pruning speed-up folded (÷ MACs) | dense → "
        "pruned folded (÷ MACs) |")
    add("|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        for b in BATCHES:
            d, df, p, pf = r["latency"][str(b)]["forward"]
            add(f"| {r['backend']} | {b} | {_ms(d)} | {_ms(df)} | {_ms(p)} "
                f"| {_ms(pf)} | {d / df:.2f}× / {p / pf:.2f}× | "
                f"{d / p:.2f}× ({d / p / reduction:.2f}) | "
                f"**{df / pf:.2f}×** ({df / pf / reduction:.2f}) | "
                f"{d / pf:.2f}× ({d / pf / reduction:.2f}) |")
    return lines


def render(data):
    lines = []
    add = lines.append
    loads = ", ".join(f"{k} {val:.1f}" for k, val in data["load"].items())
    add(f"1-minute load average at the start of each worker: {loads}. "
        "Workers used 1 intra-op / 1 inter-op thread.")
    for model in MODELS:
        runs = [r for r in data["runs"] if r["model"] == model]
        if not runs:
            continue
        add("")
        add(f"### {TITLES[model]}: dense and −50 % L2, each with and "
            "without `fold_batchnorm`")
        add("")
        lines += render_model(runs)
    return "\n".join(lines)


def measure(args, data):
    models = args.models.split(",")
    if not set(models) <= set(MODELS):
        raise SystemExit(f"--models: a subset of {','.join(MODELS)}")
    repeats = QUICK_REPEATS if args.quick else REPEATS
    data["quick"] = args.quick
    data["load"] = {}
    data["runs"] = []
    with tempfile.TemporaryDirectory(prefix="structured_fold_") as tmp:
        for model in models:
            for backend in args.backends:
                data["load"][f"{model} {backend}"] = (
                    common.load_averages()[0])
                data["runs"].append(_run_worker(
                    backend, {"model": model, "repeats": repeats[model]},
                    tmp))


def main(argv=None):
    parser = common.parser("structured_fold.py", __doc__,
                           backends=common.BACKENDS,
                           quick="smoke run: few rounds per model")
    parser.add_argument("--models", default=",".join(MODELS),
                        help="comma-separated subset of " + ",".join(MODELS))
    return common.main(parser, measure, render, argv, work=work,
                       label="model")


if __name__ == "__main__":
    main()
