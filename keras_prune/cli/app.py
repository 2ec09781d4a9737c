"""The `keras-prune` parser: one subcommand per module, and dispatch.

A command is a module of this package with `NAME`, `add_parser(commands)`
and `run(args)`, and its one-line help and top-level examples in
`keras_prune_cli.COMMANDS` (read by `keras-prune --help` without Keras);
`TAKES_PLUGINS = True` if it loads `--plugin`s. Adding one is the module
and its entries in `COMMANDS` and there. A command registered from outside
the package (`register`) brings its own `OVERVIEW`.
"""

import signal
import sys

import keras_prune_cli
from keras_prune.cli import common
from keras_prune.cli import compare
from keras_prune.cli import demo
from keras_prune.cli import oneshot
from keras_prune.cli import plugins
from keras_prune.cli import prune
from keras_prune.cli import report
from keras_prune.cli import schedule
from keras_prune.cli import shrink
from keras_prune.cli import strip

COMMANDS = [
    report,
    schedule,
    prune,
    oneshot,
    strip,
    shrink,
    compare,
    demo,
]


def register(command):
    """Adds a command: a module (or object) with `NAME`, `OVERVIEW`,
    `add_parser(commands)` and `run(args)`, as this package's are.

    Raises:
        ValueError: if it lacks one of them or its name is taken.
    """
    missing = [
        a for a in ("NAME", "OVERVIEW", "add_parser", "run")
        if not hasattr(command, a)
    ]
    if missing:
        raise ValueError(
            f"A command needs NAME, OVERVIEW, add_parser and run; {command!r} "
            f"lacks {missing}."
        )
    if any(c.NAME == command.NAME for c in COMMANDS):
        raise ValueError(
            f"A command named {command.NAME!r} exists already; choose "
            "another name."
        )
    COMMANDS.append(command)
    return command


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
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] and argv[0] in keras_prune_cli.VERBOSE:
        argv = argv[1:]  # (TensorFlow's logs: see keras_prune_cli)
    # Only the command is positional at the top level: argv[0] names it.
    name = argv[0] if argv else None
    try:
        command = next((c for c in COMMANDS if c.NAME == name), None)
        if getattr(command, "TAKES_PLUGINS", False):
            # Before the parser is built: what the plugins register is
            # among the choices it offers.
            for plugin in plugins.named_in(argv):
                plugins.load(plugin)
        args = build_parser().parse_args(argv)
        if getattr(args, "unsafe", False):
            with common.unsafe_deserialization():
                return args.handler(args)
        return args.handler(args)
    except common.CommandError as err:
        print(f"{common.PROG} {name}: error: "
              f"{common.one_line(err, limit=None)}", file=sys.stderr)
        return 1
    except common.Terminated:
        print(f"{common.PROG} {name}: terminated (SIGTERM) while writing; "
              "the partial file was removed, the output left as it was",
              file=sys.stderr)
        return 128 + signal.SIGTERM
    except SystemExit as exit_:
        # argparse exits on --help (0) and on usage errors (2); return the
        # status instead, so that main() can be called in-process.
        return exit_.code


def build_parser():
    """The `keras-prune` parser, with every command of `COMMANDS`."""
    parser = keras_prune_cli.top_parser(common.Parser)
    parser.epilog = keras_prune_cli.epilog(overview(c) for c in COMMANDS)
    keras_prune_cli.add_verbose(parser)
    commands = parser.add_subparsers(
        title="commands", metavar="COMMAND", required=True
    )
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def overview(command):
    """A command's lines in the top-level examples."""
    if command.NAME in keras_prune_cli.COMMANDS:
        return keras_prune_cli.COMMANDS[command.NAME][1]
    return command.OVERVIEW
