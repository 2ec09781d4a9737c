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

from keras_prune.deploy import compression
from keras_prune import datasets
from keras_prune import demo
from keras_prune.deploy import sizes
from keras_prune import structured
from keras_prune.datasets import DataUnavailableError
from keras_prune.methods.oneshot import prune_now
from keras_prune.analysis.preview import preview
from keras_prune.core.layers import pruned_layers
from keras_prune.core.models import strip_pruning
from keras_prune.analysis.report import SparsityReport
from keras_prune.core.schedules import ConstantSparsity
from keras_prune.core.schedules import PolynomialDecay

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

_SHRINK_EXAMPLES = """\
examples:
  keras-prune shrink model.keras -o small.keras
                                        remove half the channels of every prunable
                                        group (--ratio 0.5, by L2 norm)
  keras-prune shrink model.keras -o small.keras --target-macs 0.5 --round-to 8
                                        at most half the MACs, channel counts
                                        multiples of 8
  keras-prune shrink model.keras -o small.keras --threshold 0.3 \\
      --granularity 8 --min-num-filters 16 --exclude conv1
                                        NVIDIA TAO's rule (plan_by_threshold)
  keras-prune shrink model.keras -o small.keras --save-plan plan.json
  keras-prune shrink model.keras -o edited.keras --plan plan.json
                                        replay a saved (maybe edited) plan
  keras-prune shrink model.keras -o small.keras --fold-bn --json
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
  keras-prune shrink model.keras -o small.keras --ratio 0.5
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
    _add_shrink(commands)
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
            from keras_prune.analysis import plots  # noqa: F401
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


# ---- shrink ----------------------------------------------------------------

# `verify` runs on this many inputs from sizes.random_inputs (standard
# normal; zeros for integer inputs) with this seed: the same batch each run.
VERIFY_BATCH = 4
VERIFY_SEED = 0
_RATIO_OR_TARGET = "--ratio and --target-params/--target-macs"
_PLANNING = "planning (--ratio, --target-*, --threshold)"
# dest -> (flag, the modes it belongs to), to refuse it elsewhere.
_SHRINK_OPTIONS = {
    "criterion": ("--criterion", _RATIO_OR_TARGET),
    "round_to": ("--round-to", _RATIO_OR_TARGET),
    "scope": ("--scope", _RATIO_OR_TARGET),
    "reduction": ("--reduction", _RATIO_OR_TARGET),
    "seed": ("--seed", _RATIO_OR_TARGET),
    "granularity": ("--granularity", "--threshold (TAO mode)"),
    "min_num_filters": ("--min-num-filters", "--threshold (TAO mode)"),
    "equalization": ("--equalization", "--threshold (TAO mode)"),
    "normalizer": ("--normalizer", _PLANNING),
    "ignore": ("--ignore/--exclude", _PLANNING),
}
_SHRINK_MODE_OPTIONS = {
    "--ratio": {"criterion", "round_to", "scope", "reduction", "seed",
                "normalizer", "ignore"},
    "--threshold": {"granularity", "min_num_filters", "equalization",
                    "normalizer", "ignore"},
    "--plan": set(),
}
_SHRINK_MODE_OPTIONS["--target-params/--target-macs"] = (
    _SHRINK_MODE_OPTIONS["--ratio"]
)


def _add_shrink(commands):
    parser = _command(
        commands,
        "shrink",
        _run_shrink,
        _SHRINK_EXAMPLES,
        help="structured pruning: remove whole channels, write the smaller "
        "model",
        description="Plans structured pruning of a saved Functional or "
        "Sequential model (keras_prune.structured: which channels of each "
        "channel group go, and why), cuts them out (apply_plan) and writes "
        "the smaller model: plain Keras layers with fewer filters and "
        "units, not compiled. Prints the plan, the parameters and MACs "
        "before and after, and verify's max abs difference between the "
        "smaller model and the original with the removed channels zeroed, "
        f"on {VERIFY_BATCH} random inputs (standard normal, seed "
        f"{VERIFY_SEED}; about 1e-6 or less: exactly the planned channels "
        "went). How much goes: --ratio (default 0.5), --target-params / "
        "--target-macs, --threshold (NVIDIA TAO's rule) or --plan (a saved "
        "plan, replayed). Fine-tune the smaller model before use.",
    )
    parser.add_argument(
        "model", metavar="MODEL.keras", help="the model to shrink (only read)"
    )
    _add_output(parser)
    how = parser.add_argument_group(
        "how much to remove (one of these; default: --ratio 0.5)"
    )
    how.add_argument(
        "--ratio",
        type=float,
        metavar="R",
        help="fraction of the channels removed, in [0, 1): of every "
        "prunable group (--scope layer, the default here), or of all "
        "channels, lowest normalized scores first (--scope global)",
    )
    how.add_argument(
        "--target-params",
        type=_count_or_fraction,
        metavar="N|F",
        help="remove the least important channels until the parameters are "
        "at most N (an integer) or the fraction F (a decimal in (0, 1]) of "
        "the model's; may go with --target-macs",
    )
    how.add_argument(
        "--target-macs",
        type=_count_or_fraction,
        metavar="N|F",
        help="the same for the multiply-accumulates of one sample "
        "(keras_prune.model_cost), e.g. 0.5: at most half",
    )
    how.add_argument(
        "--threshold",
        type=float,
        metavar="T",
        help="TAO mode (plan_by_threshold): keep the channels whose "
        "normalized L2 score is above T (not a fraction), at least "
        "--min-num-filters, a multiple of --granularity",
    )
    how.add_argument(
        "--plan",
        metavar="PLAN.json",
        help="replay this plan (written by --save-plan, maybe edited) "
        "instead of planning; it must have been made for this model",
    )
    ranked = parser.add_argument_group(
        "with --ratio or --target-params/--target-macs"
    )
    ranked.add_argument(
        "--criterion",
        choices=("l1", "l2", "bn", "random"),
        help="channel importance: the L1 or L2 norm of the channel's "
        "weights, the |gamma| of its BatchNormalization, or random "
        "(default: l2). Not taylor, which needs training data: plan in "
        "Python with plan_pruning(..., criterion='taylor', data=...), save "
        "the plan with to_json and replay it with --plan",
    )
    ranked.add_argument(
        "--round-to",
        type=int,
        metavar="N",
        help="round every group's kept channels UP to a multiple of N",
    )
    ranked.add_argument(
        "--scope",
        choices=("layer", "global"),
        help="layer: the same fraction of every group; global: one ranking "
        "over all groups (default: layer with --ratio, global with targets)",
    )
    ranked.add_argument(
        "--reduction",
        choices=("mean", "sum", "max"),
        help="how the scores of a group's layers combine (default: mean)",
    )
    ranked.add_argument(
        "--seed", type=int, help="seed of --criterion random (default: 0)"
    )
    tao = parser.add_argument_group("with --threshold (TAO mode)")
    tao.add_argument(
        "--granularity",
        type=int,
        metavar="N",
        help="kept channels per group are a multiple of N, or the whole "
        "group (default: 8)",
    )
    tao.add_argument(
        "--min-num-filters",
        type=int,
        metavar="N",
        help="never keep fewer channels of a group, unless it is smaller "
        "(default: 16)",
    )
    tao.add_argument(
        "--equalization",
        choices=("union", "intersection", "arithmetic_mean", "geometric_mean"),
        help="how the normalized scores of a group's layers merge: max, "
        "min, mean or geometric mean (default: union)",
    )
    planning = parser.add_argument_group("when planning (not with --plan)")
    planning.add_argument(
        "--normalizer",
        choices=("max", "l2", "off"),
        help="how scores are normalized, per layer (default: max)",
    )
    planning.add_argument(
        "--ignore",
        "--exclude",
        dest="ignore",
        nargs="+",
        action="extend",
        metavar="NAME",
        help="layers whose output channels are never removed (repeatable; "
        "--exclude is the same option, TAO's excluded_layers)",
    )
    written = parser.add_argument_group("what is written")
    written.add_argument(
        "--save-plan",
        metavar="PLAN.json",
        help="also write the plan (PruningPlan.to_json), to read, edit and "
        "replay with --plan; not overwritten without --force",
    )
    written.add_argument(
        "--fold-bn",
        action="store_true",
        help="also fold each BatchNormalization into the convolution or "
        "Dense before it (keras_prune.fold_batchnorm): fewer layers, the "
        "same predictions; for inference, after training",
    )
    _add_json(parser, "the groups, parameters, MACs and verify difference")
    _add_unsafe(parser)


def _count_or_fraction(text):
    """argparse type of --target-*: an int (a count) or a float (a fraction)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid count or fraction: {text!r}"
        ) from None


def _run_shrink(args):
    mode = _shrink_mode(args)
    inputs = [args.model] if args.plan is None else [args.model, args.plan]
    _check_output(args, args.output, inputs)
    if args.save_plan:
        _check_plan_output(args)
    plan = _read_plan(args.plan) if args.plan else None
    model = _load(args.model, args.unsafe)
    graph, x = _check_shrinkable(model, args.model)
    if plan is None:
        _log(f"planning ({mode})")
        plan = _plan(model, args)
    else:
        try:
            plan.check_model(graph)
        except ValueError as err:
            raise CommandError(
                f"the plan {args.plan} does not fit {args.model}: {err} "
                "(Leave out --plan to plan anew; --save-plan keeps the plan.)"
            ) from None
    _log("cutting out the removed channels (apply_plan)")
    written = structured.apply_plan(model, plan)
    folding = None
    if args.fold_bn:
        _log("folding BatchNormalization (fold_batchnorm)")
        folding = structured.fold_batchnorm(written)
        written = folding.model
    _log(f"verifying on {VERIFY_BATCH} random inputs")
    difference = structured.verify(model, plan, x, written)
    before = structured.model_cost(model)
    after = structured.model_cost(written)
    _write_atomically(args.output, written.save)
    folded = ""
    if folding is not None:
        folded = f", {len(folding.folded)} BatchNormalization folded"
    _log(
        f"wrote {args.output}: {before.params:,} -> {after.params:,} "
        f"parameters{folded}, plain Keras layers, not compiled"
    )
    if args.save_plan:
        _write_atomically(args.save_plan, plan.to_json)
        _log(f"wrote {args.save_plan}")
    result = {
        "backend": keras.backend.backend(),
        "model": args.model,
        "output": args.output,
        "plan": args.plan,
        "saved_plan": args.save_plan,
        "settings": plan.settings,
        "params": _before_after(before.params, after.params),
        "macs": dict(
            _before_after(before.macs, after.macs),
            uncounted=[c.path for c in before.uncounted],
        ),
        "groups": [
            {
                "name": g["name"],
                "channels": g["size"],
                "kept": sum(g["keep"]),
                "removed": g["size"] - sum(g["keep"]),
                "blocked": g["blocked"],
            }
            for g in plan.groups
        ],
        "verify": {
            "max_abs_difference": difference,
            "inputs": VERIFY_BATCH,
            "seed": VERIFY_SEED,
        },
        "fold_bn": None if folding is None else folding.to_dict(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(_shrink_text(result, plan, folding))
    return 0


def _shrink_mode(args):
    """Checks the options, before any work; returns the mode in words."""
    targets = (args.target_params, args.target_macs)
    given = [
        flag
        for flag, chosen in (
            ("--ratio", args.ratio is not None),
            ("--target-params/--target-macs", targets != (None, None)),
            ("--threshold", args.threshold is not None),
            ("--plan", args.plan is not None),
        )
        if chosen
    ]
    if len(given) > 1:
        args.parser.error(
            "give one of --ratio, --target-params/--target-macs, "
            f"--threshold or --plan, not {' and '.join(given)}."
        )
    mode = given[0] if given else "--ratio"
    replayed = " (a saved plan is replayed as it is)" if mode == "--plan" else ""
    for dest, (flag, where) in _SHRINK_OPTIONS.items():
        if getattr(args, dest) is not None and dest not in _SHRINK_MODE_OPTIONS[mode]:
            args.parser.error(
                f"{flag} does not apply with {mode}{replayed}: it is an "
                f"option of {where}."
            )
    if mode == "--ratio":
        args.ratio = 0.5 if args.ratio is None else args.ratio
        if not 0 <= args.ratio < 1:
            args.parser.error(
                f"--ratio must be in [0, 1), got {args.ratio}: it is the "
                "fraction of channels removed, e.g. 0.5."
            )
    for flag, value in zip(("--target-params", "--target-macs"), targets):
        # An int is a count, a float a fraction (as plan_pruning takes them).
        if value is None or 0 < value <= (1 if isinstance(value, float) else math.inf):
            continue
        fix = "e.g. 0.5 for half the model's"
        if isinstance(value, float) and 1 < value < math.inf:
            fix = f"write a count as an integer: {flag} {int(value)}"
        args.parser.error(
            f"{flag} must be a positive integer (a count) or a fraction in "
            f"(0, 1] (of the model's), got {value}; {fix}."
        )
    for flag, value, low in (
        ("--round-to", args.round_to, 1),
        ("--granularity", args.granularity, 1),
        ("--min-num-filters", args.min_num_filters, 0),
    ):
        if value is not None and value < low:
            args.parser.error(f"{flag} must be at least {low}, got {value}.")
    if args.threshold is not None and not args.threshold >= 0:
        args.parser.error(
            f"--threshold must be 0 or more, got {args.threshold}: the "
            "channels whose normalized score is above it are kept."
        )
    if mode == "--ratio":
        return f"ratio {args.ratio}"
    if mode == "--threshold":
        return f"TAO mode, threshold {args.threshold}"
    if mode == "--plan":
        return f"replaying {args.plan}"
    return "budget: " + ", ".join(
        f"{what} <= {value:,}"
        if isinstance(value, int)
        else f"{what} <= {value} of the model's"
        for what, value in zip(("parameters", "MACs per sample"), targets)
        if value is not None
    )


def _check_plan_output(args):
    path = args.save_plan
    if os.path.abspath(path) == os.path.abspath(args.output):
        args.parser.error(
            f"--save-plan {path} is the output model too; name another "
            "file, e.g. plan.json."
        )
    if _is_one_of(path, (args.model, args.plan)):
        args.parser.error(
            f"--save-plan {path} is an input file; write to another file "
            "(an input file is never modified)."
        )
    _check_writable(args, path)


def _read_plan(path):
    """The PruningPlan in a JSON file, or a CommandError saying why not."""
    if not os.path.exists(path):
        raise CommandError(f"{path}: no such file.")
    try:
        with open(path) as f:
            config = json.load(f)
        plan = structured.PruningPlan.from_config(config)
        plan.kept()
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError) as err:
        raise CommandError(
            f"{path} is not a pruning plan (the JSON of PruningPlan.to_json, "
            f"as --save-plan writes it): {type(err).__name__}: {err}"
        ) from None
    return plan


def _check_shrinkable(model, path):
    """The model's ChannelGraph and the verify batch, or a CommandError."""
    wrappers = pruned_layers(model)
    if wrappers:
        raise CommandError(
            f"{path} holds pruning wrappers ({len(wrappers)} "
            "PruneLowMagnitude layers): run `keras-prune strip` on it first, "
            "then shrink the stripped model."
        )
    try:
        graph = structured.channel_groups(model)
    except ValueError as err:
        raise CommandError(f"cannot shrink {path}: {err}") from None
    try:
        x = sizes.random_inputs(model, VERIFY_BATCH, seed=VERIFY_SEED)
    except ValueError as err:
        raise CommandError(
            f"cannot shrink {path}: {err} shrink checks the smaller model on "
            "random inputs of the model's input shape: save the model with "
            "a fixed input shape, e.g. keras.Input((224, 224, 3))."
        ) from None
    return graph, x


def _plan(model, args):
    ignore = args.ignore or ()
    normalizer = args.normalizer or "max"
    try:
        if args.threshold is not None:
            return structured.plan_by_threshold(
                model,
                threshold=args.threshold,
                granularity=8 if args.granularity is None else args.granularity,
                min_num_filters=16
                if args.min_num_filters is None
                else args.min_num_filters,
                equalization_criterion=args.equalization or "union",
                normalizer=normalizer,
                excluded_layers=ignore,
            )
        return structured.plan_pruning(
            model,
            ratio=args.ratio,
            criterion=args.criterion or "l2",
            round_to=args.round_to,
            ignored_layers=ignore,
            scope=args.scope,
            reduction=args.reduction or "mean",
            normalizer=normalizer,
            seed=args.seed or 0,
            target_params=args.target_params,
            target_macs=args.target_macs,
        )
    except ValueError as err:
        # The options passed the checks above; what is left is about this
        # model: a layer name not in it, a budget below its smallest size.
        args.parser.error(str(err))


def _before_after(before, after):
    return {
        "before": before,
        "after": after,
        "reduction": before / after if after else None,
    }


def _shrink_text(result, plan, folding):
    rows = [("", "before", "after", "")]
    for label, key, better in (
        ("parameters", "params", "fewer"),
        ("MACs per sample", "macs", "fewer"),
    ):
        a, b = result[key]["before"], result[key]["after"]
        rows.append((label, f"{a:,}", f"{b:,}", _ratio(a, b, better, "more")))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [plan.summary(), ""]
    lines += [
        "  ".join(
            [row[0].ljust(widths[0])]
            + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:])]
        ).rstrip()
        for row in rows
    ]
    if result["macs"]["uncounted"]:
        lines.append(
            "MACs not counted (no rule in model_cost): "
            + ", ".join(result["macs"]["uncounted"])
        )
    check = result["verify"]
    lines.append(
        f"verify: max abs difference {check['max_abs_difference']:.3g} "
        "between the smaller model and the original with the removed "
        f"channels zeroed ({check['inputs']} random inputs, seed "
        f"{check['seed']})"
    )
    if folding is not None:
        lines += ["", folding.summary()]
    return "\n".join(lines)


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
    if _is_one_of(path, inputs):
        args.parser.error(
            f"the output {path} is the input file; write to another file "
            "(an input file is never modified)."
        )
    _check_writable(args, path)


def _is_one_of(path, sources):
    """Whether `path` names the same existing file as one of `sources`."""
    return os.path.exists(path) and any(
        source and os.path.exists(source) and os.path.samefile(source, path)
        for source in sources
    )


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
