"""The `keras-prune` command.

One subcommand per job, each registered by an `_add_*` function that builds
its parser and names its handler. A handler takes the parsed arguments and
returns the exit status: 0 success, 1 failure (e.g. missing data), 2 usage
error (argparse's own convention).
"""

import argparse
import sys

import keras

from keras_prune import demo
from keras_prune.datasets import DataUnavailableError

PROG = "keras-prune"

_DEMO_EXAMPLES = """\
examples:
  keras-prune demo                      the full demo (under 3 minutes on 2 CPU cores)
  keras-prune demo --train-samples 2000 --epochs 1 --prune-epochs 2
                                        a quick run on a subset
  keras-prune demo --sparsity 0.8 --seed 1
  KERAS_BACKEND=jax keras-prune demo    on JAX (or torch, tensorflow)
"""


def main(argv=None):
    """Runs `keras-prune` with the given arguments.

    Args:
        argv: The arguments after the program name; `None` reads `sys.argv`.

    Returns:
        The exit status: 0 success, 1 failure, 2 usage error.

    Example:

    ```python
    status = main(["demo", "--train-samples", "2000", "--epochs", "1"])
    ```
    """
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        return args.handler(args)
    except SystemExit as exit_:
        # argparse exits on --help (0) and on usage errors (2); return the
        # status instead, so that main() can be called in-process.
        return exit_.code


def _build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Pruning for Keras 3 on TensorFlow, JAX and PyTorch. "
        "The backend is chosen by KERAS_BACKEND.",
        epilog=_DEMO_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(
        title="commands", metavar="COMMAND", required=True
    )
    _add_demo(commands)
    return parser


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
    parser.set_defaults(handler=_run_demo, parser=parser)


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
