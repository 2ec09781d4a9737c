"""The `keras-prune` entry point, importable without Keras.

`keras-prune`, `keras-prune --help` and a mistyped command are answered
here without importing Keras, whose import is a backend's (2.5-6 s and
300-750 MB before this module existed); a command is handed to
`keras_prune.cli.main`, which imports Keras with only the selected backend.

TensorFlow prints start-up lines (absl's "All log messages before
absl::InitializeLog()", oneDNN's notice) that no environment variable
silences in TensorFlow 2.21 (`TF_CPP_MIN_LOG_LEVEL` included); Keras
imports TensorFlow on every backend where it is installed (to recognize its
types when serializing). While TensorFlow is imported, file descriptor 2 is
pointed at /dev/null, unless `-v` / `--verbose` comes first.

This module is outside the `keras_prune` package on purpose: importing
anything inside it runs `keras_prune/__init__.py`, which imports Keras (the
package registers its layers with Keras's serialization when imported).
"""

import argparse
import contextlib
import importlib.abc
import importlib.machinery
import os
import sys

PROG = "keras-prune"
DESCRIPTION = (
    "Pruning for Keras 3 on TensorFlow, JAX and PyTorch. The backend is "
    "chosen by KERAS_BACKEND."
)
VERBOSE = ("-v", "--verbose")

# Every command of keras_prune.cli: its one-line help and its lines in the
# top-level examples. The command modules take their help from here.
COMMANDS = {
    "report": (
        "per-weight sparsity of a saved model: what is prunable, why not, "
        "how many zeros",
        "  keras-prune report model.keras\n",
    ),
    "schedule": (
        "what a pruning schedule does: its mask updates, step by step",
        "  keras-prune schedule polynomial --initial 0.0 --final 0.9 "
        "--end 2000\n",
    ),
    "prune": (
        "one-shot pruning of a saved model; writes it stripped",
        "  keras-prune prune model.keras -o pruned.keras --sparsity 0.8\n",
    ),
    "oneshot": (
        "one-shot pruning with calibration data (Wanda, SparseGPT); writes "
        "it stripped",
        "  keras-prune oneshot model.keras -o pruned.keras --method wanda "
        "--sparsity 0.5 --calibration x.npy\n",
    ),
    "strip": (
        "remove the pruning wrappers of a saved pruned model",
        "  keras-prune strip training.keras -o final.keras\n",
    ),
    "shrink": (
        "structured pruning: remove whole channels, write the smaller model",
        "  keras-prune shrink model.keras -o small.keras --ratio 0.5\n",
    ),
    "compare": (
        "two saved models side by side: parameters, zeros, sizes, latency, "
        "accuracy",
        "  keras-prune compare model.keras pruned.keras --data digits\n",
    ),
    "demo": (
        "a tour: train a CNN on Fashion-MNIST, prune it to 90 %%, pack it, "
        "shrink it; the files in a folder",
        "  keras-prune demo --quick              the tour in about a minute\n"
        "  KERAS_BACKEND=jax keras-prune demo    on JAX (or torch, "
        "tensorflow)\n",
    ),
}


def epilog(overviews):
    """The top-level examples: each command's overview lines, in order."""
    return (
        f"examples:\n{''.join(overviews)}\nRun `{PROG} COMMAND --help` for a "
        f"command's options and examples; `{PROG} -v COMMAND` also shows "
        "TensorFlow's start-up logs.\n"
    )


def top_parser(parser_class=argparse.ArgumentParser):
    """The top-level parser, without the commands' subparsers."""
    return parser_class(
        prog=PROG,
        description=DESCRIPTION,
        epilog=epilog(overview for _, overview in COMMANDS.values()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_verbose(parser):
    """`-v` / `--verbose`, read by `main` before any parsing."""
    parser.add_argument(*VERBOSE, action="store_true",
                        help="also show TensorFlow's start-up logs (given "
                        "before the command)")


def count_or_fraction(text):
    """argparse type of `shrink --target-*`: an int (a count) or a float (a
    fraction)."""
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


def n_m_pattern(text):
    """argparse type of `oneshot --pattern`: "M:N", M zeros in every N
    consecutive weights (`sparsity_m_by_n=(M, N)`), as `(M, N)`."""
    m, colon, n = text.partition(":")
    try:
        m, n = int(m), int(n)
    except ValueError:
        m = n = 0
    if not colon or not 0 < m < n:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an M:N pattern: give M zeros in every N "
            "consecutive weights with 0 < M < N, e.g. 2:4 or 4:8"
        )
    return m, n


# The converters a command's option may use besides int, float and str: the
# light parser rebuilds the options with them (keras_prune.cli.snapshot).
TYPES = {"int": int, "float": float, "str": str,
         "count_or_fraction": count_or_fraction, "n_m_pattern": n_m_pattern}


def _light_parser(command=None):
    """The top-level parser with one subparser per command, empty but for
    `command`'s, which is rebuilt from `keras_prune_cli_parsers`: enough for
    `--help`, a mistyped command, `COMMAND --help` and argparse's usage
    errors of `command`."""
    parser = top_parser()
    add_verbose(parser)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND",
                                     required=True)
    for name, (help_, _) in COMMANDS.items():
        if name != command:
            commands.add_parser(name, help=help_)
            continue
        from keras_prune_cli_parsers import PARSERS

        described = PARSERS[name]
        sub = commands.add_parser(
            name, help=help_, description=described["description"],
            epilog=described["epilog"],
            formatter_class=argparse.RawDescriptionHelpFormatter)
        # argparse's own two groups first, then the command's.
        groups = sub._action_groups + [
            sub.add_argument_group(g["title"], g["description"])
            for g in described["groups"][len(sub._action_groups):]]
        for argument in described["arguments"]:
            argument = dict(argument)
            _add_argument(groups[argument.pop("group")], argument)
    return parser


def _add_argument(group, described):
    """One option or positional argument, as `keras_prune.cli.snapshot`
    described it."""
    kwargs = dict(described)
    names = kwargs.pop("option_strings")
    if names:
        kwargs["required"] = described["required"]
    else:
        names = [kwargs.pop("dest")]
        kwargs.pop("required")
    if "type" in kwargs:
        kwargs["type"] = TYPES[kwargs["type"]] if kwargs["type"] else None
    group.add_argument(*names, **kwargs)


def _loads_plugins(argv):
    """Whether argv names `--plugin` (or an abbreviation argparse accepts):
    a plugin may add choices the written-down parsers do not have."""
    return any(arg.startswith("--p") and "--plugin".startswith(
        arg.split("=")[0]) for arg in argv)


def main(argv=None):
    """Runs `keras-prune` (see `keras_prune.cli.main`): the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    verbose = bool(argv) and argv[0] in VERBOSE
    if verbose:
        argv = argv[1:]
    else:
        quiet_tensorflow()
    command = argv[0] if argv and argv[0] in COMMANDS else None
    if command is None or not _loads_plugins(argv):
        # --help, a usage error: answered here, without Keras.
        try:
            _light_parser(command).parse_args(argv)
        except SystemExit as exit_:
            return exit_.code
    if command is None:  # pragma: no cover (argparse requires a command)
        return 2
    from keras_prune.cli.app import main as run_command

    return run_command(argv)


@contextlib.contextmanager
def stderr_silenced():
    """File descriptor 2 (what C++ libraries write to) at /dev/null until
    the block ends; Python's own `sys.stderr` is flushed first."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class _QuietLoader(importlib.abc.Loader):
    """Runs another loader with stderr silenced, then retires `finder`."""

    def __init__(self, loader, finder):
        self.loader, self.finder = loader, finder

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        try:
            with stderr_silenced():
                self.loader.exec_module(module)
        finally:
            if self.finder in sys.meta_path:
                sys.meta_path.remove(self.finder)


class _QuietTensorFlow(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` on the path as the usual finder does, with a
    loader that imports it with stderr silenced; every other module is left
    to the usual finders. (A look-up that does not import, e.g.
    `importlib.util.find_spec("tensorflow")`, leaves it in place.)"""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader, self)
        return spec


def quiet_tensorflow():
    """TensorFlow's start-up lines off stderr, whenever it is imported in
    this process (nothing if it is imported already)."""
    if "tensorflow" in sys.modules:
        return
    if not any(isinstance(f, _QuietTensorFlow) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlow())


if __name__ == "__main__":
    sys.exit(main())
