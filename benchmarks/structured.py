"""Structured pruning: parameters, MACs, CPU latency and accuracy.

Not part of the test suite. Run from the repository root:

    .venv/bin/python benchmarks/structured.py             # full run, ~60 min
    .venv/bin/python benchmarks/structured.py --quick     # smoke run, ~8 min
    .venv/bin/python benchmarks/structured.py --bench latency,mobilenet \\
        --models-from /tmp/structured_models   # re-time saved models
    .venv/bin/python benchmarks/structured.py --from-json /tmp/structured.json

It prints Markdown tables (goal, PASS/MISS) and, in a full run (unless
--no-write; a --quick run only with --write), writes them to
benchmarks/results/structured.md. Every measurement runs in a worker
subprocess of this script with KERAS_BACKEND set before Keras is imported;
workers run one at a time.

1. Accuracy (`--bench accuracy`, backend `--train-backend`, default
   tensorflow, the backend's default threads: 2 on this machine). A
   ResNet-style CNN on Fashion-MNIST (`load_fashion_mnist()`, 60,000 / 10,000
   images, 28x28x1): stem Conv2D 32 3x3 + BN + ReLU; three stages of one
   basic residual block (two Conv2D 3x3 + BN, ReLU after the Add) with 32,
   64, 128 filters, the 2nd and 3rd with stride 2 and a 1x1 Conv2D + BN
   projection shortcut; GlobalAveragePooling2D; Dense 10 logits. Convs have
   no bias (BN follows). One run per seed of `--seeds` (default 0,1): seeded
   initial weights (`keras.utils.set_random_seed`) and per-epoch
   permutations of the training set (`np.random.default_rng`), fed epoch by
   epoch with `shuffle=False` (common.fit_epochs). Dense
   training: Adam, learning rate 1e-3 cosine-decayed to 0 over `--epochs`
   (6) epochs, batch 128, sparse categorical cross-entropy from logits.
   Then `plan_pruning(dense, ratio=0.5, criterion="l2")` (layer scope,
   every prunable group loses half its channels; the logits stay) and
   `apply_plan`; `verify` on 16 test images. Fine-tuning: 2 epochs
   (the permutations of the next two epochs) from the pruned weights, each
   variant from the same pruned model: the headline (the dense recipe
   shortened: Adam 1e-3 cosine-decayed to 0 over the 2 epochs) and the
   variants of `--finetune` (see FINETUNES: other learning rates; 2e-3 was
   picked after a first run missed the goal with 1e-3, so check it on the
   seeds it was not picked on). Test accuracy = argmax of `predict` on the
   10,000 test images: dense, right after pruning, after each fine-tuning.
   Parameters and MACs (one sample) from
   `keras_prune.structured.cost.model_cost`. The first seed's dense and
   headline fine-tuned models are saved as .keras files for the latency
   workers.
2. Latency (`--bench latency`, one worker per backend of `--backends`, 1
   intra-op / 1 inter-op thread: common.py's `thread_env(1)` plus
   `limit_threads`, TensorFlow's / torch's thread setters). The two saved
   models are loaded and timed on test images at batch 1 and 32, two ways:
   the compiled forward pass (what `predict_on_batch` runs, without its data
   handling: TensorFlow a `tf.function` (no XLA, as Keras uses on CPU), JAX
   a `jax.jit` of `stateless_call`, torch the eager model under
   `inference_mode`, as Keras runs it; inputs converted once, outputs
   fetched to the host inside the timed call) and `predict_on_batch` itself.
   Warm-up calls first, then `--repeats` rounds in which the models take
   turns call by call (the order rotates each round), so that machine load
   hits them alike; median per model. Speed-up = dense median / pruned
   median; the goal compares it with the MAC reduction: speed-up >= 0.8 x
   (dense MACs / pruned MACs). The loaded models' test accuracy is also
   measured on every backend (the same weights must give the same accuracy).
3. MobileNetV2 (`--bench mobilenet`, one worker per backend, 1 thread):
   `keras.applications.MobileNetV2(weights=None)` (224x224x3, 1000
   classes), pruned by `plan_pruning(ratio=r, criterion="l2")` at r = 0.3
   and 0.5, each with `round_to=None` and `round_to=8` (kept channels
   rounded UP to a multiple of 8), timed like 2 (compiled forward pass,
   random images) with the dense model in the same rotation.

Goals (from the structured-pruning issue): speed-up >= 0.8x the MAC
reduction; accuracy drop after fine-tuning <= 1 point.
"""

import os
import shutil
import statistics
import tempfile
import time

import common
from common import fit_epochs

BATCH = 128
EPOCHS = 6
FINETUNE_EPOCHS = 2
RATIO = 0.5
WIDTHS = (32, 64, 128)
WIDE = (64, 128, 256)
LATENCY_BATCHES = (1, 32)
MOBILENET_PLANS = ((0.3, None), (0.3, 8), (0.5, None), (0.5, 8))
GOAL_SPEEDUP_OF_MACS = 0.8
GOAL_DROP = 0.01
# Fine-tuning variants: name -> (Adam learning rate, cosine-decayed to 0?).
HEADLINE = "1e-3-cosine"
FINETUNES = {
    HEADLINE: (1e-3, True),
    "2e-3-cosine": (2e-3, True),
    "3e-4-cosine": (3e-4, True),
    "1e-4-constant": (1e-4, False),
}

# ---------------------------------------------------------------------------
# Worker side
# ---------------------------------------------------------------------------


def resnet_cnn(widths=WIDTHS, name="resnet_fmnist"):
    """The ResNet-style CNN of the module docstring (logits out)."""
    import keras

    L = keras.layers

    def conv_bn(x, filters, kernel, stride, name):
        x = L.Conv2D(filters, kernel, strides=stride, padding="same",
                     use_bias=False, name=name)(x)
        return L.BatchNormalization(name=name + "_bn")(x)

    inputs = keras.Input((28, 28, 1))
    x = L.ReLU()(conv_bn(inputs, widths[0], 3, 1, "stem"))
    for stage, filters in enumerate(widths):
        stride = 1 if stage == 0 else 2
        y = L.ReLU()(conv_bn(x, filters, 3, stride, f"s{stage}_conv1"))
        y = conv_bn(y, filters, 3, 1, f"s{stage}_conv2")
        if stride != 1 or x.shape[-1] != filters:
            x = conv_bn(x, filters, 1, stride, f"s{stage}_shortcut")
        x = L.ReLU()(L.Add(name=f"s{stage}_add")([x, y]))
    x = L.GlobalAveragePooling2D()(x)
    outputs = L.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def _cost(model):
    from keras_prune.structured.cost import model_cost

    cost = model_cost(model)
    return {"params": int(cost.params), "macs": int(cost.macs),
            "uncounted": [c.path for c in cost.uncounted]}


def _accuracy(model, x, y):
    import numpy as np

    logits = model.predict(x, batch_size=500, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == y))


def _compile(model, lr, steps, cosine):
    import keras

    if cosine:
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=steps)
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def accuracy_worker(spec, log):
    import keras
    import numpy as np

    from keras_prune.datasets import load_fashion_mnist
    from keras_prune.structured import apply_plan, plan_pruning, verify

    (x, y), (x_test, y_test) = load_fashion_mnist()
    x, y = x[:spec["n_train"]], y[:spec["n_train"]]
    x_test, y_test = x_test[:spec["n_test"]], y_test[:spec["n_test"]]
    epochs, tune = spec["epochs"], spec["finetune_epochs"]
    rng = np.random.default_rng(spec["seed"])
    perms = [rng.permutation(len(x)) for _ in range(epochs + tune)]
    steps = -(-len(x) // BATCH)
    keras.utils.set_random_seed(spec["seed"])
    dense = _compile(resnet_cnn(), 1e-3, epochs * steps, True)
    result = {"backend": keras.backend.backend(), "seed": spec["seed"],
              "n_train": len(x), "n_test": len(x_test), "epochs": epochs,
              "finetune_epochs": tune, "ratio": RATIO}

    t0 = time.perf_counter()
    fit_epochs(dense, x, y, perms, range(epochs), BATCH)
    result["dense_train_s"] = time.perf_counter() - t0
    result["dense"] = dict(_cost(dense), accuracy=_accuracy(dense, x_test,
                                                            y_test))
    log(f"dense: {result['dense']['accuracy']:.4f} "
        f"({result['dense_train_s']:.0f}s)")

    t0 = time.perf_counter()
    plan = plan_pruning(dense, ratio=RATIO, criterion="l2")
    result["plan_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pruned = apply_plan(dense, plan)
    result["apply_s"] = time.perf_counter() - t0
    result["verify"] = verify(dense, plan, x_test[:16], pruned)
    result["groups"] = [
        {"name": g["name"], "size": g["size"], "kept": sum(g["keep"]),
         "blocked": g["blocked"]} for g in plan.groups
    ]
    result["pruned"] = dict(_cost(pruned), accuracy=_accuracy(
        pruned, x_test, y_test))
    log(f"pruned: {result['pruned']['accuracy']:.4f}")
    if spec["save"]:
        dense.save(os.path.join(spec["models"], "dense.keras"))

    result["finetune"] = {}
    for name in spec["finetunes"]:
        lr, cosine = FINETUNES[name]
        model = _compile(apply_plan(dense, plan), lr, tune * steps, cosine)
        t0 = time.perf_counter()
        fit_epochs(model, x, y, perms, range(epochs, epochs + tune), BATCH)
        seconds = time.perf_counter() - t0
        result["finetune"][name] = {
            "accuracy": _accuracy(model, x_test, y_test), "train_s": seconds}
        log(f"fine-tuned ({name}): "
            f"{result['finetune'][name]['accuracy']:.4f} ({seconds:.0f}s)")
        if name == HEADLINE and spec["save"]:
            model.save(os.path.join(spec["models"], "pruned.keras"))
    return result


def _forward(model):
    """The compiled forward pass of `model`, output fetched to the host,
    and how to turn a NumPy batch into its input (done once, untimed)."""
    import keras
    import numpy as np

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        fn = tf.function(lambda x: model(x, training=False))
        return (lambda x: fn(x).numpy()), tf.constant
    if backend == "jax":
        import jax

        trainable = [v.value for v in model.trainable_variables]
        frozen = [v.value for v in model.non_trainable_variables]
        fn = jax.jit(lambda t, f, x: model.stateless_call(
            t, f, x, training=False)[0])
        return (lambda x: np.asarray(fn(trainable, frozen, x))), jax.device_put
    import torch

    def call(x):
        with torch.inference_mode():
            return model(x, training=False).cpu().numpy()

    return call, torch.from_numpy


def interleaved(calls, inputs, repeats, warmup):
    """Median seconds of each call; calls take turns, the order rotates."""
    for call, x in zip(calls, inputs):
        for _ in range(warmup):
            call(x)
    times = [[] for _ in calls]
    n = len(calls)
    for r in range(repeats):
        for k in range(n):
            i = (k + r) % n
            start = time.perf_counter()
            calls[i](inputs[i])
            times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def _time_models(models, batches, repeats, images, log, predict=True,
                 warmup=5):
    """{batch: {"forward": [median s per model], "predict": [...]}}."""
    out = {}
    for batch in batches:
        x = images[:batch]
        forwards = [_forward(m) for m in models]
        calls = [f for f, _ in forwards]
        inputs = [convert(x) for _, convert in forwards]
        reps = repeats[batch]
        entry = {"repeats": reps,
                 "forward": interleaved(calls, inputs, reps, warmup)}
        if predict:
            calls = [m.predict_on_batch for m in models]
            entry["predict"] = interleaved(calls, [x] * len(models), reps,
                                           warmup)
        out[str(batch)] = entry
        log(f"batch {batch}: " + ", ".join(
            f"{1e3 * s:.2f} ms" for s in entry["forward"]))
    return out


def latency_worker(spec, log):
    import keras

    from keras_prune.datasets import load_fashion_mnist

    common.limit_threads()
    models = [keras.saving.load_model(os.path.join(spec["models"], f))
              for f in ("dense.keras", "pruned.keras")]
    _, (x_test, y_test) = load_fashion_mnist()
    x_test, y_test = x_test[:spec["n_test"]], y_test[:spec["n_test"]]
    result = {"backend": keras.backend.backend()}
    result["cost"] = [_cost(m) for m in models]
    result["accuracy"] = [_accuracy(m, x_test, y_test) for m in models]
    repeats = {1: spec["repeats_1"], 32: spec["repeats_32"]}
    result["latency"] = _time_models(models, LATENCY_BATCHES, repeats,
                                     x_test, log)
    # The same architecture twice as wide (random weights): how the ratio
    # moves when the convolutions, not the per-layer overheads, dominate.
    from keras_prune.structured import apply_plan, plan_pruning

    keras.utils.set_random_seed(0)
    wide = resnet_cnn(WIDE, name="resnet_fmnist_wide")
    models = [wide, apply_plan(wide, plan_pruning(wide, ratio=RATIO))]
    result["wide"] = {"cost": [_cost(m) for m in models]}
    result["wide"]["latency"] = _time_models(
        models, LATENCY_BATCHES, repeats, x_test, log, predict=False)
    return result


def mobilenet_worker(spec, log):
    import keras
    import numpy as np

    from keras_prune.structured import apply_plan, plan_pruning

    common.limit_threads()
    keras.utils.set_random_seed(0)
    t0 = time.perf_counter()
    dense = keras.applications.MobileNetV2(weights=None)
    result = {"backend": keras.backend.backend(),
              "build_s": time.perf_counter() - t0}
    models, labels = [dense], ["dense"]
    for ratio, round_to in MOBILENET_PLANS:
        plan = plan_pruning(dense, ratio=ratio, criterion="l2",
                            round_to=round_to)
        models.append(apply_plan(dense, plan))
        labels.append([ratio, round_to])
    result["labels"] = labels
    result["cost"] = [_cost(m) for m in models]
    log(f"built and pruned ({time.perf_counter() - t0:.0f}s)")
    images = np.random.default_rng(0).random(
        (max(LATENCY_BATCHES), 224, 224, 3)).astype("float32")
    repeats = {1: spec["mobilenet_repeats_1"],
               32: spec["mobilenet_repeats_32"]}
    result["latency"] = _time_models(models, LATENCY_BATCHES, repeats,
                                     images, log, predict=False, warmup=2)
    return result


def work(spec, log):
    """The measurement `spec["kind"]` names, in a worker (common.worker_main)."""
    return {"accuracy": accuracy_worker, "latency": latency_worker,
            "mobilenet": mobilenet_worker}[spec["kind"]](spec, log)


# ---------------------------------------------------------------------------
# Orchestrator
# ---------------------------------------------------------------------------


def _run_worker(backend, spec, tmp, threads):
    stem = os.path.join(
        tmp, f"{spec['kind']}_{backend}_{spec.get('seed', 0)}")
    return common.run_worker(__file__, backend, spec, stem, spec["kind"],
                             threads)


# ---- rendering -----------------------------------------------------------


def _pct(x):
    return f"{100 * x:.2f}"


def _ms(s):
    return f"{1e3 * s:.2f}" if s < 0.1 else f"{1e3 * s:.0f}"


def _m(n):
    return f"{n / 1e6:.2f} M"


def _verdict(ok):
    return "**PASS**" if ok else "**MISS**"


def render_accuracy(runs):
    lines, goals = [], {}
    add = lines.append
    r0 = runs[0]
    seeds = ", ".join(str(r["seed"]) for r in runs)
    train = ", ".join(f"{r['dense_train_s'] / 60:.1f}" for r in runs)
    add(
        f"Backend {r0['backend']} (training with its default threads), seeds "
        f"{seeds}; {r0['n_train']:,} training / {r0['n_test']:,} test images; "
        f"dense {r0['epochs']} epochs ({train} min), fine-tuning "
        f"{r0['finetune_epochs']} epochs. `plan_pruning` {r0['plan_s']:.2f} s, "
        f"`apply_plan` {r0['apply_s']:.2f} s, `verify` max |difference| "
        f"{max(r['verify'] for r in runs):.1e}. Accuracies in %, mean over "
        "seeds, then each seed; drop = dense − this, in points."
    )
    add("")
    add("| model | parameters | MACs (1 sample) | test accuracy | (each seed) "
        "| drop | (each seed) | goal | |")
    add("|---|---|---|---|---|---|---|---|---|")
    dense = [r["dense"]["accuracy"] for r in runs]

    def row(label, accs, params="", macs="", goal=None):
        drops = [a - b for a, b in zip(dense, accs)]
        mean = sum(drops) / len(drops)
        cells = f"| {label} | {params} | {macs} | **{_pct(sum(accs) / len(accs))}** | "
        cells += " / ".join(_pct(a) for a in accs) + " | "
        if goal is None:
            return cells + f"{100 * mean:.2f} | " + " / ".join(
                f"{100 * d:.2f}" for d in drops) + " | | |"
        ok = mean <= GOAL_DROP
        goals[f"accuracy drop ≤ 1 pt ({goal})"] = ok
        return cells + f"{100 * mean:.2f} | " + " / ".join(
            f"{100 * d:.2f}" for d in drops) + (
            f" | ≤ {100 * GOAL_DROP:.0f} | {_verdict(ok)} |")

    d, p = r0["dense"], r0["pruned"]
    add(f"| dense | {d['params']:,} | {_m(d['macs'])} | "
        f"**{_pct(sum(dense) / len(dense))}** | "
        + " / ".join(_pct(a) for a in dense) + " | | | | |")
    add(row("pruned 50 % L2, before fine-tuning", [
        r["pruned"]["accuracy"] for r in runs],
        f"{p['params']:,} ({d['params'] / p['params']:.2f}× fewer)",
        f"{_m(p['macs'])} ({d['macs'] / p['macs']:.2f}× fewer)"))
    for name in r0["finetune"]:
        lr, cosine = FINETUNES[name]
        how = f"Adam {lr:g} {'cosine-decayed' if cosine else 'constant'}"
        label = f"+ fine-tuned, {how}"
        if name == HEADLINE:
            label += " (headline: the dense recipe)"
        accs = [r["finetune"][name]["accuracy"] for r in runs]
        add(row(label, accs, goal=f"fine-tuned with {how}"))
    add("")
    kept = ", ".join(
        f"{g['name']} {g['size']}→{g['kept']}" for g in r0["groups"])
    add(f"Channel groups (size→kept, every seed): {kept}.")
    return lines, goals


def render_latency(runs, acc):
    lines, goals = [], {}
    add = lines.append
    add("| backend | batch | dense ms | pruned ms | speed-up | MAC reduction "
        "| speed-up ÷ MAC reduction | goal | | `predict_on_batch` dense / "
        "pruned ms (speed-up) |")
    add("|---|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        dense, pruned = run["cost"]
        reduction = dense["macs"] / pruned["macs"]
        for batch, entry in run["latency"].items():
            d, p = entry["forward"]
            pd, pp = entry["predict"]
            ratio = d / p / reduction
            ok = ratio >= GOAL_SPEEDUP_OF_MACS
            goals[f"{run['backend']} batch {batch}"] = ok
            add(f"| {run['backend']} | {batch} | {_ms(d)} | {_ms(p)} | "
                f"**{d / p:.2f}×** | {reduction:.2f}× | {ratio:.2f} | "
                f"≥ {GOAL_SPEEDUP_OF_MACS} | {_verdict(ok)} | "
                f"{_ms(pd)} / {_ms(pp)} ({pd / pp:.2f}×) |")
    add("")
    accs = "; ".join(
        f"{r['backend']} {_pct(r['accuracy'][0])} / {_pct(r['accuracy'][1])}"
        for r in runs)
    add(f"Compiled forward pass; medians of "
        f"{runs[0]['latency']['1']['repeats']} (batch 1) and "
        f"{runs[0]['latency']['32']['repeats']} (batch 32) interleaved calls "
        "per model, 1 thread. Test accuracy of the saved dense / pruned "
        f"models loaded on each backend: {accs}.")
    add("")
    wide = runs[0]["wide"]["cost"]
    add(f"The same architecture with {'/'.join(map(str, WIDE))} filters "
        f"(random weights, {_m(wide[0]['macs'])} → {_m(wide[1]['macs'])} "
        "MACs), pruned and timed the same way (not a goal; it shows how the "
        "ratio moves when the convolutions dominate):")
    add("")
    add("| backend | batch | dense ms | pruned ms | speed-up | MAC reduction "
        "| speed-up ÷ MAC reduction |")
    add("|---|---|---|---|---|---|---|")
    for run in runs:
        dense, pruned = run["wide"]["cost"]
        reduction = dense["macs"] / pruned["macs"]
        for batch, entry in run["wide"]["latency"].items():
            d, p = entry["forward"]
            add(f"| {run['backend']} | {batch} | {_ms(d)} | {_ms(p)} | "
                f"{d / p:.2f}× | {reduction:.2f}× | {d / p / reduction:.2f} |")
    return lines, {"latency " + k: v for k, v in goals.items()}


def render_mobilenet(runs):
    lines = []
    add = lines.append
    dense = runs[0]["cost"][0]
    add(f"Dense: {dense['params']:,} parameters, {_m(dense['macs'])} MACs. "
        "Compiled forward pass, 1 thread, medians of "
        f"{runs[0]['latency']['1']['repeats']} (batch 1) / "
        f"{runs[0]['latency']['32']['repeats']} (batch 32) interleaved calls.")
    add("")
    add("| ratio | round_to | parameters | MACs | MAC reduction | "
        + " | ".join(f"{r['backend']} b{b} ms (speed-up, ÷ MACs)"
                     for r in runs for b in LATENCY_BATCHES) + " |")
    add("|---|---|---|---|---|" + "---|" * (len(runs) * len(LATENCY_BATCHES)))
    for i, label in enumerate(runs[0]["labels"]):
        cost = runs[0]["cost"][i]
        reduction = dense["macs"] / cost["macs"]
        if label == "dense":
            head = "dense | | "
        else:
            head = f"{label[0]} | {label[1] or '—'} | "
        cells = []
        for r in runs:
            for b in LATENCY_BATCHES:
                times = r["latency"][str(b)]["forward"]
                speedup = times[0] / times[i]
                cells.append(f"{_ms(times[i])}" if i == 0 else
                             f"{_ms(times[i])} ({speedup:.2f}×, "
                             f"{speedup / reduction:.2f})")
        add(f"| {head}{cost['params']:,} | {_m(cost['macs'])} | "
            f"{reduction:.2f}× | " + " | ".join(cells) + " |")
    return lines


def render(data):
    lines = []
    add = lines.append
    loads = ", ".join(f"{k} {val:.1f}" for k, val in data["load"].items())
    add(f"1-minute load average at the start of each part: {loads}; absolute "
        "times are noisy where other jobs ran: read the ratios, measured "
        "interleaved. Latency workers used 1 intra-op / 1 inter-op thread.")
    add("")
    goals = {}
    if data.get("accuracy"):
        add("### ResNet-style CNN on Fashion-MNIST: channels −50 % by L2, "
            "then 2 epochs of fine-tuning")
        add("")
        part, g = render_accuracy(data["accuracy"])
        lines += part
        goals.update(g)
        add("")
    if data.get("latency"):
        add("### Its CPU latency (dense vs the fine-tuned pruned model)")
        add("")
        part, g = render_latency(data["latency"], data.get("accuracy"))
        lines += part
        goals.update(g)
        add("")
    if data.get("mobilenet"):
        add("### MobileNetV2 (weights=None, 224×224) at 30 / 50 % of the "
            "channels")
        add("")
        lines += render_mobilenet(data["mobilenet"])
        add("")
    add("**Goals**: " + "; ".join(
        f"{k}: {'PASS' if ok else 'MISS'}" for k, ok in goals.items()) + ".")
    return "\n".join(lines)


def measure(args, data):
    benches = args.bench.split(",")
    if not set(benches) <= {"accuracy", "latency", "mobilenet"}:
        raise SystemExit("--bench: a subset of accuracy,latency,mobilenet")
    finetunes = args.finetune.split(",")
    if HEADLINE not in finetunes or not set(finetunes) <= set(FINETUNES):
        raise SystemExit(f"--finetune: variants of {list(FINETUNES)}, with "
                         f"{HEADLINE!r}")
    if "latency" in benches and "accuracy" not in benches and (
            not args.models_from):
        raise SystemExit("--bench latency without accuracy needs "
                         "--models-from")
    repeats = args.repeats or (20 if args.quick else 200)
    data["quick"] = args.quick
    data["load"] = {}

    def save():
        if args.json:  # keep partial results of a long run
            common.save_json(args.json, data)

    with tempfile.TemporaryDirectory(prefix="structured_") as tmp:
        models = args.models_from or os.path.join(tmp, "models")
        os.makedirs(models, exist_ok=True)
        spec = {
            "models": models,
            "n_train": 4096 if args.quick else 60000,
            "n_test": 2000 if args.quick else 10000,
            "epochs": args.epochs or (1 if args.quick else EPOCHS),
            "finetune_epochs": 1 if args.quick else FINETUNE_EPOCHS,
            "finetunes": finetunes,
            "repeats_1": repeats, "repeats_32": max(5, repeats // 4),
            "mobilenet_repeats_1": 5 if args.quick else 40,
            "mobilenet_repeats_32": 3 if args.quick else 6,
        }
        if "accuracy" in benches:
            data["accuracy"] = []
            for i, seed in enumerate(args.seeds.split(",")):
                data["load"][f"accuracy seed {seed}"] = (
                    common.load_averages()[0])
                data["accuracy"].append(_run_worker(
                    args.train_backend,
                    dict(spec, kind="accuracy", seed=int(seed),
                         save=i == 0), tmp, threads=0))
                save()
            if args.keep_models:
                os.makedirs(args.keep_models, exist_ok=True)
                for f in ("dense.keras", "pruned.keras"):
                    shutil.copy(os.path.join(models, f), args.keep_models)
        for kind in ("latency", "mobilenet"):
            if kind not in benches:
                continue
            data[kind] = []
            for backend in args.backends:
                data["load"][f"{kind} {backend}"] = (
                    common.load_averages()[0])
                data[kind].append(_run_worker(
                    backend, dict(spec, kind=kind), tmp, threads=1))
                save()


def main(argv=None):
    parser = common.parser(
        "structured.py", __doc__, write_by_default=True,
        backends=common.BACKENDS,
        quick="smoke run: 4,096 images, 1 epoch, few repeats")
    parser.add_argument("--bench", default="accuracy,latency,mobilenet",
                        help="comma-separated subset of "
                             "accuracy,latency,mobilenet")
    parser.add_argument("--train-backend", default="tensorflow",
                        choices=common.BACKENDS,
                        help="backend of the accuracy run (default tensorflow)")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"dense training epochs (default {EPOCHS})")
    parser.add_argument("--finetune", default=",".join(FINETUNES),
                        help="comma-separated fine-tuning variants, of: "
                             + ", ".join(FINETUNES) + " (Adam learning "
                             "rate, cosine-decayed to 0 or constant)")
    parser.add_argument("--seeds", default="0,1",
                        help="seeds of the accuracy runs (default 0,1; the "
                             "first one's models are timed)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="latency rounds at batch 1 (default 200; batch 32: "
                             "a quarter)")
    parser.add_argument("--models-from",
                        help="a directory with dense.keras and pruned.keras "
                             "(from an earlier run: kept with --keep-models)")
    parser.add_argument("--keep-models",
                        help="copy the trained models to this directory")
    return common.main(parser, measure, render, argv, work=work,
                       label="kind")


if __name__ == "__main__":
    main()
