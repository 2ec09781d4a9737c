"""Supermasks: a mask learned over the frozen random weights of an untrained
LeNet-300-100, against chance and the trained dense network.

Not part of the test suite (its `--quick` mode is). Run from the repository
root:

    .venv/bin/python benchmarks/supermask.py --write
    .venv/bin/python benchmarks/supermask.py --quick --backends jax

Model: LeNet-300-100 (`common.lenet`, 266,200 prunable weights; biases
frozen at their initial zeros). Data: Fashion-MNIST (`keras_prune.datasets`),
the whole training set, accuracy on the 10,000 test images. For each
sparsity in `--sparsities` (30, 50, 70 %; edge-popup found about 50 % best)
and each seed: `keras_prune.supermask(untrained, sparsity)` with
signed-constant weights (the paper's best: sign(w) * sqrt(2 / fan_in)),
scores trained by Adam `--lr` (0.01) for `--epochs` (3) epochs, batch 128,
masks re-chosen every step (edge-popup's top-k of |scores| per layer). The
untrained masked network before training (chance level, 10 %) and the same
LeNet trained densely for the same epochs (Adam 1e-3) are the references.

Seeds: `--seeds` 0 1 2 (declared 2026-12-07, fourth session, before the
first run); a seed sets the initialization (the signs), the scores'
initialization and the batch order. Each cell is the median over the seeds
with the spread (min-max).
"""

import time

import numpy as np

import common
from common import median_cell

SPARSITIES = (0.3, 0.5, 0.7)


def work(spec, log):
    import keras

    import keras_prune
    from keras_prune.datasets import load_fashion_mnist

    (x, y), (x_test, y_test) = load_fashion_mnist()
    x, y = x[:spec["train"]].reshape(-1, 784), y[:spec["train"]]
    x_test = x_test[:spec["test"]].reshape(-1, 784)
    y_test = y_test[:spec["test"]]
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    runs = []
    for seed in spec["seeds"]:
        keras.utils.set_random_seed(seed)
        untrained = common.lenet()
        initial = untrained.get_weights()
        dense = keras.models.clone_model(untrained)
        dense.set_weights(untrained.get_weights())
        dense.compile(keras.optimizers.Adam(1e-3), loss, metrics=["accuracy"])
        keras.utils.set_random_seed(seed)
        dense.fit(x, y, batch_size=128, epochs=spec["epochs"], verbose=0)
        run = {"seed": seed, "results": [],
               "dense": float(dense.evaluate(x_test, y_test, verbose=0)[1])}
        log(f"seed {seed}: dense {run['dense']:.4f}")
        for sparsity in spec["sparsities"]:
            masked = keras_prune.supermask(untrained, sparsity, seed=seed)
            masked.compile(keras.optimizers.Adam(spec["lr"]), loss,
                           metrics=["accuracy"])
            keras_prune.update_masks(masked, 0)
            before = float(masked.evaluate(x_test, y_test, verbose=0)[1])
            start = time.perf_counter()
            keras.utils.set_random_seed(seed)
            masked.fit(x, y, batch_size=128, epochs=spec["epochs"],
                       verbose=0, callbacks=[keras_prune.UpdatePruningStep()])
            seconds = time.perf_counter() - start
            accuracy = float(masked.evaluate(x_test, y_test, verbose=0)[1])
            report = keras_prune.SparsityReport.from_model(masked)
            run["results"].append({
                "sparsity": sparsity, "before": before,
                "accuracy": accuracy, "seconds": seconds,
                "reached": report.prunable_sparsity})
            log(f"sparsity {sparsity}: {before:.4f} -> {accuracy:.4f} "
                f"({seconds:.0f} s)")
            keras.backend.clear_session(free_memory=False)
        # supermask() trains a copy: the untrained model never changed.
        assert all(np.array_equal(a, b) for a, b in zip(
            initial, untrained.get_weights()))
        runs.append(run)
    return {"backend": keras.backend.backend(), "runs": runs}


def measure(args, data):
    quick = args.quick
    spec = {
        "seeds": [0] if quick else args.seeds,
        "train": 512 if quick else 60000,
        "test": 512 if quick else 10000,
        "epochs": 1 if quick else args.epochs,
        "lr": args.lr,
        "sparsities": [0.5] if quick else list(args.sparsities),
    }
    data["spec"] = spec
    data["runs"] = common.run_backends("supermask.py", args.backends, spec,
                                       threads=args.threads)


def render(data):
    spec = data["spec"]
    lines = [
        f"Protocol: LeNet-300-100, signed-constant frozen weights, scores "
        f"trained by Adam {spec['lr']:g} for {spec['epochs']} epoch(s) on "
        f"{spec['train']:,} Fashion-MNIST images (batch 128, masks every "
        f"step), test on {spec['test']:,}; seeds {spec['seeds']}; median "
        "(min-max).", ""]
    for record in data["runs"]:
        runs = record["runs"]
        lines += [
            f"**{record['backend']}**: the same LeNet trained densely "
            + median_cell([100 * r["dense"] for r in runs])
            + " %; chance 10 %.",
            "", "| sparsity | before training | learned mask | seconds |",
            "|---|---|---|---|"]
        for sparsity in spec["sparsities"]:
            found = [r for run in runs for r in run["results"]
                     if r["sparsity"] == sparsity]
            lines.append(
                f"| {100 * sparsity:g} % | "
                + median_cell([100 * r["before"] for r in found]) + " % | "
                + median_cell([100 * r["accuracy"] for r in found]) + " % | "
                + median_cell([r["seconds"] for r in found], "{:.0f}") + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = common.parser(
        "supermask.py", __doc__,
        quick="512 images, 1 epoch, sparsity 50 %%, one seed",
        backends=["jax"], threads=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sparsities", type=float, nargs="+",
                        default=list(SPARSITIES))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.01)
    return common.main(parser, measure, render, argv, work=work)


if __name__ == "__main__":
    main()
