"""Packed sizes vs dense, vs the zipped `.keras` file, vs the entropy bound.

Not part of the test suite. Run from the repository root:

    .venv/bin/python benchmarks/sizes_packed.py --write     # ~1-2 min
    .venv/bin/python benchmarks/sizes_packed.py --epochs 0  # untrained weights

LeNet-300-100 (784-300-100-10) and the demo CNN (`keras_prune.cli.demo.
build_model`, 56,714 weights) are trained densely on Fashion-MNIST for
`--epochs` epochs (Adam, batch 128; 0 keeps the initial glorot weights), then
for each sparsity pruned one-shot with `prune_now(model, s)` (global
magnitude) and stripped, without fine-tuning. `model_size` gives the sizes.
The measurement runs in a worker process on each backend of `--backends`
(default: KERAS_BACKEND, else tensorflow; the sizes do not depend on it).

The bound for b-bit values at sparsity s (the fraction of zeros over all
weights, biases included) is (1 - s)·b + H(s) bits per weight, H the binary
entropy; "of bound" is the packed ratio divided by the bound's ratio
32 / ((1 - s)·b + H(s)) (above 100 % when DEFLATE also shortens the values).
Test accuracy: the pruned float32 model, and the int8 packed file loaded
back, on the first `--test-samples` test images (all 10,000 by default).
Prints a Markdown table.
"""

import math
import os
import tempfile

import common

SPARSITIES = (0.5, 0.8, 0.9, 0.95)


def lenet_300_100():
    import keras

    return keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(300, activation="relu"),
            keras.layers.Dense(100, activation="relu"),
            keras.layers.Dense(10),
        ],
        name="lenet_300_100",
    )


def demo_cnn():
    from keras_prune.cli.demo import build_model

    return build_model()


MODELS = {"lenet": ("LeNet-300-100", (-1, 784), lenet_300_100),
          "cnn": ("demo CNN", (-1, 28, 28, 1), demo_cnn)}


def entropy(s):
    if s in (0.0, 1.0):
        return 0.0
    return -s * math.log2(s) - (1 - s) * math.log2(1 - s)


def bound_ratio(s, bits):
    return 32 / ((1 - s) * bits + entropy(s))


def trained(build, x, y, epochs):
    import keras

    keras.utils.set_random_seed(0)
    model = build()
    if epochs:
        model.compile(
            "adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        )
        model.fit(x, y, batch_size=128, epochs=epochs, verbose=0)
    return model


def accuracy(model, x, y):
    import numpy as np

    return float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))


def int8_accuracy(model, x, y, directory):
    import keras_prune

    path = os.path.join(directory, "model.kpack")
    keras_prune.save_packed(model, path, values="int8", overwrite=True)
    return accuracy(keras_prune.load_packed(path), x, y)


def rows(model, sparsities, x_test, y_test, directory):
    """One record per sparsity: the sizes of the stripped one-shot model
    and its test accuracy as float32 and as the int8 packed file."""
    import keras_prune

    for target in sparsities:
        pruned, _ = keras_prune.prune_now(model, target)
        final = keras_prune.strip_pruning(pruned)
        size = keras_prune.model_size(final)
        yield {
            "target": target,
            "sparsity": size.sparsity,
            "dense_bytes": size.dense_bytes,
            "zipped_keras_bytes": size.zipped_keras_bytes,
            "packed_bytes": size.packed_bytes,
            "packed_int8_bytes": size.packed_int8_bytes,
            "accuracy": accuracy(final, x_test, y_test),
            "int8_accuracy": int8_accuracy(final, x_test, y_test, directory),
        }


def work(spec, log):
    """Trains and prunes the models of `spec` on this worker's backend."""
    import keras

    from keras_prune.datasets import load_fashion_mnist

    (x, y), (x_test, y_test) = load_fashion_mnist()
    x, y = x[: spec["train_samples"]], y[: spec["train_samples"]]
    x_test, y_test = x_test[: spec["test_samples"]], y_test[
        : spec["test_samples"]]
    result = {"backend": keras.backend.backend(), "keras": keras.__version__,
              "epochs": spec["epochs"], "train_samples": len(x),
              "test_samples": len(x_test), "models": []}
    with tempfile.TemporaryDirectory(prefix="keras-prune-bench-") as directory:
        for key in spec["models"]:
            name, shape, build = MODELS[key]
            model = trained(build, x.reshape(shape), y, spec["epochs"])
            test = x_test.reshape(shape), y_test
            result["models"].append({"model": name, "rows": list(
                rows(model, spec["sparsities"], *test, directory))})
            log(f"{name} done")
    return result


def measure(args, data):
    spec = {"epochs": args.epochs, "train_samples": args.train_samples,
            "test_samples": args.test_samples,
            "sparsities": [float(s) for s in args.sparsities.split(",")],
            "models": args.models.split(",")}
    if not set(spec["models"]) <= set(MODELS):
        raise SystemExit(f"--models: a subset of {','.join(MODELS)}, got "
                         f"{args.models!r}")
    data["runs"] = common.run_backends("sizes_packed.py", args.backends, spec,
                                       threads=0)


def render(data):
    lines = []
    for r in data["runs"]:
        lines += [
            f"keras {r['keras']}, backend {r['backend']}, {r['epochs']} dense "
            f"epoch(s) on {r['train_samples']:,} Fashion-MNIST images, "
            "one-shot global magnitude pruning, no fine-tuning; test accuracy "
            f"on {r['test_samples']:,} test images.",
            "",
            "| model | target | zeros (all weights) | dense B | zipped .keras "
            "| packed fp32 | zipped/packed | fp32 bound (reached) "
            "| packed int8 | int8 bound (reached) | test acc. fp32 "
            "| test acc. int8 |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for m in r["models"]:
            for row in m["rows"]:
                s, dense = row["sparsity"], row["dense_bytes"]
                fp32 = dense / row["packed_bytes"]
                int8 = dense / row["packed_int8_bytes"]
                zipped = row["zipped_keras_bytes"]
                lines.append(
                    f"| {m['model']} | {row['target']:.0%} | {s:.1%} "
                    f"| {dense:,} | {zipped:,} ({dense / zipped:.1f}×) "
                    f"| {row['packed_bytes']:,} ({fp32:.1f}×) "
                    f"| {zipped / row['packed_bytes']:.2f}× "
                    f"| {bound_ratio(s, 32):.1f}× "
                    f"({fp32 / bound_ratio(s, 32):.0%}) "
                    f"| {row['packed_int8_bytes']:,} ({int8:.1f}×) "
                    f"| {bound_ratio(s, 8):.1f}× "
                    f"({int8 / bound_ratio(s, 8):.0%}) "
                    f"| {row['accuracy']:.2%} | {row['int8_accuracy']:.2%} |")
        lines.append("")
    return "\n".join(lines).rstrip("\n")


def main(argv=None):
    parser = common.parser("sizes_packed.py", __doc__,
                           backends=[common.default_backend()])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-samples", type=int, default=60_000)
    parser.add_argument("--test-samples", type=int, default=10_000)
    parser.add_argument(
        "--sparsities", default=",".join(map(str, SPARSITIES)),
        help="comma-separated one-shot targets (default: %(default)s)")
    parser.add_argument("--models", default=",".join(MODELS),
                        help="comma-separated subset of "
                             f"{','.join(MODELS)} (default: both)")
    return common.main(parser, measure, render, argv, work=work)


if __name__ == "__main__":
    main()
