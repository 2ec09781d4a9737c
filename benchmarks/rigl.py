"""RigL vs static random sparse vs gradual magnitude pruning: accuracy at 90 %
and 95 % on Fashion-MNIST, and the cost of a RigL update.

Not part of the test suite (its `--quick` mode is). Run from the repository
root:

    .venv/bin/python benchmarks/rigl.py --write
    .venv/bin/python benchmarks/rigl.py --quick --backends jax

Protocol (declared 2026-12-07 before any run). Models: LeNet-300-100
(`common.lenet`, 266,200 prunable weights) and a small CNN (Conv2D 8 3x3,
max-pool, Conv2D 16 3x3, max-pool, Dense 64, Dense 10; 27,464 prunable
weights), both with logits outputs. Data: Fashion-MNIST
(`keras_prune.datasets`), a seeded random `--train` (30,000) subset of the
training set, accuracy on the first `--test` (10,000) test images. Every
method trains the same initialization (the seed's) for the same number of
steps: Adam 1e-3, batch 128, `--epochs` (5) epochs, the same batches
(`common.fit_epochs` on seeded permutations). At each sparsity (90 %,
95 %):

- rigl: `sparse_init(model, s, "erk", seed)` then `fit` with
  `RigL(delta_t=--delta-t (50), alpha=0.3, end_fraction=0.75,
  batch_size=128)`, its gradient batches drawn from the training subset;
- static: the same `sparse_init` masks, never moved (a plain `fit`);
- gradual: `prune_low_magnitude` with `PolynomialDecay(0 -> s)` per layer
  (uniform, tfmot's default), from 10 % of the steps to the last update
  step before 75 % (every `delta_t` steps), so it trains dense first and
  ends at `s` exactly; `UpdatePruningStep`.

The dense model trained the same way is the reference. Seeds: `--seeds`
0 1 2 (a seed sets the initialization, the subset, the batch order, the
masks and RigL's batches). Each cell is the median over the seeds with
the spread (min-max). Expected (the paper, ANCHORS.md): RigL at least as
good as static at 95 %. Cost: the median wall time of a RigL update
(gradient of one batch of 128, drop and grow, the writes; the first
update, which compiles, excluded) against the median time of one training
step (`train_on_batch`, batch 128) of the same sparse model, on the same
`--threads` (2) intra-op threads.

`--cost-only` measures that cost alone, on every backend of `--backends`
(one seed, one epoch, RigL at 90 %, no accuracy table; results in
rigl_cost.md).
"""

import math
import statistics
import time

import numpy as np

import common
from common import median_cell

SPARSITIES = (0.9, 0.95)
METHODS = ("rigl", "static", "gradual")
MODELS = ("lenet", "cnn")


def cnn(channels=(8, 16), hidden=64):
    import keras

    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(channels[0], 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(channels[1], 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(hidden, activation="relu"),
        keras.layers.Dense(10),
    ])


def build(name, spec):
    if name == "lenet":
        return common.lenet()
    return cnn(spec["channels"], spec["hidden"])


def inputs_for(name, x):
    return x.reshape(len(x), -1) if name == "lenet" else x


def compile_(model):
    import keras

    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])


def train(model, data, spec, perms, callbacks=()):
    (x, y), (x_test, y_test) = data
    compile_(model)
    start = time.perf_counter()
    common.fit_epochs(model, x, y, perms, range(spec["epochs"]), 128,
                      callbacks)
    train_s = time.perf_counter() - start
    accuracy = float(model.evaluate(x_test, y_test, batch_size=500,
                                    verbose=0)[1])
    return accuracy, train_s


def gradual_schedule(sparsity, total, delta_t):
    import keras_prune

    begin = int(0.1 * total)
    end = begin + delta_t * max(1, (int(0.75 * total) - begin) // delta_t)
    return keras_prune.PolynomialDecay(0.0, sparsity, begin, end,
                                       frequency=delta_t)


def step_cost(model, x, y, rigl, repeats):
    """Median seconds of a training step and of a RigL update (the first
    excluded)."""
    compile_(model)
    steps = []
    for _ in range(repeats + 2):
        start = time.perf_counter()
        model.train_on_batch(x[:128], y[:128])
        steps.append(time.perf_counter() - start)
    updates = [u["seconds"] for u in rigl.updates[1:]] or [
        rigl.updates[0]["seconds"]]
    return statistics.median(steps[2:]), statistics.median(updates)


def work(spec, log):
    import keras

    import keras_prune
    from keras_prune.datasets import load_fashion_mnist

    (x_all, y_all), (x_test, y_test) = load_fashion_mnist()
    runs = []
    costs = {}
    for seed in spec["seeds"]:
        order = np.random.default_rng(seed).permutation(len(x_all))
        x, y = x_all[order[:spec["train"]]], y_all[order[:spec["train"]]]
        rng = np.random.default_rng(seed + 1000)
        perms = [rng.permutation(len(x)) for _ in range(spec["epochs"])]
        total = spec["epochs"] * math.ceil(len(x) / 128)
        run = {"seed": seed, "dense": {}, "results": []}
        for name in spec["models"]:
            data = ((inputs_for(name, x), y),
                    (inputs_for(name, x_test[:spec["test"]]),
                     y_test[:spec["test"]]))
            keras.utils.set_random_seed(seed)
            model = build(name, spec)
            initial = model.get_weights()
            dense = keras.models.clone_model(model)
            dense.set_weights(initial)
            if not spec.get("cost_only"):
                run["dense"][name], _ = train(dense, data, spec, perms)
                log(f"seed {seed} {name}: dense {run['dense'][name]:.4f}")
            for sparsity in spec["sparsities"]:
                for method in spec["methods"]:
                    callbacks, rigl = [], None
                    if method == "gradual":
                        pruned = keras_prune.prune_low_magnitude(
                            model, gradual_schedule(sparsity, total,
                                                    spec["delta_t"]))
                        callbacks = [keras_prune.UpdatePruningStep()]
                    else:
                        pruned, _ = keras_prune.sparse_init(
                            model, sparsity, "erk", seed=seed)
                    if method == "rigl":
                        rigl = keras_prune.RigL(
                            data=data[0], total_steps=total,
                            delta_t=spec["delta_t"], alpha=0.3,
                            end_fraction=0.75, batch_size=128, seed=seed)
                        callbacks = [rigl]
                    accuracy, train_s = train(pruned, data, spec, perms,
                                              callbacks)
                    reached = keras_prune.SparsityReport(
                        keras_prune.strip_pruning(pruned)).prunable_sparsity
                    run["results"].append({
                        "model": name, "method": method,
                        "sparsity": sparsity, "accuracy": accuracy,
                        "sparsity_reached": reached, "train_s": train_s,
                        "updates": len(rigl.updates) if rigl else 0})
                    log(f"{name} {method} {sparsity}: accuracy "
                        f"{accuracy:.4f}, sparsity {reached:.4f}, "
                        f"{train_s:.1f} s")
                    if rigl is not None and name not in costs:
                        costs[name] = step_cost(pruned, *data[0], rigl,
                                                spec["cost_repeats"])
            assert all(np.array_equal(a, b)
                       for a, b in zip(initial, model.get_weights()))
        runs.append(run)
    return {"backend": keras.backend.backend(), "runs": runs,
            "steps": total,
            "cost": {k: {"step_s": s, "update_s": u}
                     for k, (s, u) in costs.items()}}


def measure(args, data):
    quick = args.quick
    spec = {
        "seeds": [0] if quick else args.seeds,
        "train": 1024 if quick else args.train,
        "test": 256 if quick else args.test,
        "epochs": 1 if quick else args.epochs,
        "delta_t": 2 if quick else args.delta_t,
        "channels": [4, 4] if quick else [8, 16],
        "hidden": 16 if quick else 64,
        "models": list(MODELS) if quick else args.models,
        "sparsities": list(SPARSITIES),
        "methods": list(METHODS),
        "cost_repeats": 3 if quick else 20,
        "threads": args.threads,
    }
    if args.cost_only and not quick:
        spec.update(cost_only=True, seeds=args.seeds[:1], epochs=1,
                    sparsities=[0.9], methods=["rigl"])
    data["quick"] = quick
    data["spec"] = spec
    data["runs"] = common.run_backends("rigl.py", args.backends, spec,
                                       threads=args.threads)


def render(data):
    spec = data["spec"]
    lines = [
        f"Protocol: {spec['train']:,} training images (seeded subset), "
        f"{spec['epochs']} epoch(s), Adam 1e-3, batch 128, test on "
        f"{spec['test']:,} images; seeds {spec['seeds']}; RigL and static "
        f"from the same ERK masks, RigL every {spec['delta_t']} steps "
        "(alpha 0.3, cosine, until 75 %); gradual: PolynomialDecay per "
        "layer from 10 % to 75 % of the steps; "
        f"{spec.get('threads', 1)} intra-op thread(s).", ""]
    for record in data["runs"]:
        if spec.get("cost_only"):
            lines += [f"**{record['backend']}**:", ""]
            lines += _cost_lines(spec, record)
            continue
        lines += [
            f"**{record['backend']}**, {record['steps']} training steps: "
            "test accuracy (%), median over the seeds, the spread (min-max) "
            "in brackets when there are several.", "",
            "| model | sparsity | dense | " + " | ".join(spec["methods"])
            + " |", "|---|---|---|" + "---|" * len(spec["methods"])]
        for name in spec["models"]:
            dense = [100 * run["dense"][name] for run in record["runs"]]
            for sparsity in spec["sparsities"]:
                cells = []
                for method in spec["methods"]:
                    found = [100 * r["accuracy"] for run in record["runs"]
                             for r in run["results"]
                             if r["model"] == name and r["method"] == method
                             and r["sparsity"] == sparsity]
                    cells.append(median_cell(found, "{:.1f}"))
                lines.append(
                    f"| {name} | {100 * sparsity:g} % | "
                    + median_cell(dense, "{:.1f}") + " | "
                    + " | ".join(cells) + " |")
        lines.append("")
        lines += _cost_lines(spec, record)
    return "\n".join(lines)


def _cost_lines(spec, record):
    lines = []
    for name, cost in record["cost"].items():
        ratio = cost["update_s"] / cost["step_s"]
        lines.append(
            f"Cost ({name}): one RigL update "
            f"{1000 * cost['update_s']:.1f} ms, one training step "
            f"(batch 128) {1000 * cost['step_s']:.1f} ms "
            f"({ratio:.1f}x; every {spec['delta_t']} steps: "
            f"+{100 * ratio / spec['delta_t']:.1f} % of the training time).")
    return lines + [""]


def main(argv=None):
    parser = common.parser(
        "rigl.py", __doc__,
        quick="tiny: 1,024 images, one epoch, one seed, delta_t 2",
        backends=["jax"], threads=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", choices=MODELS,
                        default=list(MODELS))
    parser.add_argument("--train", type=int, default=30000)
    parser.add_argument("--test", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--delta-t", type=int, default=50)
    parser.add_argument("--cost-only", action="store_true",
                        help="only the cost of a RigL update against a "
                             "training step, on every backend")
    return common.main(parser, measure, render, argv, work=work,
                       variant=_variant)


def _variant(data):
    return "cost" if data["spec"].get("cost_only") else None


if __name__ == "__main__":
    main()
