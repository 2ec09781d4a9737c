"""The `keras-prune demo`: a tour of what pruning gives, in a few minutes.

A small CNN is trained on Fashion-MNIST (the dense baseline). A copy is then
pruned gradually with `PolynomialDecay` (sparsity rising from 0 over the
first third of the pruning phase) and trained on with the masks fixed (the
recovery: the weights left retrain to make up for those removed), stripped
with `strip_pruning`, and measured: test accuracy, exact zeros per prunable
weight, the zipped `.keras` size (tfmot's measure) and the packed files
(float32 and int8). The same dense CNN is then shrunk (structured pruning:
half of every layer's channels removed) and fine-tuned, with its parameters,
MACs and measured speed-up. Everything is written to a folder, with the
next commands to try on it (`tour`).

This module is also the `keras-prune demo` command (`add_parser`, `run`).
"""

import math
import os
import sys
import tempfile
import textwrap
import time
import zipfile

import keras
import numpy as np

from keras_prune import backend
from keras_prune import datasets
from keras_prune.cli import common
from keras_prune.cli import tour
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
  keras-prune demo                      the whole tour (files in keras-prune-demo/)
  keras-prune demo --quick              the same in about a minute
  keras-prune demo --out runs/demo1 --sparsity 0.8 --seed 1
  keras-prune demo --force              run again into the same folder
  KERAS_BACKEND=jax keras-prune demo    on JAX (or torch, tensorflow)
"""

# The full demo's options (see docs/cli.md for the measured times and
# accuracies). Batches of 64, not 128: on JAX (XLA CPU) a batch of 128 costs
# 3-4x a batch of 64, and the demo ends up twice as slow.
DEFAULTS = dict(epochs=3, prune_epochs=8, sparsity=0.9, batch_size=64, seed=0,
                shrink_ratio=0.5, shrink_epochs=1)
# --quick: the same tour on a sixth of the images, about a minute.
QUICK = dict(train_samples=10_000, epochs=2, prune_epochs=2)
DEFAULT_OUT = "keras-prune-demo"

# Sparsity rises during this fraction of the pruning phase; the rest recovers.
RAMP_FRACTION = 1 / 3
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
    shrink_ratio=DEFAULTS["shrink_ratio"],
    shrink_epochs=DEFAULTS["shrink_epochs"],
    out_dir=None,
    verbose=2,
    log=print,
):
    """Trains a dense CNN, prunes a copy gradually, shrinks another, measures
    all three and (with `out_dir`) writes them.

    Args:
        epochs: Epochs of dense training.
        prune_epochs: Epochs of pruning (sparsity ramp, then recovery).
        sparsity: Final sparsity of every prunable weight, in [0, 1).
        train_samples: Use only the first `train_samples` training images;
            `None` uses all 60,000.
        batch_size: Training batch size.
        seed: Seed of `keras.utils.set_random_seed`.
        shrink_ratio: Fraction of every layer's channels the structured
            step removes.
        shrink_epochs: Epochs of fine-tuning after shrinking.
        out_dir: Folder to write the models, packed files and plots to
            (`tour.outputs`, overwritten; created if missing); `None` writes
            nothing but temporary files.
        verbose: `verbose` of `fit` (0 silent, 1 progress bar, 2 one line per
            epoch); with 0 no phase headers are logged either.
        log: Function that prints a phase header.

    Returns:
        A dict with `"config"` (the options and the schedule),
        `"dense"` and `"pruned"` (each: `"model"`, `"accuracy"`,
        `"params"`, `"nonzero_params"`, `"zipped_bytes"` and `"weights"`,
        which maps `"layer/variable"` of every prunable weight to
        `(zeros, total)`), `"size_ratio"` (dense over pruned zipped size),
        `"packed"` (bytes of the pruned model packed as float32 and int8),
        `"small"` (`tour.shrink_step`'s dict), `"files"` (the paths
        written) and `"seconds"` (wall time of each phase). The pruned
        model is the stripped one.

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
    if not 0 <= shrink_ratio < 1:
        raise ValueError(
            f"shrink_ratio must be in [0, 1), got {shrink_ratio}: it is the "
            "fraction of every layer's channels removed, e.g. 0.5.")
    say = log if verbose else (lambda _: None)
    seconds, clock = {}, [time.perf_counter()]

    def lap(name):
        now = time.perf_counter()
        seconds[name] = now - clock[0]
        clock[0] = now

    backend.use_one_thread_for_small_models()
    keras.utils.set_random_seed(seed)
    (x_train, y_train), (x_test, y_test) = datasets.load_fashion_mnist()
    x_train, y_train = x_train[:train_samples], y_train[:train_samples]
    steps = prune_epochs * math.ceil(len(x_train) / batch_size)
    schedule = pruning_schedule(sparsity, steps)

    say(f"== 1. Dense training: {epochs} epoch(s) on {len(x_train):,} "
        "images ==")
    dense = build_model()
    _compile(dense)
    dense.fit(x_train, y_train, batch_size, epochs, verbose=verbose)
    lap("dense")

    recovery = steps - schedule.end_step
    say(f"== 2. Pruning to {sparsity:.0%}: {prune_epochs} epoch(s), "
        f"{steps:,} steps ==")
    say(_wrapped(
        f"The sparsity rises over the first {schedule.end_step:,} steps "
        f"(masks updated every {schedule.frequency} steps); then "
        f"{recovery:,} steps of recovery with the masks fixed, in which the "
        "weights left retrain to make up for those removed."))
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
    lap("prune")

    say(f"== 3. Structured pruning: {shrink_ratio:.0%} of the channels "
        "removed ==")
    say(_wrapped(
        f"plan_pruning and apply_plan remove {shrink_ratio:.0%} of every "
        "layer's channels from the dense CNN (a smaller model, not a mask); "
        f"then {shrink_epochs} epoch(s) of fine-tuning."))
    small = tour.shrink_step(
        dense, (x_train, y_train), (x_test, y_test), shrink_ratio,
        shrink_epochs, batch_size, _compile, verbose, say)
    lap("shrink")

    say("== 4. Measuring on the 10,000 test images, writing the files ==")
    files = []
    with tempfile.TemporaryDirectory() as directory:
        dense_stats = _measure(dense, x_test, y_test, directory, "dense")
        pruned_stats = _measure(stripped, x_test, y_test, directory, "pruned")
        if out_dir is not None:
            os.makedirs(out_dir, exist_ok=True)
        packed = tour.packed_sizes(stripped, out_dir or directory)
    if out_dir is not None:
        files = tour.write_files(out_dir, dense, stripped, small["model"],
                                 schedule, steps)
    lap("measure")
    return {
        "config": {
            "epochs": epochs,
            "prune_epochs": prune_epochs,
            "sparsity": sparsity,
            "train_samples": len(x_train),
            "batch_size": batch_size,
            "seed": seed,
            "shrink_ratio": shrink_ratio,
            "shrink_epochs": shrink_epochs,
            "schedule": schedule.get_config(),
        },
        "dense": dense_stats,
        "pruned": pruned_stats,
        "size_ratio": dense_stats["zipped_bytes"] / pruned_stats["zipped_bytes"],
        "packed": packed,
        "small": small,
        "files": files,
        "seconds": seconds,
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
    """Formats a `run_demo` result as an aligned plain-text table, with what
    it means below.

    Args:
        result: The dict returned by `run_demo`.

    Returns:
        The text, without a trailing newline.
    """
    dense, pruned, small = result["dense"], result["pruned"], result["small"]
    config = result["config"]
    dense_cost, cost = small["dense_cost"], small["cost"]

    def points(accuracy):
        return f"{accuracy:.2%} ({(accuracy - dense['accuracy']) * 100:+.2f} pt)"

    rows = [
        ("", "dense", f"pruned {config['sparsity']:.0%}",
         f"small (-{config['shrink_ratio']:.0%} channels)"),
        ("test accuracy", f"{dense['accuracy']:.2%}", points(pruned["accuracy"]),
         points(small["accuracy"])),
    ]
    for name in dense["weights"]:
        rows.append((f"sparsity {name}", _sparsity(*dense["weights"][name]),
                     _sparsity(*pruned["weights"][name]), ""))
    rows += [
        ("parameters", f"{dense['params']:,}", f"{pruned['params']:,}",
         f"{cost.params:,} ({dense_cost.params / cost.params:.2f}x fewer)"),
        ("non-zero parameters", f"{dense['nonzero_params']:,}",
         f"{pruned['nonzero_params']:,} "
         f"({dense['nonzero_params'] / pruned['nonzero_params']:.2f}x fewer)",
         f"{cost.params:,}"),
        ("MACs per image", f"{dense_cost.macs:,}", "same (dense kernels)",
         f"{cost.macs:,} ({dense_cost.macs / cost.macs:.2f}x fewer)"),
        ("zipped .keras", f"{dense['zipped_bytes']:,} B",
         f"{pruned['zipped_bytes']:,} B ({result['size_ratio']:.2f}x smaller)",
         ""),
    ]
    weights_bytes = 4 * dense["params"]
    for values, label in (("float32", "packed, float32"), ("int8",
                                                            "packed, int8")):
        size = result["packed"][values]
        rows.append((label, f"{weights_bytes:,} B as float32",
                     f"{size:,} B ({weights_bytes / size:.2f}x smaller)", ""))
    latency = small["latency"]
    rows += [
        (f"latency, batch {latency['batch']}",
         f"{latency['dense_s'] * 1e3:.3f} ms", "",
         f"{latency['small_s'] * 1e3:.3f} ms"),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join([row[0].ljust(widths[0])]
                  + [cell.rjust(w) for cell, w in zip(row[1:], widths[1:])])
        .rstrip()
        for row in rows
    ]
    total = config["epochs"] + config["prune_epochs"]
    lines += [""] + [_wrapped(text) for text in (
        f"The pruned model trained {total} epochs in all ({config['epochs']} "
        f"dense, {config['prune_epochs']} pruning and recovery); the small "
        f"one {config['epochs'] + config['shrink_epochs']} "
        f"({config['shrink_epochs']} fine-tuning after the cut).",
        "Zeros in a kernel (unstructured) make the file smaller, not the "
        "model faster: Keras computes with dense kernels. Removing whole "
        "channels (structured) makes the model itself smaller and faster.",
        f"Latency at batch {latency['batch']}, small vs dense: "
        f"{latency['words']}; medians of {latency['rounds']} interleaved "
        "rounds, the interval is the 95 % interval of the ratio.",
    )]
    if result["files"]:
        directory = os.path.dirname(result["files"][0]) or "."
        lines += ["", _wrapped(
            f"Written to {directory}/: "
            + ", ".join(os.path.basename(f) for f in result["files"])),
            "", "Try next:"]
        for what, command in tour.next_commands(directory):
            lines += [f"  # {what}", f"  {command}"]
    return "\n".join(lines)


def _wrapped(text):
    """Prose under 100 columns (paths are not broken)."""
    return textwrap.fill(text, 96, break_long_words=False,
                         break_on_hyphens=False)


def _sparsity(zeros, total):
    return f"{zeros / total:.2%} ({zeros:,}/{total:,})"


# ---- the command -------------------------------------------------------------


def add_parser(commands):
    parser = common.command(
        commands,
        NAME,
        run,
        EXAMPLES,
        description="A tour of what pruning gives. Trains a small CNN on "
        "Fashion-MNIST (the dense baseline); prunes a copy gradually to 90 %% "
        "with PolynomialDecay and UpdatePruningStep and lets it recover with "
        "the masks fixed, strips it (strip_pruning) and packs it "
        "(save_packed, float32 and int8); shrinks another copy (structured "
        "pruning: half of every layer's channels removed, plan_pruning and "
        "apply_plan) and fine-tunes it. Prints the three side by side (test "
        "accuracy, zeros, parameters, MACs, file sizes, latency), writes them "
        "to --out with plots, and the commands to try next.",
    )
    parser.add_argument(
        "--out",
        default=DEFAULT_OUT,
        metavar="DIR",
        help="folder for dense.keras, pruned.keras, small.keras, the packed "
        "files and the plots (created; default: %(default)s)",
    )
    parser.add_argument(
        "--force", action="store_true",
        help="overwrite the files of an earlier run in --out",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"about a minute: {QUICK['train_samples']:,} training images, "
        f"{QUICK['epochs']} dense and {QUICK['prune_epochs']} pruning epochs "
        "(options given explicitly still apply)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        help=f"epochs of dense training (default: {DEFAULTS['epochs']}; "
        f"--quick: {QUICK['epochs']})",
    )
    parser.add_argument(
        "--prune-epochs",
        type=int,
        help="epochs of pruning: the sparsity ramp, then recovery with the "
        f"masks fixed (default: {DEFAULTS['prune_epochs']}; --quick: "
        f"{QUICK['prune_epochs']})",
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
        f"(default: all; --quick: {QUICK['train_samples']:,})",
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
    # Options not given: --quick's, else the full tour's.
    chosen = {**DEFAULTS, "train_samples": None,
              **(QUICK if args.quick else {})}
    for name in QUICK:
        if getattr(args, name) is None:
            setattr(args, name, chosen[name])
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
    _check_out(args)
    if args.quiet:
        verbose = 0
    else:
        # A live progress bar in a terminal, one line per epoch in a log.
        verbose = 1 if sys.stdout.isatty() else 2
    try:
        result = run_demo(**options, seed=args.seed, out_dir=args.out,
                          verbose=verbose)
    except datasets.DataUnavailableError as err:
        raise common.CommandError(str(err)) from None
    if not args.quiet:
        print(f"\n== Results ({keras.backend.backend()} backend) ==")
    print(format_table(result))
    return 0


def _check_out(args):
    """Before any training: --out is a folder (or can be made), and the
    files of an earlier run there are not overwritten without --force."""
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise common.CommandError(
            f"--out {args.out} is a file; name a folder for the demo's files.")
    if not os.path.exists(args.out):
        common.check_writable(args, args.out)  # its parent can take it
        return
    for path in tour.outputs(args.out):
        common.check_writable(args, path)
