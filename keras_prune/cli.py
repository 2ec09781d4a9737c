"""The `keras-prune` command.

One subcommand per job, each registered by an `_add_*` function that builds
its parser and names its handler. A handler takes the parsed arguments and
returns the exit status: 0 success, 1 failure (a missing or unreadable file,
an output that exists, missing data), 2 usage error (argparse's own
convention).

The commands that read and write models share these rules:

- a model loads with `keras.saving.load_model(path, safe_mode=True)`; a file
  with a Lambda layer, which Keras refuses in safe mode, loads with
  `--unsafe` (for files you trust);
- an input file is only read, never written;
- an output must end in `.keras`, is never overwritten without `--force`,
  and is written atomically: saved in a fresh temporary directory beside it,
  then moved into place with `os.replace`, so a failed run leaves the old
  file (or none) and no partial one;
- results go to stdout (with `--json`, one JSON document); progress and
  "wrote ..." lines go to stderr.
"""

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
import zipfile

import keras
import numpy as np

from keras_prune import compression
from keras_prune import datasets
from keras_prune import demo
from keras_prune import sizes
from keras_prune.datasets import DataUnavailableError
from keras_prune.oneshot import prune_now
from keras_prune.preview import preview
from keras_prune.pruning import pruned_layers
from keras_prune.pruning import strip_pruning
from keras_prune.report import SparsityReport
from keras_prune.schedules import ConstantSparsity
from keras_prune.schedules import PolynomialDecay

PROG = "keras-prune"

# Untimed predict_on_batch calls per model and batch size before timing:
# the first call compiles (TensorFlow, JAX), the next ones fill caches.
WARMUP_CALLS = 3
DATA_SETS = ("digits", "fashion_mnist", "mnist_5k")

_DEMO_EXAMPLES = """\
examples:
  keras-prune demo                      the full demo (under 3 minutes on 2 CPU cores)
  keras-prune demo --train-samples 2000 --epochs 1 --prune-epochs 2
                                        a quick run on a subset
  keras-prune demo --sparsity 0.8 --seed 1
  KERAS_BACKEND=jax keras-prune demo    on JAX (or torch, tensorflow)
"""

_REPORT_EXAMPLES = """\
examples:
  keras-prune report model.keras        every weight: prunable or not (and why), zeros
  keras-prune report pruned.keras --json
                                        the same as one JSON document on stdout
  keras-prune report custom.keras --unsafe
                                        a file you trust that holds a Lambda layer
  keras-prune report pruned.keras --sizes
                                        + dense, .keras, zipped and packed sizes
"""

_SCHEDULE_EXAMPLES = """\
examples:
  keras-prune schedule polynomial       0 -> 80 % over steps 0..1000, masks
                                        updated every 100 steps
  keras-prune schedule polynomial --initial 0.5 --final 0.9 \\
      --begin 2000 --end 4000 --steps 5000
                                        half of the weights go at once, at 2000
  keras-prune schedule constant --target 0.5 --begin 1000 --frequency 200
  keras-prune schedule polynomial --power 1 --plot schedule.png
                                        a linear ramp, also drawn to schedule.png
  keras-prune schedule polynomial --json
"""

_PRUNE_EXAMPLES = """\
examples:
  keras-prune prune model.keras -o pruned.keras --sparsity 0.8
                                        80 % of all prunable weights, with one
                                        magnitude threshold across layers
  keras-prune prune model.keras -o pruned.keras --sparsity 0.5 \\
      --scope layer --exclude logits    50 % of every kernel but layer "logits"
  keras-prune prune model.keras -o pruned.keras --sparsity 0.9 --force
                                        overwrite pruned.keras
  keras-prune prune model.keras -o pruned.keras --sparsity 0.8 --json
"""

_STRIP_EXAMPLES = """\
examples:
  keras-prune strip training.keras -o final.keras
                                        a model saved during pruning (with its wrappers
                                        and masks) as plain Keras layers, zeros baked in
"""

_COMPARE_EXAMPLES = """\
examples:
  keras-prune compare model.keras pruned.keras
                                        parameters, zeros, file and zipped size, latency
  keras-prune compare model.keras pruned.keras --data digits
                                        and test accuracy on scikit-learn's 8x8 digits
  keras-prune compare model.keras pruned.keras --repeats 0 --json
                                        sizes only, as JSON
"""

_EXAMPLES = """\
examples:
  keras-prune report model.keras
  keras-prune schedule polynomial --initial 0.0 --final 0.9 --end 2000
  keras-prune prune model.keras -o pruned.keras --sparsity 0.8
  keras-prune strip training.keras -o final.keras
  keras-prune compare model.keras pruned.keras --data digits
  keras-prune demo --train-samples 2000 --epochs 1 --prune-epochs 2
                                        a quick run of the demo
  KERAS_BACKEND=jax keras-prune demo    on JAX (or torch, tensorflow)

Run `keras-prune COMMAND --help` for a command's options and examples.
"""


class CommandError(Exception):
    """A failure that a command reports in one line, with exit status 1."""


def main(argv=None):
    """Runs `keras-prune` with the given arguments.

    Args:
        argv: The arguments after the program name; `None` reads `sys.argv`.

    Returns:
        The exit status: 0 success, 1 failure, 2 usage error.

    Example:

    ```python
    status = main(["report", "model.keras", "--json"])
    status = main(["demo", "--train-samples", "2000", "--epochs", "1"])
    ```
    """
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        if getattr(args, "unsafe", False):
            with _unsafe_deserialization():
                return args.handler(args)
        return args.handler(args)
    except CommandError as err:
        print(f"{PROG} {args.command}: error: {err}", file=sys.stderr)
        return 1
    except SystemExit as exit_:
        # argparse exits on --help (0) and on usage errors (2); return the
        # status instead, so that main() can be called in-process.
        return exit_.code


def _build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Pruning for Keras 3 on TensorFlow, JAX and PyTorch. "
        "The backend is chosen by KERAS_BACKEND.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(
        title="commands", metavar="COMMAND", required=True
    )
    _add_report(commands)
    _add_schedule(commands)
    _add_prune(commands)
    _add_strip(commands)
    _add_compare(commands)
    _add_demo(commands)
    return parser


def _command(commands, name, handler, examples, **kwargs):
    parser = commands.add_parser(
        name,
        epilog=examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kwargs,
    )
    parser.set_defaults(handler=handler, parser=parser, command=name)
    return parser


def _add_unsafe(parser):
    parser.add_argument(
        "--unsafe",
        action="store_true",
        help="load models with safe_mode=False, which runs the Python code "
        "of Lambda layers: only for files you trust",
    )


def _add_output(parser):
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT.keras",
        help="where to write the model (must end in .keras)",
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite OUT.keras if it exists"
    )


def _add_json(parser, what):
    parser.add_argument(
        "--json",
        action="store_true",
        help=f"print {what} as one JSON document instead of a table",
    )


# ---- report ----------------------------------------------------------------


def _add_report(commands):
    parser = _command(
        commands,
        "report",
        _run_report,
        _REPORT_EXAMPLES,
        help="per-weight sparsity of a saved model: what is prunable, why "
        "not, how many zeros",
        description="Prints the SparsityReport of a saved Keras model, dense, "
        "pruned (with pruning wrappers) or stripped: for every weight its "
        "shape, zeros, sparsity and whether keras_prune prunes it (and if "
        "not, why: bias, normalization statistic, ...), then totals with "
        "and without the weights that are not prunable.",
    )
    parser.add_argument("model", metavar="MODEL.keras", help="a saved model")
    parser.add_argument(
        "--sizes",
        action="store_true",
        help="also measure the sizes that show the pruning "
        "(keras_prune.model_size of the stripped model): dense bytes, "
        ".keras file, zipped .keras, packed float32 and int8 files; under "
        "--json as the key \"sizes\"",
    )
    _add_json(parser, "the report (SparsityReport.to_dict())")
    _add_unsafe(parser)


def _run_report(args):
    model = _load(args.model, args.unsafe)
    report = _report(model, args.model)
    size = None
    if args.sizes:
        _log(f"measuring the sizes of {args.model} (temporary files)")
        # The loaded copy is ours: stripping it touches nothing of the user's.
        try:
            size = compression.model_size(
                strip_pruning(model) if pruned_layers(model) else model
            )
        except (TypeError, ValueError) as err:
            raise CommandError(
                f"cannot measure the sizes of {args.model}: {err}"
            ) from None
    if args.json:
        data = report.to_dict()
        if size is not None:
            data["sizes"] = size.to_dict()
        print(json.dumps(data, indent=2))
    else:
        print(f"{args.model} (model {model.name!r})\n")
        print(report.summary())
        if size is not None:
            print("\nsizes (stripped model):")
            print(size.summary())
    return 0


# ---- schedule --------------------------------------------------------------


def _add_schedule(commands):
    parser = _command(
        commands,
        "schedule",
        _run_schedule,
        _SCHEDULE_EXAMPLES,
        help="what a pruning schedule does: its mask updates, step by step",
        description="Previews a pruning schedule (keras_prune.preview): the "
        "steps at which the masks are updated and the sparsity each update "
        "applies; between updates the masks hold. Values are checked as "
        "PolynomialDecay / ConstantSparsity check them.",
    )
    parser.add_argument(
        "kind",
        choices=("polynomial", "constant"),
        help="polynomial: PolynomialDecay, sparsity rises from --initial to "
        "--final between --begin and --end; constant: ConstantSparsity, "
        "every update prunes to --final",
    )
    parser.add_argument(
        "--initial",
        type=float,
        help="polynomial only: the sparsity applied at --begin, at once "
        "(default: 0.0)",
    )
    parser.add_argument(
        "--final",
        "--target",
        dest="final",
        type=float,
        default=0.8,
        help="polynomial: the sparsity reached at --end; constant: the "
        "sparsity of every update (default: %(default)s)",
    )
    parser.add_argument(
        "--begin",
        type=int,
        default=0,
        help="training step of the first mask update (default: %(default)s)",
    )
    parser.add_argument(
        "--end",
        type=int,
        help="polynomial: the step at which --final is reached (default: "
        "--begin + 1000); constant: the last step at which masks may be "
        "updated, -1 for no end (default: -1)",
    )
    parser.add_argument(
        "--frequency",
        type=int,
        default=100,
        help="training steps between mask updates (default: %(default)s)",
    )
    parser.add_argument(
        "--power",
        type=float,
        help="polynomial only: the exponent of the ramp; 1 is linear, 3 "
        "prunes fast at first and slowly near --end (default: 3)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        metavar="N",
        help="training steps to preview (default: --end + --frequency; "
        "without an end, --begin + 10 x --frequency)",
    )
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        help="also draw target and actual sparsity per step to this file "
        "(needs matplotlib)",
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite the --plot file"
    )
    _add_json(parser, "the preview (SchedulePreview.to_dict())")


def _run_schedule(args):
    try:
        schedule = _schedule(args)
        steps = args.steps
        if steps is None:
            if schedule.end_step == -1:
                steps = schedule.begin_step + 10 * schedule.frequency
            else:
                steps = schedule.end_step + schedule.frequency
        shown = preview(schedule, steps)
    except ValueError as err:
        args.parser.error(str(err))
    if args.plot:
        _check_writable(args, args.plot)
        try:
            from keras_prune import plots  # noqa: F401
        except ImportError as err:
            raise CommandError(
                f"--plot needs matplotlib (pip install keras-prune[plots]): "
                f"{err}"
            ) from None
    print(json.dumps(shown.to_dict(), indent=2) if args.json else shown.to_text())
    if args.plot:
        _write_atomically(args.plot, shown.plot)
        _log(f"wrote {args.plot}")
    return 0


def _schedule(args):
    if args.kind == "constant":
        for flag, value in (("--initial", args.initial), ("--power", args.power)):
            if value is not None:
                raise ValueError(
                    f"{flag} applies to polynomial only; constant prunes to "
                    "--final (or --target) at every update."
                )
        end = -1 if args.end is None else args.end
        return ConstantSparsity(args.final, args.begin, end, args.frequency)
    return PolynomialDecay(
        initial_sparsity=0.0 if args.initial is None else args.initial,
        final_sparsity=args.final,
        begin_step=args.begin,
        end_step=args.begin + 1000 if args.end is None else args.end,
        power=3 if args.power is None else args.power,
        frequency=args.frequency,
    )


# ---- prune -----------------------------------------------------------------


def _add_prune(commands):
    parser = _command(
        commands,
        "prune",
        _run_prune,
        _PRUNE_EXAMPLES,
        help="one-shot magnitude pruning of a saved model; writes it stripped",
        description="Prunes a trained model at once, without training "
        "(keras_prune.prune_now, by weight magnitude), strips the pruning "
        "wrappers and writes a plain Keras model whose pruned weights are "
        "exact zeros, then prints its SparsityReport. The output is not "
        "compiled, and fine-tuning it as it is lets the zeros grow back: to "
        "fine-tune with the masks held, prune in Python (prune_now) and "
        "strip after training.",
    )
    parser.add_argument(
        "model", metavar="MODEL.keras", help="the model to prune (only read)"
    )
    _add_output(parser)
    parser.add_argument(
        "--sparsity",
        type=float,
        required=True,
        help="fraction of prunable weights set to zero, in [0, 1), e.g. 0.8",
    )
    parser.add_argument(
        "--scope",
        choices=("global", "layer"),
        default="global",
        help="global: one magnitude threshold across all layers, so layers "
        "get different sparsities; layer: every weight pruned to --sparsity "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--exclude",
        nargs="+",
        action="extend",
        metavar="NAME",
        help="names of layers to leave dense (repeatable)",
    )
    _add_json(parser, "the report")
    _add_unsafe(parser)


def _run_prune(args):
    if not 0 <= args.sparsity < 1:
        args.parser.error(
            f"--sparsity must be in [0, 1), got {args.sparsity}: it is the "
            "fraction of prunable weights set to zero, e.g. 0.8."
        )
    _check_output(args, args.output, [args.model])
    model = _load(args.model, args.unsafe)
    if pruned_layers(model):
        raise CommandError(
            f"{args.model} is already pruned (it holds pruning wrappers): run "
            "`keras-prune strip` on it first, then prune the stripped model."
        )
    try:
        pruned, report = prune_now(
            model, args.sparsity, scope=args.scope, exclude=args.exclude
        )
    except ValueError as err:
        args.parser.error(str(err))
    _write_atomically(args.output, strip_pruning(pruned).save)
    _log(
        f"wrote {args.output}: pruned to {report.prunable_sparsity:.1%} of "
        "its prunable weights, stripped (plain Keras layers), not compiled"
    )
    print(report.to_json() if args.json else report.summary())
    return 0


# ---- strip -----------------------------------------------------------------


def _add_strip(commands):
    parser = _command(
        commands,
        "strip",
        _run_strip,
        _STRIP_EXAMPLES,
        help="remove the pruning wrappers of a saved pruned model",
        description="Loads a model saved with its pruning wrappers (e.g. "
        "during training with prune_low_magnitude), bakes the masks into the "
        "weights (exact zeros), removes the wrappers (keras_prune."
        "strip_pruning) and writes a plain Keras model, then prints its "
        "SparsityReport.",
    )
    parser.add_argument(
        "model",
        metavar="PRUNED.keras",
        help="a model with pruning wrappers (only read)",
    )
    _add_output(parser)
    _add_json(parser, "the report")
    _add_unsafe(parser)


def _run_strip(args):
    _check_output(args, args.output, [args.model])
    model = _load(args.model, args.unsafe)
    if not pruned_layers(model):
        raise CommandError(
            f"{args.model} has no pruning wrappers (it is dense or already "
            "stripped): there is nothing to strip."
        )
    stripped = strip_pruning(model)
    _write_atomically(args.output, stripped.save)
    _log(f"wrote {args.output}: {len(pruned_layers(model))} pruning wrappers removed")
    report = _report(stripped, args.output)
    print(report.to_json() if args.json else report.summary())
    return 0


# ---- compare ---------------------------------------------------------------


def _add_compare(commands):
    parser = _command(
        commands,
        "compare",
        _run_compare,
        _COMPARE_EXAMPLES,
        help="two saved models side by side: parameters, zeros, sizes, "
        "latency, accuracy",
        description="Compares two saved models: parameters and non-zero "
        "parameters, file size and zipped size (the file zipped with "
        "DEFLATE, as tfmot's pruning tutorial measures: a .keras file "
        "stores zeros densely, so pruning shows in the zipped size), "
        "latency (median time of predict_on_batch on random inputs, after "
        f"{WARMUP_CALLS} warm-up calls) and, with --data, test accuracy. "
        "Keras computes with dense kernels: unstructured zeros make a model "
        "smaller once compressed, not faster.",
    )
    parser.add_argument("a", metavar="A.keras", help="the first model, e.g. dense")
    parser.add_argument(
        "b", metavar="B.keras", help="the second model, e.g. pruned"
    )
    parser.add_argument(
        "--data",
        choices=DATA_SETS,
        help="also measure test accuracy on this offline data set; images "
        "are reshaped to the model's input if the number of values matches",
    )
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=[1, 32],
        metavar="N",
        help="batch sizes to time (default: 1 32)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=20,
        metavar="N",
        help="timed calls per model and batch size; 0 skips the latency "
        "(default: %(default)s)",
    )
    _add_json(parser, "the comparison")
    _add_unsafe(parser)


def _run_compare(args):
    if args.repeats < 0:
        args.parser.error(
            f"--repeats must be 0 (no latency) or more, got {args.repeats}."
        )
    if any(batch < 1 for batch in args.batch_sizes):
        args.parser.error(
            f"--batch-sizes must be at least 1, got {args.batch_sizes}."
        )
    paths = [args.a, args.b]
    models = [_load(path, args.unsafe) for path in paths]
    data = None
    if args.data:
        try:
            _, (x_test, y_test) = datasets.load(args.data)
        except DataUnavailableError as err:
            raise CommandError(str(err)) from None
        classes = int(y_test.max()) + 1
        data = [
            _fit_data(model, path, x_test, args.data, classes)
            for model, path in zip(models, paths)
        ]
    results = [_measure_file(model, path) for model, path in zip(models, paths)]
    if args.repeats:
        _time_models(models, paths, args.batch_sizes, args.repeats, results)
    if data is not None:
        for model, path, x, result in zip(models, paths, data, results):
            _log(f"evaluating {path} on {len(x):,} {args.data} test images")
            with contextlib.redirect_stdout(sys.stderr):  # Keras's bar
                scores = model.predict(x, batch_size=256, verbose=1)
            result["accuracy"] = float(np.mean(np.argmax(scores, -1) == y_test))
    comparison = {
        "backend": keras.backend.backend(),
        "a": results[0],
        "b": results[1],
        "latency": None
        if not args.repeats
        else {
            "method": "predict_on_batch",
            "unit": "seconds",
            "statistic": "median",
            "warmup": WARMUP_CALLS,
            "repeats": args.repeats,
            "batch_sizes": list(args.batch_sizes),
        },
        "data": None
        if data is None
        else {"name": args.data, "test_samples": int(len(y_test))},
    }
    if args.json:
        print(json.dumps(comparison, indent=2))
    else:
        print(_comparison_table(comparison))
    return 0


def _measure_file(model, path):
    report = _report(model, path)
    optimizer = getattr(model, "optimizer", None)
    return {
        "path": path,
        "model": model.name,
        "params": report.all_total,
        "nonzero_params": report.nonzero,
        "prunable_sparsity": report.prunable_sparsity,
        "file_bytes": sizes.file_size(path),
        "zipped_bytes": sizes.zipped_size(path),
        "optimizer_values": 0
        if optimizer is None
        else sum(math.prod(v.shape) for v in optimizer.variables),
        "latency_s": None,
        "accuracy": None,
    }


def _time_models(models, paths, batch_sizes, repeats, results):
    try:
        for batch in batch_sizes:
            inputs = [sizes.random_inputs(model, batch) for model in models]
            _log(
                f"timing predict_on_batch, batch size {batch}: {WARMUP_CALLS} "
                f"warm-up and {repeats} timed calls per model"
            )
            bar = _progress_bar(repeats, "round")
            found = sizes.predict_latency(
                models, inputs, repeats, WARMUP_CALLS, progress=bar
            )
            for result, seconds in zip(results, found):
                result["latency_s"] = dict(result["latency_s"] or {})
                result["latency_s"][str(batch)] = seconds
    except ValueError as err:
        _log(f"latency not measured: {err}")
        for result in results:
            result["latency_s"] = None


def _fit_data(model, path, x, name, classes):
    """`x` shaped for `model`'s input, or a CommandError saying why not."""
    inputs = getattr(model, "inputs", None) or []
    outputs = getattr(model, "outputs", None) or []
    if len(inputs) != 1 or len(outputs) != 1:
        raise CommandError(
            f"{path} has {len(inputs)} input(s) and {len(outputs)} output(s); "
            f"accuracy on {name} needs one image input and one output of "
            f"{classes} class scores. Leave out --data to compare the rest."
        )
    out_shape = tuple(outputs[0].shape)
    if len(out_shape) != 2 or out_shape[-1] != classes:
        raise CommandError(
            f"{path} outputs shape {out_shape}; accuracy on {name} needs "
            f"{classes} class scores per image, shape (None, {classes}). "
            "Leave out --data to compare the rest."
        )
    shape = tuple(inputs[0].shape)[1:]
    sample = x.shape[1:]
    if len(shape) == len(sample) and all(
        d is None or d == s for d, s in zip(shape, sample)
    ):
        return x
    if None not in shape and math.prod(shape) == math.prod(sample):
        return x.reshape((len(x),) + shape)
    raise CommandError(
        f"{path} takes inputs of shape {shape}, but {name} images have "
        f"shape {sample} ({math.prod(sample)} values); they cannot be "
        "reshaped to fit. Compare models made for this data set, or leave "
        "out --data to compare the rest."
    )


def _comparison_table(comparison):
    a, b = comparison["a"], comparison["b"]
    names = [a["path"], b["path"]]
    short = [os.path.basename(n) for n in names]
    if short[0] != short[1]:
        names = short
    rows = [("", names[0], names[1], "B vs A")]
    rows.append(("parameters", f"{a['params']:,}", f"{b['params']:,}", ""))
    rows.append(
        (
            "non-zero parameters",
            f"{a['nonzero_params']:,}",
            f"{b['nonzero_params']:,}",
            _ratio(a["nonzero_params"], b["nonzero_params"], "fewer", "more"),
        )
    )
    rows.append(
        (
            "prunable sparsity",
            f"{a['prunable_sparsity']:.2%}",
            f"{b['prunable_sparsity']:.2%}",
            "",
        )
    )
    for label, key in (("file size", "file_bytes"), ("zipped size", "zipped_bytes")):
        rows.append(
            (
                label,
                f"{a[key]:,} B",
                f"{b[key]:,} B",
                _ratio(a[key], b[key], "smaller", "larger"),
            )
        )
    if comparison["latency"] is not None and a["latency_s"] is not None:
        for batch in comparison["latency"]["batch_sizes"]:
            ta, tb = a["latency_s"][str(batch)], b["latency_s"][str(batch)]
            rows.append(
                (
                    f"latency, batch {batch}",
                    f"{ta * 1000:.3f} ms",
                    f"{tb * 1000:.3f} ms",
                    _ratio(ta, tb, "faster", "slower"),
                )
            )
    if comparison["data"] is not None:
        data = comparison["data"]
        rows.append(
            (
                f"accuracy ({data['name']}, {data['test_samples']:,} test images)",
                f"{a['accuracy']:.2%}",
                f"{b['accuracy']:.2%}",
                f"{(b['accuracy'] - a['accuracy']) * 100:+.2f} points",
            )
        )
    rows.append(
        (
            "optimizer state in file",
            f"{a['optimizer_values']:,} values",
            f"{b['optimizer_values']:,} values",
            "",
        )
    )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(
            [row[0].ljust(widths[0])]
            + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:])]
        ).rstrip()
        for row in rows
    ]
    if a["optimizer_values"] != b["optimizer_values"]:
        lines.append(
            "note: the files hold different optimizer state, which counts in "
            "their sizes; compare models saved alike (e.g. both uncompiled) "
            "to see what pruning saves."
        )
    if comparison["latency"] is not None and a["latency_s"] is not None:
        latency = comparison["latency"]
        lines.append(
            f"latency: median of {latency['repeats']} predict_on_batch calls "
            f"after {latency['warmup']} warm-up calls, random inputs, "
            f"{comparison['backend']} backend"
        )
    return "\n".join(lines)


def _ratio(a, b, better, worse):
    """How B compares with A, e.g. "2.50x smaller" (A / B) or "1.20x larger"."""
    if a == b:
        return "same"
    if a == 0 or b == 0:
        return ""
    ratio = max(a, b) / min(a, b)
    if f"{ratio:.2f}" == "1.00":
        return "about the same"
    return f"{ratio:.2f}x {better if a > b else worse}"


# ---- shared ----------------------------------------------------------------


def _log(message):
    print(message, file=sys.stderr, flush=True)


def _progress_bar(total, unit):
    """A `keras.utils.Progbar` drawn on stderr; call it with the count done.

    stdout carries only the result (a table, or JSON with `--json`). In a
    terminal the bar redraws in place; in a log it prints a line at most
    every 10 seconds.
    """
    with contextlib.redirect_stdout(sys.stderr):  # Progbar checks isatty()
        bar = keras.utils.Progbar(total, unit_name=unit, interval=10.0)

    def update(done):
        with contextlib.redirect_stdout(sys.stderr):
            bar.update(done)

    return update


def _load(path, unsafe):
    """Loads a saved model, or raises a CommandError saying why it cannot."""
    if not os.path.exists(path):
        raise CommandError(f"{path}: no such file.")
    if os.path.isdir(path):
        raise CommandError(
            f"{path} is a directory, not a saved Keras model (a .keras file)."
        )
    if path.endswith(".keras") and not zipfile.is_zipfile(path):
        raise CommandError(
            f"{path} is not a Keras file: a .keras file is a zip archive "
            "(written by model.save('name.keras')), and this one is not."
        )
    try:
        return keras.saving.load_model(path, safe_mode=not unsafe)
    except Exception as err:
        # Whatever Keras raises (bad archive, unknown class, ...), the
        # command fails with its message in one line, not a traceback.
        message = str(err)
        if "safe_mode" in message:
            what = "a Lambda layer" if "Lambda" in message else "a Python lambda"
            raise CommandError(
                f"{path} holds {what}, whose Python code Keras does not load "
                "in safe mode, since loading it can run arbitrary code. If "
                "you trust the file, pass --unsafe (loads with "
                "safe_mode=False)."
            ) from None
        raise CommandError(
            f"cannot load {path}: {type(err).__name__}: {message}"
        ) from None


@contextlib.contextmanager
def _unsafe_deserialization():
    """Lets Keras deserialize Lambda layers until the command ends.

    `load_model(safe_mode=False)` covers the load only, but cloning the
    model (`prune`) deserializes its layers again. Keras's public switch,
    `keras.config.enable_unsafe_deserialization()`, cannot be undone, so use
    the scope `load_model` itself uses, which restores the previous mode;
    fall back to the public switch if a Keras release moves the scope.
    """
    try:
        from keras.src.saving.serialization_lib import SafeModeScope
    except ImportError:
        keras.config.enable_unsafe_deserialization()
        yield
        return
    with SafeModeScope(safe_mode=False):
        yield


def _report(model, path):
    try:
        return SparsityReport(model)
    except (TypeError, ValueError) as err:
        raise CommandError(f"cannot report on {path}: {err}") from None


def _check_output(args, path, inputs):
    """Usage error for a bad output name, failure if it cannot be written."""
    if not path.endswith(".keras"):
        args.parser.error(
            f"the output {path!r} must end in .keras: Keras saves whole "
            "models as .keras files."
        )
    for source in inputs:
        if (
            os.path.exists(source)
            and os.path.exists(path)
            and os.path.samefile(source, path)
        ):
            args.parser.error(
                f"the output {path} is the input file; write to another file "
                "(an input file is never modified)."
            )
    _check_writable(args, path)


def _check_writable(args, path):
    if os.path.isdir(path):
        raise CommandError(f"{path} is a directory; name an output file.")
    if os.path.exists(path) and not args.force:
        raise CommandError(f"{path} exists; pass --force to overwrite it.")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CommandError(
            f"cannot write {path}: the directory {directory} does not exist."
        )


def _write_atomically(path, write):
    """Calls `write(temporary_path)`, then moves that file to `path`.

    The temporary file has `path`'s name (model.save and matplotlib go by
    the extension) inside a fresh directory beside `path`: on the same file
    system, so `os.replace` swaps it in at once. If `write` fails, `path`
    is left as it was.
    """
    directory = os.path.dirname(os.path.abspath(path))
    with tempfile.TemporaryDirectory(prefix=".keras-prune-", dir=directory) as scratch:
        temporary = os.path.join(scratch, os.path.basename(path))
        try:
            write(temporary)
        except Exception as err:
            # Any failure of the writer (disk full, a layer that cannot be
            # saved) is reported in one line; the temporary file goes.
            raise CommandError(
                f"cannot write {path}: {type(err).__name__}: {err}"
            ) from None
        os.replace(temporary, path)


# ---- demo ------------------------------------------------------------------


def _add_demo(commands):
    parser = commands.add_parser(
        "demo",
        help="train a CNN on Fashion-MNIST, prune it to 90 %%, strip it and "
        "compare accuracy and size",
        description="Trains a small CNN on Fashion-MNIST (the dense baseline), "
        "prunes a copy gradually with PolynomialDecay and UpdatePruningStep, "
        "lets it recover with the masks fixed, strips it with strip_pruning "
        "and prints dense vs pruned: test accuracy, sparsity of every "
        "prunable weight, parameter counts and zipped .keras sizes.",
        epilog=_DEMO_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = demo.DEFAULTS
    parser.add_argument(
        "--epochs",
        type=int,
        default=defaults["epochs"],
        help="epochs of dense training (default: %(default)s)",
    )
    parser.add_argument(
        "--prune-epochs",
        type=int,
        default=defaults["prune_epochs"],
        help="epochs of pruning: the sparsity ramp, then recovery with the "
        "masks fixed (default: %(default)s)",
    )
    parser.add_argument(
        "--sparsity",
        type=float,
        default=defaults["sparsity"],
        help="final sparsity of every prunable weight, in [0, 1) "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--train-samples",
        type=int,
        metavar="N",
        help="train on the first N of the 60,000 images (default: all)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=defaults["batch_size"],
        help="training batch size (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=defaults["seed"],
        help="random seed (default: %(default)s)",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="print only the result table, no progress",
    )
    parser.set_defaults(handler=_run_demo, parser=parser, command="demo")


def _run_demo(args):
    options = dict(
        epochs=args.epochs,
        prune_epochs=args.prune_epochs,
        sparsity=args.sparsity,
        train_samples=args.train_samples,
        batch_size=args.batch_size,
    )
    try:
        demo.check_options(**options)
    except ValueError as err:
        args.parser.error(str(err))
    if args.quiet:
        verbose = 0
    else:
        # A live progress bar in a terminal, one line per epoch in a log.
        verbose = 1 if sys.stdout.isatty() else 2
    try:
        result = demo.run_demo(**options, seed=args.seed, verbose=verbose)
    except DataUnavailableError as err:
        print(f"{PROG} demo: error: {err}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(f"\n== Results ({keras.backend.backend()} backend) ==")
    print(demo.format_table(result))
    return 0
