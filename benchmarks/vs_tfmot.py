"""keras_prune (TensorFlow, JAX, torch) side by side with tfmot 0.8.1.

Run from the repository root with the project's venv:

    .venv/bin/python benchmarks/vs_tfmot.py                   # B1 + B2, ~1 h
    .venv/bin/python benchmarks/vs_tfmot.py --bench b1 --seeds 3
    .venv/bin/python benchmarks/vs_tfmot.py --quick           # B1, ~3 min
    .venv/bin/python benchmarks/vs_tfmot.py --from-json a.json b.json  # re-render

It prints Markdown tables and, in a full run (unless --no-write; a --quick
run only with --write), writes them to benchmarks/results/vs_tfmot.md.

Processes. Every measurement runs in a worker process
(benchmarks/vs_tfmot_worker.py): ours with `.venv/bin/python` and
KERAS_BACKEND=tensorflow|jax|torch, tfmot with `.venv-tfmot/bin/python`
(tensorflow-cpu 2.21, tf-keras 2.21, tensorflow-model-optimization 0.8.1,
TF_USE_LEGACY_KERAS=1 set before TensorFlow is imported). tfmot is never
imported in a Keras 3 process. Every worker uses 1 intra-op and 1 inter-op
thread (common.py's `thread_env`, plus the TF / torch thread setters).
Up to `--jobs` accuracy workers run at once (2 cores); timing workers run
alone, after all accuracy workers.

Fairness protocol (accuracy runs):
- same initial weights: the model is built once per seed, in keras 3
  (`keras.utils.set_random_seed(seed)`), and its weights saved to .npz; every
  framework loads them with `set_weights`;
- same data order: per-epoch permutations of the training set drawn with
  `np.random.default_rng(seed)`, fed epoch by epoch as pre-permuted arrays
  (`fit(..., initial_epoch=e, epochs=e + 1, shuffle=False)`);
- Adam(1e-3), batch 128, sparse categorical cross-entropy, the same number of
  steps; the same schedule parameters for both libraries:
  PolynomialDecay(0 -> s, begin_step 0, end_step E, power 3, frequency 100),
  E = the multiple of 100 closest below 60 % of all steps (so the last mask
  update applies s exactly); the remaining steps are the recovery phase.
  tfmot counts its step from 1 (its first mask update comes at batch 100,
  ANCHORS.md), ours from 0 (an update at step 0 to sparsity 0, a no-op):
  tfmot's updates therefore land one batch before ours, same targets.
- what is measured: test accuracy (argmax of `predict` of the exported model
  on the 10,000 test images); exact zeros of every kernel of the exported
  model vs round(n * s); bytes of the exported model saved to a file, and of
  that file zipped with zipfile.ZIP_DEFLATED. Exported = `strip_pruning(model)`
  for pruned runs, an uncompiled copy of the trained model for dense runs
  (no optimizer state in any file). Ours is saved as `.keras` (and legacy
  `.h5`), tfmot's as `.h5` with `include_optimizer=False` (its tutorial) and
  as tf_keras `.keras`. Whole-run wall time = the time of all `fit` calls.
  B1: LeNet-300-100 on flattened images, 10 epochs, s in {0.5, 0.8, 0.9,
  0.95} and dense. B2: Conv2D(16,3)-MaxPool-Conv2D(32,3)-MaxPool-Flatten-
  Dense(10), s in {0.8, 0.9} and dense, `B2_EPOCHS` epochs (see there).

Timing runs (separate processes, run alone): one process per framework and
bench holds a dense and a pruned model (seed 0 weights, the bench's schedule
at s = 0.9, frequency 100) and fits them, 200 steps per fit, in the order
warm-up dense, warm-up pruned (both excluded), then dense, pruned, dense, ...,
dense (`--rounds` pruned fits). Models keep training from fit to fit, so every
200-step pruned fit holds two mask updates (the amortized frequency-100 rate).
Step k is timed from `on_train_batch_begin(k)` to `on_train_batch_begin(k+1)`
(overhead.py's timer; no `on_train_batch_end` hook, which would change Keras
3's dispatch). Ratio of a round = mean step of the pruned fit / average mean
step of the two dense fits around it; reported: the median over rounds.
"""

import concurrent.futures
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import common
from common import HERE, ROOT

WORKER = os.path.join(HERE, "vs_tfmot_worker.py")
PYTHON = {"ours": os.path.join(ROOT, ".venv", "bin", "python"),
          "tfmot": os.path.join(ROOT, ".venv-tfmot", "bin", "python")}
OURS = ("tensorflow", "jax", "torch")
FRAMEWORKS = OURS + ("tfmot",)
NAMES = {"tensorflow": "TF", "jax": "JAX", "torch": "torch", "tfmot": "tfmot"}
BATCH = 128
N_TRAIN, N_TEST = 60000, 10000
FREQUENCY = 100
PRUNE_FRACTION = 0.6  # of all steps; then recovery
TIMING_SPARSITY = 0.9
# B2: 3 configurations x 3 seeds x 4 frameworks. Measured 1-thread dense step
# times of this CNN on the shared machine (quick run, load ~2.8): TF 13.6,
# JAX 49.7, torch 43.5, tfmot 12.7 ms, i.e. ~120 ms for one step of all four
# frameworks, 56 s per epoch, 506 core-seconds per epoch of all 9 runs. 3
# epochs = ~1,520 core-s (~25 core-min; ~15 min wall with 2 workers), within
# the ~30 min allowed with margin for the other jobs on the machine.
B2_EPOCHS = 3
BENCHES = {
    "b1": {"title": "B1: LeNet-300-100", "sparsities": [0.5, 0.8, 0.9, 0.95],
           "epochs": 10},
    "b2": {"title": "B2: small CNN", "sparsities": [0.8, 0.9],
           "epochs": B2_EPOCHS},
}
GOAL_ACC_PT = 0.3
GOAL_SIZE = 1.05
GOAL_STEP = 1.03


# ---------------------------------------------------------------------------
# Running workers
# ---------------------------------------------------------------------------


def plan(args, bench):
    """Parameters shared by every worker of a bench."""
    epochs = args.epochs or BENCHES[bench]["epochs"]
    n_train = 3200 if args.quick else N_TRAIN
    frequency = 5 if args.quick else FREQUENCY
    steps = -(-n_train // BATCH) * epochs
    end_step = int(steps * PRUNE_FRACTION) // frequency * frequency
    return {
        "bench": bench,
        "epochs": epochs,
        "n_train": n_train,
        "n_test": 2000 if args.quick else N_TEST,
        "frequency": frequency,
        "total_steps": steps,
        "end_step": end_step,
        "sparsities": [None] + BENCHES[bench]["sparsities"],
        "seeds": list(range(args.seeds)),
        "timing_steps": 20 if args.quick else 200,
        "rounds": args.rounds,
        "timing_sparsity": TIMING_SPARSITY,
    }


def worker_env(framework):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    env.update(common.thread_env(1))
    if framework == "tfmot":
        env.pop("KERAS_BACKEND", None)
        env["TF_USE_LEGACY_KERAS"] = "1"
    else:
        env["KERAS_BACKEND"] = framework
    return env


def run_worker(workdir, name, framework, spec, resume=False):
    """Runs one worker to completion; returns its JSON result."""
    out = os.path.join(workdir, f"{name}.json")
    if resume and os.path.exists(out):
        with open(out) as f:
            return json.load(f)
    spec_path = os.path.join(workdir, f"{name}.spec.json")
    with open(spec_path, "w") as f:
        json.dump(dict(spec, workdir=workdir,
                       framework="tfmot" if framework == "tfmot" else "ours"),
                  f)
    venv = "tfmot" if framework == "tfmot" else "ours"
    log_path = os.path.join(workdir, f"{name}.log")
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.run(
            [PYTHON[venv], WORKER, spec_path, out],
            env=worker_env(framework), cwd=ROOT, stdout=log, stderr=log,
        )
    if proc.returncode != 0:
        with open(log_path) as f:
            tail = f.read()[-3000:]
        raise RuntimeError(f"worker {name} failed ({proc.returncode}):\n{tail}")
    say(f"done {name} ({time.perf_counter() - t0:.0f}s)")
    with open(out) as f:
        return json.load(f)


def say(message):
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


def prepare(workdir, plans, resume):
    spec = {
        "mode": "prepare",
        "epochs": {b: p["epochs"] for b, p in plans.items()},
        "seeds": sorted({s for p in plans.values() for s in p["seeds"]}),
        "n_train": next(iter(plans.values()))["n_train"],
    }
    run_worker(workdir, "prepare", "tensorflow", spec, resume)


def accuracy_tasks(plans):
    """One task per (bench, framework, seed); slowest (torch) first."""
    order = {"torch": 0, "tensorflow": 1, "tfmot": 2, "jax": 3}
    tasks = [
        (bench, fw, seed)
        for bench, p in plans.items()
        for seed in p["seeds"]
        for fw in FRAMEWORKS
    ]
    return sorted(tasks, key=lambda t: (t[0], t[2], order[t[1]]))


def run_or_skip(workdir, name, framework, spec, resume, run=True):
    """`run_worker`, or None (logged) if the worker failed or `run` is false
    and there is no earlier result: the report then says which results are
    missing instead of losing all of them."""
    if not run and not os.path.exists(os.path.join(workdir, f"{name}.json")):
        return None
    try:
        return run_worker(workdir, name, framework, spec, resume or not run)
    except RuntimeError as e:
        say(str(e))
        return None


def run_accuracy(workdir, plans, jobs, resume, run=True):
    def one(task):
        bench, fw, seed = task
        spec = dict(plans[bench], mode="accuracy", seeds=[seed])
        return run_or_skip(workdir, f"acc_{bench}_{fw}_{seed}", fw, spec,
                           resume, run)

    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        return [r for r in pool.map(one, accuracy_tasks(plans)) if r]


def run_timing(workdir, plans, resume, run=True):
    """Timing workers, one at a time (nothing else of ours runs)."""
    results = [
        run_or_skip(workdir, f"time_{bench}_{fw}", fw, dict(p, mode="timing"),
                    resume, run)
        for bench, p in plans.items()
        for fw in FRAMEWORKS
    ]
    return [r for r in results if r]


def missing(data):
    """What the plans asked for and the results lack (a partial run)."""
    have = {(w["bench"], w["framework"], r["seed"])
            for w in data["accuracy"] for r in w["result"]}
    timed = {(t["bench"], t["framework"]) for t in data["timing"]}
    lost = [f"accuracy {b.upper()} {NAMES[fw]} seed {s}"
            for b, p in data["plans"].items() for s in p["seeds"]
            for fw in FRAMEWORKS if (b, fw, s) not in have]
    lost += [f"timing {b.upper()} {NAMES[fw]}" for b in data["plans"]
             for fw in FRAMEWORKS if (b, fw) not in timed]
    return lost


# ---------------------------------------------------------------------------
# Aggregation
# ---------------------------------------------------------------------------


def mean_sd(xs):
    m = statistics.fmean(xs)
    return m, (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def expected_zeros(n, s):
    return round(n * s) if s else 0


def runs_by_config(acc_results):
    """{(bench, framework, sparsity): [run, ...]} over seeds."""
    out = {}
    for worker in acc_results:
        for run in worker["result"]:
            key = (worker["bench"], worker["framework"], run["sparsity"] or 0.0)
            out.setdefault(key, []).append(run)
    return out


def zipped(runs, fmt):
    values = [r["sizes"].get(fmt, {}).get("zipped") for r in runs]
    values = [v for v in values if v]
    return statistics.fmean(values) if values else None


def summarize(data):
    """Per (bench, sparsity): accuracy, zeros, sizes, walls per framework."""
    runs = runs_by_config(data["accuracy"])
    rows = []
    for bench, p in data["plans"].items():
        for s in [0.0] + BENCHES[bench]["sparsities"]:
            row = {"bench": bench, "sparsity": s, "fw": {}}
            for fw in FRAMEWORKS:
                mine = runs.get((bench, fw, s))
                if not mine:
                    continue
                acc = mean_sd([100 * r["accuracy"] for r in mine])
                row["fw"][fw] = {
                    "acc": acc,
                    "n_seeds": len(mine),
                    "wall": statistics.fmean(r["train_wall_s"] for r in mine),
                    "steps": sorted({r["steps"] for r in mine}),
                    "layers": layer_zeros(mine, s),
                    "zip": {f: zipped(mine, f) for f in ("keras", "h5")},
                    "negative_zeros": statistics.fmean(
                        sum(k.get("negative_zeros", 0) for k in r["layers"])
                        for r in mine),
                }
            rows.append(row)
    return rows


def layer_zeros(runs, s):
    """Per kernel: n, expected zeros, set of observed zero counts."""
    out = []
    for i, layer in enumerate(runs[0]["layers"]):
        n = layer["n"]
        seen = sorted({r["layers"][i]["zeros"] for r in runs})
        shape = "×".join(map(str, layer["shape"]))
        out.append({"layer": shape, "n": n,
                    "expected": expected_zeros(n, s), "seen": seen})
    return out


def timing_by_bench(timing_results):
    out = {}
    for t in timing_results:
        out.setdefault(t["bench"], {})[t["framework"]] = t["result"]
    return out


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def pct(s):
    return "dense" if not s else f"{s:.0%}"


def fmt_acc(cell):
    if not cell:
        return "–"
    m, sd = cell["acc"]
    return f"{m:.2f} ± {sd:.2f}"


def delta(row, fw):
    ours, ref = row["fw"].get(fw), row["fw"].get("tfmot")
    if not ours or not ref:
        return None
    return ours["acc"][0] - ref["acc"][0]


def table_accuracy(rows):
    lines = [
        "| bench | sparsity | TF | JAX | torch | tfmot | Δ TF | Δ JAX | Δ torch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [fmt_acc(row["fw"].get(fw)) for fw in FRAMEWORKS]
        deltas = [delta(row, fw) for fw in OURS]
        cells += ["–" if d is None else f"{d:+.2f}" for d in deltas]
        lines.append(f"| {row['bench'].upper()} | {pct(row['sparsity'])} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def table_sparsity(rows):
    lines = [
        "| bench | sparsity | kernel | n | expected round(n·s) | TF | JAX | torch | tfmot |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if not row["sparsity"] or not row["fw"]:
            continue
        first = next(iter(row["fw"].values()))
        for i, layer in enumerate(first["layers"]):
            cells = []
            for fw in FRAMEWORKS:
                cell = row["fw"].get(fw)
                if not cell:
                    cells.append("–")
                    continue
                seen = cell["layers"][i]["seen"]
                text = "/".join(f"{z:,}" for z in seen)
                ok = seen == [layer["expected"]]
                cells.append(text if ok else f"**{text}**")
            lines.append(
                f"| {row['bench'].upper()} | {pct(row['sparsity'])} | "
                f"{layer['layer']} | {layer['n']:,} | {layer['expected']:,} | "
                + " | ".join(cells) + " |")
    return "\n".join(lines)


def ours_zip(row, fmt):
    values = [row["fw"][fw]["zip"][fmt] for fw in OURS
              if fw in row["fw"] and row["fw"][fw]["zip"][fmt]]
    return statistics.fmean(values) if values else None


def ratio_text(a, b, digits=2):
    return "–" if not a or not b else f"{a / b:.{digits}f}×"


def sizes(rows):
    """Per row: ours .keras/.h5 and tfmot .h5/.keras zipped bytes."""
    out = {}
    for row in rows:
        tf = row["fw"].get("tfmot", {}).get("zip", {})
        out[(row["bench"], row["sparsity"])] = {
            "ours_keras": ours_zip(row, "keras"),
            "ours_h5": ours_zip(row, "h5"),
            "tfmot_h5": tf.get("h5"),
            "tfmot_keras": tf.get("keras"),
        }
    return out


def table_size(rows):
    size = sizes(rows)
    lines = [
        "| bench | sparsity | ours .keras | ours .h5 | tfmot .h5 | tfmot .keras "
        "| ours .keras / tfmot .h5 | ours .h5 / tfmot .h5 | ours .keras / tfmot .keras "
        "| dense/pruned ours .keras | dense/pruned tfmot .h5 "
        "| zeros stored as −0.0 (ours / tfmot) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def kb(v):
        return "–" if not v else f"{v / 1000:,.1f} kB"

    for row in rows:
        z = size[(row["bench"], row["sparsity"])]
        dense = size[(row["bench"], 0.0)]
        lines.append(
            f"| {row['bench'].upper()} | {pct(row['sparsity'])} | "
            f"{kb(z['ours_keras'])} | {kb(z['ours_h5'])} | {kb(z['tfmot_h5'])} | "
            f"{kb(z['tfmot_keras'])} | "
            f"{ratio_text(z['ours_keras'], z['tfmot_h5'], 3)} | "
            f"{ratio_text(z['ours_h5'], z['tfmot_h5'], 3)} | "
            f"{ratio_text(z['ours_keras'], z['tfmot_keras'], 3)} | "
            f"{ratio_text(dense['ours_keras'], z['ours_keras'])} | "
            f"{ratio_text(dense['tfmot_h5'], z['tfmot_h5'])} | "
            f"{negative_zeros(row)} |")
    return "\n".join(lines)


def negative_zeros(row):
    ours = [row["fw"][fw]["negative_zeros"] for fw in OURS if fw in row["fw"]]
    ref = row["fw"].get("tfmot", {}).get("negative_zeros")
    mine = f"{statistics.fmean(ours):,.0f}" if ours else "–"
    return f"{mine} / " + ("–" if ref is None else f"{ref:,.0f}")


def table_timing(timing):
    lines = [
        "| bench | | TF | JAX | torch | tfmot |",
        "|---|---|---|---|---|---|",
    ]
    for bench, by_fw in timing.items():
        def cells(fn):
            return " | ".join(
                fn(by_fw[fw]) if fw in by_fw else "–" for fw in FRAMEWORKS)

        name = bench.upper()
        lines.append(f"| {name} | dense step (ms) | "
                     + cells(lambda t: f"{t['dense_ms']:.2f}") + " |")
        lines.append(f"| {name} | pruned step (ms) | "
                     + cells(lambda t: f"{t['pruned_ms']:.2f}") + " |")
        lines.append(
            f"| {name} | **pruned / dense** (range) | "
            + cells(lambda t: f"**{t['ratio']:.3f}×** ({min(t['ratios']):.2f}–"
                    f"{max(t['ratios']):.2f})") + " |")
        ref = by_fw.get("tfmot")
        lines.append(
            f"| {name} | ratio ours / ratio tfmot | "
            + cells(lambda t: "" if t is ref or not ref
                    else f"{t['ratio'] / ref['ratio']:.3f}") + " |")
    return "\n".join(lines)


def table_wall(rows):
    lines = [
        "| bench | sparsity | steps | TF | JAX | torch | tfmot |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        steps = sorted({s for c in row["fw"].values() for s in c["steps"]})
        cells = [f"{row['fw'][fw]['wall']:.0f} s" if fw in row["fw"] else "–"
                 for fw in FRAMEWORKS]
        lines.append(f"| {row['bench'].upper()} | {pct(row['sparsity'])} | "
                     f"{'/'.join(map(str, steps))} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---- goals -------------------------------------------------------------------


def verdict(ok):
    return "**PASS**" if ok else "**MISS**"


def goal_accuracy(rows):
    worst = []
    for row in rows:
        if not row["sparsity"]:
            continue
        for fw in OURS:
            d = delta(row, fw)
            if d is not None:
                worst.append((d, row["bench"], row["sparsity"], fw))
    if not worst:
        return None
    d, bench, s, fw = min(worst)
    misses = [w for w in worst if w[0] < -GOAL_ACC_PT]
    text = (f"accuracy ours ≥ tfmot − {GOAL_ACC_PT} pt at every sparsity and "
            f"backend: {verdict(not misses)} — worst Δ {d:+.2f} pt "
            f"({bench.upper()} {pct(s)}, {NAMES[fw]})")
    if misses:
        text += "; misses: " + ", ".join(
            f"{b.upper()} {pct(s)} {NAMES[f]} {x:+.2f}" for x, b, s, f in misses)
    return text


def goal_sparsity(rows):
    bad, checked = [], 0
    tfmot_bad = []
    for row in rows:
        if not row["sparsity"]:
            continue
        for fw, cell in row["fw"].items():
            for layer in cell["layers"]:
                exact = layer["seen"] == [layer["expected"]]
                if fw == "tfmot":
                    if not exact:
                        tfmot_bad.append((row, layer))
                    continue
                checked += 1
                if not exact:
                    bad.append((row, fw, layer))
    text = (f"sparsity exact to the weight (zeros == round(n·s) in every "
            f"kernel, seed and backend, {checked} kernel×backend cells): "
            f"{verdict(not bad)}")
    if bad:
        text += "; off: " + ", ".join(
            f"{r['bench'].upper()} {pct(r['sparsity'])} {NAMES[fw]} "
            f"{l['layer']} {l['seen']} vs {l['expected']}" for r, fw, l in bad)
    text += (". tfmot: " + ("exact too" if not tfmot_bad else
             f"{len(tfmot_bad)} kernel cells off (bold in the table)"))
    return text


def goal_size(rows):
    size = sizes(rows)
    ratios = [(z["ours_keras"] / z["tfmot_h5"], b, s)
              for (b, s), z in size.items()
              if s and z["ours_keras"] and z["tfmot_h5"]]
    if not ratios:
        return None
    worst = max(ratios)
    text = (f"zipped size ≤ {GOAL_SIZE:.2f}× tfmot's at equal sparsity (ours "
            f".keras vs tfmot's tutorial .h5): {verdict(worst[0] <= GOAL_SIZE)}"
            f" — worst {worst[0]:.3f}× ({worst[1].upper()} {pct(worst[2])}), "
            f"best {min(ratios)[0]:.3f}×")
    same = [z["ours_h5"] / z["tfmot_h5"] for (b, s), z in size.items()
            if s and z["ours_h5"] and z["tfmot_h5"]]
    if same:
        text += (f"; same format (.h5 vs .h5): {min(same):.3f}–"
                 f"{max(same):.3f}×")
    return text


def goal_step(timing):
    lines = []
    for bench, by_fw in timing.items():
        ref = by_fw.get("tfmot")
        for fw in OURS:
            t = by_fw.get(fw)
            if not t:
                continue
            vs_dense = t["ratio"] <= GOAL_STEP
            vs_tfmot = ref is None or t["ratio"] <= ref["ratio"]
            tf_text = "" if ref is None else (
                f", tfmot {ref['ratio']:.3f}×")
            lines.append(
                f"{bench.upper()} {NAMES[fw]}: {t['ratio']:.3f}×{tf_text} → "
                f"≤ {GOAL_STEP}× {verdict(vs_dense)}"
                + ("" if ref is None else f", ≤ tfmot {verdict(vs_tfmot)}"))
    if not lines:
        return None
    return ("train-step ratio pruned/dense at frequency 100 ≤ tfmot's and ≤ "
            f"{GOAL_STEP}×: " + "; ".join(lines))


def goals(rows, timing):
    items = [goal_accuracy(rows), goal_sparsity(rows), goal_size(rows),
             goal_step(timing)]
    return "\n".join(f"- {g}" for g in items if g)


def versions_text(data):
    ours, tfmot = {}, {}
    for w in data["accuracy"] + data["timing"]:
        (tfmot if w["framework"] == "tfmot" else ours).update(w["versions"])
    fmt = ", ".join
    return (f"ours (.venv): {fmt(f'{k} {v}' for k, v in sorted(ours.items()))}; "
            f"tfmot (.venv-tfmot): "
            f"{fmt(f'{k} {v}' for k, v in sorted(tfmot.items()))}")


def plans_text(plans):
    out = []
    for bench, p in plans.items():
        out.append(
            f"{BENCHES[bench]['title']}: {p['epochs']} epochs × "
            f"{p['total_steps'] // p['epochs']} steps = {p['total_steps']} "
            f"steps, PolynomialDecay(0 → s, begin 0, end_step {p['end_step']}, "
            f"power 3, frequency {p['frequency']}), recovery "
            f"{p['total_steps'] - p['end_step']} steps, seeds "
            f"{p['seeds']}, train {p['n_train']:,} / test {p['n_test']:,} "
            "images")
    return "\n".join(f"- {o}" for o in out)


def render(data):
    rows = summarize(data)
    timing = timing_by_bench(data["timing"])
    m = data["machine"]
    lost = missing(data)
    parts = []
    if lost:
        parts += [f"**PARTIAL RESULTS: missing {', '.join(lost)}**", ""]
    parts += [
        f"Load average {m['load_start']} at the start, {m['load_end']} at "
        "the end; 1 intra-op + 1 inter-op thread per process, 2 accuracy "
        "workers at once (so wall times are only indicative), timing workers "
        "alone. Versions: " + versions_text(data) + ".",
        "",
        "Protocol (details in the module docstring of benchmarks/vs_tfmot.py): "
        "same initial weights (.npz, `set_weights`), same per-epoch "
        "permutations (numpy, from the seed; `shuffle=False`), Adam(1e-3), "
        "batch 128, same steps and schedule parameters for both libraries. "
        "tfmot counts its step from 1, so its mask updates come one batch "
        "before ours (its first at batch 99 of 0..N, ours at 100; ours also "
        "runs a no-op update to sparsity 0 at step 0).",
        "",
        plans_text(data["plans"]),
        "",
        "**Test accuracy (%)**, mean ± sd over seeds; Δ = ours − tfmot "
        "(points):",
        "",
        table_accuracy(rows),
        "",
        "**Zeros per kernel of the exported (stripped) model**, all seeds "
        "(one value = the same in every seed; bold = differs from "
        "round(n·s)):",
        "",
        table_sparsity(rows),
        "",
        "**Zipped size** (zipfile ZIP_DEFLATED of the saved file; mean over "
        "seeds, and over backends for ours; no optimizer state):",
        "",
        table_size(rows),
        "",
        f"**Train step at frequency 100** (s = {TIMING_SPARSITY:.0%} "
        "schedule, 200-step fits, median of the per-round ratios):",
        "",
        table_timing(timing),
        "",
        "**Whole-run wall time** (all `fit` calls of one accuracy run, mean "
        "over seeds; two workers shared the 2 cores):",
        "",
        table_wall(rows),
        "",
        "**Goals**",
        "",
        goals(rows, timing),
    ]
    return "\n".join(parts)


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def measure(args, data):
    if args.quick:
        args.seeds, args.epochs = 1, 1
        if "--bench" not in data["argv"]:
            args.bench = ["b1"]
        args.rounds = min(args.rounds, 2)
    plans = {b: plan(args, b) for b in args.bench}
    workdir = args.workdir or tempfile.mkdtemp(prefix="vs_tfmot_")
    os.makedirs(workdir, exist_ok=True)
    say(f"workdir {workdir}")
    t0 = time.perf_counter()
    prepare(workdir, plans, args.resume)
    data["accuracy"] = run_accuracy(workdir, plans, args.jobs, args.resume,
                                    "accuracy" in args.stages)
    data["timing"] = run_timing(workdir, plans, args.resume,
                                "timing" in args.stages)
    # `cores` and `load_start` as records written before the shared
    # skeleton had them, so that their readers read these too.
    data["machine"].update(
        cores=data["machine"]["cpus"],
        load_start=[round(x, 2) for x in data["load_start"]],
        load_end=[round(x, 2) for x in common.load_averages()])
    data["wall_min"] = (time.perf_counter() - t0) / 60
    data["plans"] = plans


def merge(paths):
    data = None
    for path in paths:
        with open(path) as f:
            part = json.load(f)
        if data is None:
            data = part
            continue
        data["plans"].update(part["plans"])
        data["accuracy"] += part["accuracy"]
        data["timing"] += part["timing"]
        data["command"] += "\n" + part["command"]
        data["wall_min"] += part["wall_min"]
        if "wall_s" in part:
            data["wall_s"] = data.get("wall_s", 0) + part["wall_s"]
        data["machine"]["load_end"] = part["machine"]["load_end"]
    return data


def main(argv=None):
    parser = common.parser(
        "vs_tfmot.py", __doc__, write_by_default=True, workers=False,
        quick="smoke run: 1 seed, 1 epoch, 3,200 images, frequency 5, 2 "
              "timing rounds of 20 steps")
    parser.add_argument("--bench", nargs="+", choices=list(BENCHES),
                        default=list(BENCHES))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int,
                        help="override the epochs of every bench")
    parser.add_argument("--rounds", type=int, default=5,
                        help="timed pruned fits per framework (default 5)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="accuracy workers at once (default 2)")
    parser.add_argument("--stages", nargs="+", default=["accuracy", "timing"],
                        choices=["accuracy", "timing"],
                        help="what to run (default both); with --resume, "
                        "results of the other stage already in --workdir "
                        "are still reported")
    parser.add_argument("--workdir", help="keep worker files here "
                        "(default: a new temporary directory)")
    parser.add_argument("--resume", action="store_true",
                        help="reuse worker results already in --workdir")
    return common.main(parser, measure, render, argv, merge=merge)


if __name__ == "__main__":
    main()
