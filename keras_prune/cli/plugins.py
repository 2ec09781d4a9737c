"""`--plugin`: user code loaded before the options are read.

A plugin is a module (a dotted name on the Python path) or a Python file;
what it registers when it runs (a criterion, with
`keras_prune.criteria.register`) is then offered like a built-in one: in
`--criterion`'s choices and in `--help`. The command line reads the
`--plugin` values first, loads them, and only then builds its parser.
"""

import importlib
import importlib.util
import os
import re
import sys

from keras_prune.cli.common import CommandError

OPTION = "--plugin"

# The files that ran, by absolute path: a plugin runs once per process (a
# second run would only define again what it registered).
_RAN = set()


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
            f"{OPTION} {path} failed: {type(err).__name__}: {err}"
        ) from None
    _RAN.add(where)


def _import(name):
    try:
        importlib.import_module(name)
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
            f"{OPTION} {name} failed: ModuleNotFoundError: {err}"
        ) from None
    except Exception as err:
        # Whatever the user's code raises, the command fails in one line.
        raise CommandError(
            f"{OPTION} {name} failed: {type(err).__name__}: {err}"
        ) from None
