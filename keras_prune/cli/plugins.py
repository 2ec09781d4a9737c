"""`--plugin`: user code loaded before the options are read.

A plugin is a module (a dotted name on the Python path) or a Python file;
what it registers when it runs (a criterion, with
`keras_prune.criteria.register`) is then offered like a built-in one: in
`--criterion`'s choices and in `--help`. The command line reads the
`--plugin` values first, loads them, and only then builds its parser.
"""

import contextlib
import importlib
import importlib.util
import os
import re
import sys
import traceback

from keras_prune.cli.common import CommandError
from keras_prune.cli.common import one_line

OPTION = "--plugin"

# The files that ran, by absolute path: a plugin runs once per process (a
# second run would only define again what it registered).
_RAN = set()
# The source files of every plugin loaded (files and modules), to tell an
# error raised in the user's code from one of ours.
_SOURCES = set()


def add_option(parser):
    """Adds `--plugin` (repeatable) to a command that takes a criterion."""
    parser.add_argument(
        OPTION,
        action="append",
        metavar="MODULE_OR_FILE.py",
        help="import this module (a dotted name on the Python path) or run "
        "this Python file first, so that the criteria it registers "
        "(keras_prune.criteria.register) are choices of --criterion "
        "(repeatable)",
    )


def named_in(argv):
    """The `--plugin` values in `argv` (up to a `--`)."""
    found = []
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == OPTION and i + 1 < len(argv):
            found.append(argv[i + 1])
        elif arg.startswith(OPTION + "="):
            found.append(arg[len(OPTION) + 1:])
    return found


def load(plugin):
    """Runs the file or imports the module `plugin` names.

    Raises:
        CommandError: naming the plugin, when it is missing or fails.
    """
    if plugin.endswith(".py") or os.sep in plugin or "/" in plugin:
        _run_file(plugin)
    else:
        _import(plugin)


def _run_file(path):
    where = os.path.abspath(path)
    if where in _RAN:
        return
    if not os.path.isfile(where):
        what = "is a directory" if os.path.isdir(where) else "no such file"
        raise CommandError(
            f"{OPTION} {path}: {what}; name a Python file (e.g. "
            "my_criteria.py) or an importable module."
        )
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(where))[0])
    name = f"keras_prune_plugin_{stem}"
    spec = importlib.util.spec_from_file_location(name, where)
    module = importlib.util.module_from_spec(spec)
    # Registered: classes defined in the file find their module (pickling,
    # dataclasses, error messages).
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        # Whatever the user's code raises, the command fails in one line.
        del sys.modules[name]
        raise CommandError(
            f"{OPTION} {path} failed: {type(err).__name__}: {one_line(err)}"
        ) from None
    _RAN.add(where)
    _SOURCES.add(where)


def _import(name):
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name is not None and (
            name == err.name or name.startswith(err.name + ".")
        ):
            raise CommandError(
                f"{OPTION} {name}: no module named {err.name!r} on the Python "
                "path; give an importable module (see PYTHONPATH) or a file "
                "ending in .py."
            ) from None
        raise CommandError(
            f"{OPTION} {name} failed: ModuleNotFoundError: {one_line(err)}"
        ) from None
    except Exception as err:
        # Whatever the user's code raises, the command fails in one line.
        raise CommandError(
            f"{OPTION} {name} failed: {type(err).__name__}: {one_line(err)}"
        ) from None
    if getattr(module, "__file__", None):
        _SOURCES.add(os.path.abspath(module.__file__))


@contextlib.contextmanager
def failures_named(what):
    """Turns an exception raised in a plugin's code (a criterion's `score`)
    into a one-line CommandError naming `what`, the plugin's file and line;
    exceptions raised elsewhere pass unchanged.

    Example:

    ```python
    with plugins.failures_named("--criterion my_scores"):
        pruned, report = prune_now(model, 0.5, criterion="my_scores")
    ```
    """
    try:
        yield
    except Exception as err:
        frames = [
            frame for frame in traceback.extract_tb(err.__traceback__)
            if os.path.abspath(frame.filename) in _SOURCES
        ]
        if not frames:
            raise
        frame = frames[-1]
        raise CommandError(
            f"{what} failed in plugin code ({frame.filename}, line "
            f"{frame.lineno}, in {frame.name}): {type(err).__name__}: "
            f"{one_line(err)}"
        ) from None
