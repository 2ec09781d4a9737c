"""Packed sizes vs dense, vs the zipped `.keras` file, vs the entropy bound.

Not part of the test suite. Run from the repository root:

    .venv/bin/python benchmarks/sizes_packed.py             # ~1-2 min
    .venv/bin/python benchmarks/sizes_packed.py --epochs 0  # untrained weights

LeNet-300-100 (784-300-100-10) and the demo CNN (`keras_prune.demo.
build_model`, 56,714 weights) are trained densely on Fashion-MNIST for
`--epochs` epochs (Adam, batch 128; 0 keeps the initial glorot weights), then
for each sparsity pruned one-shot with `prune_now(model, s)` (global
magnitude) and stripped, without fine-tuning. `model_size` gives the sizes.

The bound for b-bit values at sparsity s (the fraction of zeros over all
weights, biases included) is (1 - s)·b + H(s) bits per weight, H the binary
entropy; "of bound" is the packed ratio divided by the bound's ratio
32 / ((1 - s)·b + H(s)) (above 100 % when DEFLATE also shortens the values).
Test accuracy: the pruned float32 model, and the int8 packed file loaded
back, on the 10,000 test images. Prints a Markdown table.
"""

import argparse
import math
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_prune  # noqa: E402
from keras_prune import demo  # noqa: E402
from keras_prune.datasets import load_fashion_mnist  # noqa: E402

SPARSITIES = (0.5, 0.8, 0.9, 0.95)


def lenet_300_100():
    return keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(300, activation="relu"),
            keras.layers.Dense(100, activation="relu"),
            keras.layers.Dense(10),
        ],
        name="lenet_300_100",
    )


def entropy(s):
    if s in (0.0, 1.0):
        return 0.0
    return -s * math.log2(s) - (1 - s) * math.log2(1 - s)


def bound_ratio(s, bits):
    return 32 / ((1 - s) * bits + entropy(s))


def trained(build, x, y, epochs):
    keras.utils.set_random_seed(0)
    model = build()
    if epochs:
        model.compile(
            "adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        )
        model.fit(x, y, batch_size=128, epochs=epochs, verbose=0)
    return model


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))


def int8_accuracy(model, x, y, directory):
    path = os.path.join(directory, "model.kpack")
    keras_prune.save_packed(model, path, values="int8", overwrite=True)
    return accuracy(keras_prune.load_packed(path), x, y)


def rows(name, model, sparsities, x_test, y_test, directory):
    for target in sparsities:
        pruned, _ = keras_prune.prune_now(model, target)
        final = keras_prune.strip_pruning(pruned)
        size = keras_prune.model_size(final)
        s = size.sparsity
        fp32 = size.ratio("packed_bytes")
        int8 = size.ratio("packed_int8_bytes")
        yield (
            f"| {name} | {target:.0%} | {s:.1%} | {size.dense_bytes:,} "
            f"| {size.zipped_keras_bytes:,} ({size.ratio('zipped_keras_bytes'):.1f}×) "
            f"| {size.packed_bytes:,} ({fp32:.1f}×) "
            f"| {size.zipped_keras_bytes / size.packed_bytes:.2f}× "
            f"| {bound_ratio(s, 32):.1f}× ({fp32 / bound_ratio(s, 32):.0%}) "
            f"| {size.packed_int8_bytes:,} ({int8:.1f}×) "
            f"| {bound_ratio(s, 8):.1f}× ({int8 / bound_ratio(s, 8):.0%}) "
            f"| {accuracy(final, x_test, y_test):.2%} "
            f"| {int8_accuracy(final, x_test, y_test, directory):.2%} |"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-samples", type=int, default=60_000)
    args = parser.parse_args(argv)
    (x, y), (x_test, y_test) = load_fashion_mnist()
    x, y = x[: args.train_samples], y[: args.train_samples]
    models = [
        ("LeNet-300-100", lenet_300_100, (-1, 784)),
        ("demo CNN", demo.build_model, (-1, 28, 28, 1)),
    ]
    print(
        f"keras {keras.__version__}, backend {keras.backend.backend()}, "
        f"{args.epochs} dense epoch(s) on {len(x):,} Fashion-MNIST images, "
        "one-shot global magnitude pruning, no fine-tuning.\n"
    )
    print(
        "| model | target | zeros (all weights) | dense B | zipped .keras "
        "| packed fp32 | zipped/packed | fp32 bound (reached) "
        "| packed int8 | int8 bound (reached) | test acc. fp32 | test acc. int8 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="keras-prune-bench-") as directory:
        for name, build, shape in models:
            model = trained(build, x.reshape(shape), y, args.epochs)
            test = x_test.reshape(shape), y_test
            for row in rows(name, model, SPARSITIES, *test, directory):
                print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
