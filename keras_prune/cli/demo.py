"""The `keras-prune demo`: train, prune to 90 %, strip, compare.

A small CNN is trained on Fashion-MNIST (the dense baseline). A copy is then
pruned gradually with `PolynomialDecay` (sparsity rising from 0 over the first
two thirds of the pruning phase) and trained on with the masks fixed (the
recovery third), stripped with `strip_pruning`, and both models are compared:
test accuracy, exact zeros per prunable weight, parameter counts, and the
size of each saved `.keras` file once zipped with DEFLATE (tfmot's measure:
zeros compress, the file format itself is not sparse).

This module is also the `keras-prune demo` command (`add_parser`, `run`).
"""

import math
import os
import sys
import tempfile
import zipfile

import keras
import numpy as np

from keras_prune import backend
from keras_prune import datasets
from keras_prune.cli import common
from keras_prune.core import registry
from keras_prune.core.models import strip_pruning
from keras_prune.core.models import uncompiled
from keras_prune.core.schedules import PolynomialDecay
from keras_prune.methods.gradual import prune_low_magnitude
from keras_prune.training.callbacks import UpdatePruningStep

FASHION_MNIST_TRAIN_IMAGES = 60_000

NAME = "demo"
EXAMPLES = """\
examples:
  keras-prune demo                      the full demo (under 3 minutes on 2 CPU cores)
  keras-prune demo --train-samples 2000 --epochs 1 --prune-epochs 2
                                        a quick run on a subset
  keras-prune demo --sparsity 0.8 --seed 1
  KERAS_BACKEND=jax keras-prune demo    on JAX (or torch, tensorflow)
"""

# The full demo's options: measured to finish in under 3 minutes on 2 CPU
# cores with each backend. Batches of 64, not 128: on JAX (XLA CPU) a batch
# of 128 costs 3-4x a batch of 64, and the demo ends up twice as slow.
DEFAULTS = dict(epochs=2, prune_epochs=2, sparsity=0.9, batch_size=64, seed=0)

# Sparsity rises during this fraction of the pruning phase; the rest recovers.
RAMP_FRACTION = 2 / 3
# About this many mask updates during the ramp (capped at one per 100 steps).
MASK_UPDATES = 10


def check_options(epochs, prune_epochs, sparsity, train_samples, batch_size):
    """Checks the demo's options.

    Args:
        epochs: Epochs of dense training.
        prune_epochs: Epochs of pruning, recovery included.
        sparsity: Final sparsity of every prunable weight.
        train_samples: Number of training images, or `None` for all 60,000.
        batch_size: Training batch size.

    Raises:
        ValueError: Naming the first invalid option, its value and the fix.
    """
    for name, value in (
        ("epochs", epochs),
        ("prune_epochs", prune_epochs),
        ("batch_size", batch_size),
    ):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}.")
    if not 0 <= sparsity < 1:
        raise ValueError(
            f"sparsity must be in [0, 1), got {sparsity}: it is the fraction "
            "of each kernel's weights set to zero, e.g. 0.9."
        )
    if train_samples is not None and not (
        1 <= train_samples <= FASHION_MNIST_TRAIN_IMAGES
    ):
        raise ValueError(
            f"train_samples must be between 1 and {FASHION_MNIST_TRAIN_IMAGES:,} "
            f"(the Fashion-MNIST training set), got {train_samples}."
        )
    steps = prune_epochs * math.ceil(
        (train_samples or FASHION_MNIST_TRAIN_IMAGES) / batch_size
    )
    if steps < 2:
        raise ValueError(
            f"The pruning phase has {steps} training step; it needs at least 2 "
            "to raise sparsity gradually: raise prune_epochs or train_samples, "
            "or lower batch_size."
        )


def pruning_schedule(sparsity, steps):
    """The demo's schedule for a pruning phase of `steps` training steps.

    Sparsity rises from 0 to `sparsity` over the first `RAMP_FRACTION` of the
    steps, with masks updated about `MASK_UPDATES` times; `end_step` is a
    multiple of the update frequency, so the last update applies `sparsity`
    exactly. The remaining steps train with the masks fixed.

    Args:
        sparsity: Final sparsity, in [0, 1).
        steps: Training steps of the pruning phase, at least 2.

    Returns:
        A `keras_prune.PolynomialDecay`.
    """
    ramp = max(1, int(steps * RAMP_FRACTION))
    frequency = min(100, max(1, ramp // MASK_UPDATES))
    return PolynomialDecay(
        initial_sparsity=0.0,
        final_sparsity=sparsity,
        begin_step=0,
        end_step=ramp - ramp % frequency,
        frequency=frequency,
    )


def build_model():
    """The demo's CNN: two conv/pool blocks and two Dense layers (56,714 weights)."""
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(16, 3, activation="relu", name="conv1"),
            layers.MaxPooling2D(name="pool1"),
            layers.Conv2D(32, 3, activation="relu", name="conv2"),
            layers.MaxPooling2D(name="pool2"),
            layers.Flatten(name="flatten"),
            layers.Dense(64, activation="relu", name="fc1"),
            layers.Dense(10, name="logits"),
        ],
        name="fashion_cnn",
    )


def _compile(model):
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def run_demo(
    epochs=DEFAULTS["epochs"],
    prune_epochs=DEFAULTS["prune_epochs"],
    sparsity=DEFAULTS["sparsity"],
    train_samples=None,
    batch_size=DEFAULTS["batch_size"],
    seed=DEFAULTS["seed"],
    verbose=2,
    log=print,
):
    """Trains a dense CNN, prunes a copy, strips it and measures both.

    Args:
        epochs: Epochs of dense training.
        prune_epochs: Epochs of pruning (sparsity ramp, then recovery).
        sparsity: Final sparsity of every prunable weight, in [0, 1).
        train_samples: Use only the first `train_samples` training images;
            `None` uses all 60,000.
        batch_size: Training batch size.
        seed: Seed of `keras.utils.set_random_seed`.
        verbose: `verbose` of `fit` (0 silent, 1 progress bar, 2 one line per
            epoch); with 0 no phase headers are logged either.
        log: Function that prints a phase header.

    Returns:
        A dict with `"config"` (the options and the schedule),
        `"dense"` and `"pruned"` (each: `"model"`, `"accuracy"`,
        `"params"`, `"nonzero_params"`, `"zipped_bytes"` and `"weights"`,
        which maps `"layer/variable"` of every prunable weight to
        `(zeros, total)`), and `"size_ratio"` (dense over pruned zipped
        size). The pruned model is the stripped one.

    Raises:
        ValueError: If an option is invalid (see `check_options`).
        keras_prune.datasets.DataUnavailableError: If Fashion-MNIST is not
            installed.

    Example:

    ```python
    result = run_demo(epochs=1, prune_epochs=2, train_samples=2000)
    print(format_table(result))
    ```
    """
    check_options(epochs, prune_epochs, sparsity, train_samples, batch_size)
    say = log if verbose else (lambda _: None)
    backend.use_one_thread_for_small_models()
    keras.utils.set_random_seed(seed)
    (x_train, y_train), (x_test, y_test) = datasets.load_fashion_mnist()
    x_train, y_train = x_train[:train_samples], y_train[:train_samples]
    steps = prune_epochs * math.ceil(len(x_train) / batch_size)
    schedule = pruning_schedule(sparsity, steps)

    say(f"== Dense training: {epochs} epoch(s) on {len(x_train):,} images ==")
    dense = build_model()
    _compile(dense)
    dense.fit(x_train, y_train, batch_size, epochs, verbose=verbose)

    say(
        f"== Pruning to {sparsity:.0%}: {prune_epochs} epoch(s), {steps} steps; "
        f"masks updated every {schedule.frequency} steps up to step "
        f"{schedule.end_step}, then fixed =="
    )
    pruned = prune_low_magnitude(dense, pruning_schedule=schedule)
    _compile(pruned)
    pruned.fit(
        x_train,
        y_train,
        batch_size,
        prune_epochs,
        verbose=verbose,
        callbacks=[UpdatePruningStep()],
    )
    stripped = strip_pruning(pruned)
    _compile(stripped)

    say("== Evaluating on the 10,000 test images ==")
    with tempfile.TemporaryDirectory() as directory:
        dense_stats = _measure(dense, x_test, y_test, directory, "dense")
        pruned_stats = _measure(stripped, x_test, y_test, directory, "pruned")
    return {
        "config": {
            "epochs": epochs,
            "prune_epochs": prune_epochs,
            "sparsity": sparsity,
            "train_samples": len(x_train),
            "batch_size": batch_size,
            "seed": seed,
            "schedule": schedule.get_config(),
        },
        "dense": dense_stats,
        "pruned": pruned_stats,
        "size_ratio": dense_stats["zipped_bytes"] / pruned_stats["zipped_bytes"],
    }


def _measure(model, x_test, y_test, directory, name):
    _, accuracy = model.evaluate(x_test, y_test, batch_size=1000, verbose=0)
    weights = {}
    for layer in model.layers:
        for variable in registry.prunable_weights(layer):
            values = keras.ops.convert_to_numpy(variable)
            zeros = values.size - int(np.count_nonzero(values))
            weights[f"{layer.name}/{variable.name}"] = (zeros, values.size)
    values = [keras.ops.convert_to_numpy(v) for v in model.weights]
    return {
        "model": model,
        "accuracy": float(accuracy),
        "params": sum(v.size for v in values),
        "nonzero_params": sum(int(np.count_nonzero(v)) for v in values),
        "zipped_bytes": _zipped_size(model, os.path.join(directory, name)),
        "weights": weights,
    }


def _zipped_size(model, stem):
    # An uncompiled copy saves no optimizer state (tfmot saves with
    # include_optimizer=False): only the weights are compared.
    copy = keras.models.clone_model(model)
    if copy.compiled:  # clone_model compiles the copy of a compiled model
        copy = uncompiled(copy)
    copy.set_weights(model.get_weights())
    copy.save(f"{stem}.keras")
    with zipfile.ZipFile(f"{stem}.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(f"{stem}.keras", os.path.basename(f"{stem}.keras"))
    return os.path.getsize(f"{stem}.zip")


def format_table(result):
    """Formats a `run_demo` result as an aligned plain-text table.

    Args:
        result: The dict returned by `run_demo`.

    Returns:
        The table, one row per line, without a trailing newline.
    """
    dense, pruned = result["dense"], result["pruned"]
    rows = [
        ("", "dense", "pruned"),
        ("test accuracy", f"{dense['accuracy']:.2%}", f"{pruned['accuracy']:.2%}"),
    ]
    for name in dense["weights"]:
        rows.append(
            (
                f"sparsity {name}",
                _sparsity(*dense["weights"][name]),
                _sparsity(*pruned["weights"][name]),
            )
        )
    rows += [
        ("parameters", f"{dense['params']:,}", f"{pruned['params']:,}"),
        (
            "non-zero parameters",
            f"{dense['nonzero_params']:,}",
            f"{pruned['nonzero_params']:,}",
        ),
        (
            "zipped .keras size",
            f"{dense['zipped_bytes']:,} B",
            f"{pruned['zipped_bytes']:,} B",
        ),
        ("size ratio (dense/pruned)", "", f"{result['size_ratio']:.2f}x"),
    ]
    label, left, right = (max(len(row[i]) for row in rows) for i in range(3))
    return "\n".join(
        f"{name:<{label}}  {a:>{left}}  {b:>{right}}".rstrip() for name, a, b in rows
    )


def _sparsity(zeros, total):
    return f"{zeros / total:.2%} ({zeros:,}/{total:,})"


# ---- the command -------------------------------------------------------------


def add_parser(commands):
    parser = common.command(
        commands,
        NAME,
        run,
        EXAMPLES,
        description="Trains a small CNN on Fashion-MNIST (the dense baseline), "
        "prunes a copy gradually with PolynomialDecay and UpdatePruningStep, "
        "lets it recover with the masks fixed, strips it with strip_pruning "
        "and prints dense vs pruned: test accuracy, sparsity of every "
        "prunable weight, parameter counts and zipped .keras sizes.",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=DEFAULTS["epochs"],
        help="epochs of dense training (default: %(default)s)",
    )
    parser.add_argument(
        "--prune-epochs",
        type=int,
        default=DEFAULTS["prune_epochs"],
        help="epochs of pruning: the sparsity ramp, then recovery with the "
        "masks fixed (default: %(default)s)",
    )
    parser.add_argument(
        "--sparsity",
        type=float,
        default=DEFAULTS["sparsity"],
        help="final sparsity of every prunable weight, in [0, 1) "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--train-samples",
        type=int,
        metavar="N",
        help=f"train on the first N of the {FASHION_MNIST_TRAIN_IMAGES:,} images "
        "(default: all)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULTS["batch_size"],
        help="training batch size (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULTS["seed"],
        help="random seed (default: %(default)s)",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="print only the result table, no progress",
    )


def run(args):
    options = dict(
        epochs=args.epochs,
        prune_epochs=args.prune_epochs,
        sparsity=args.sparsity,
        train_samples=args.train_samples,
        batch_size=args.batch_size,
    )
    try:
        check_options(**options)
    except ValueError as err:
        args.parser.error(str(err))
    if args.quiet:
        verbose = 0
    else:
        # A live progress bar in a terminal, one line per epoch in a log.
        verbose = 1 if sys.stdout.isatty() else 2
    try:
        result = run_demo(**options, seed=args.seed, verbose=verbose)
    except datasets.DataUnavailableError as err:
        raise common.CommandError(str(err)) from None
    if not args.quiet:
        print(f"\n== Results ({keras.backend.backend()} backend) ==")
    print(format_table(result))
    return 0
