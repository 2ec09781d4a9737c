"""The commands' parsers as data, for `keras-prune COMMAND --help` without
Keras.

`keras_prune_cli` answers `--help`, no command and a mistyped one without
importing Keras; a command's own help and its argparse-level usage errors
(a missing argument, an unknown option, a value that is not a number or
not one of the choices) need that command's parser, whose choices and
defaults come from the library (`cli/choices.py`), which imports Keras. So
the parsers are written down as data in `keras_prune_cli_parsers.py` (a
generated module beside `keras_prune_cli`), from which the light entry
point rebuilds them; a test checks that the file describes the parsers the
package builds, and that help and errors are the same text both ways.
Checks that need the library (a value's range, a file's contents) still run
in the command, after Keras is imported.

argparse has no public way to read a parser back: its `_actions`,
`_action_groups` and action classes are read here (stable since Python 3.2;
if they change, the tests that compare both parsers' texts fail).

Regenerate after changing a command's options:

    python -m keras_prune.cli.snapshot --write
"""

import argparse
import os
import pprint
import sys

import keras_prune_cli
from keras_prune.cli import app

# argparse's action classes by the `action=` name that makes them.
_ACTIONS = {
    argparse._StoreAction: "store",
    argparse._StoreTrueAction: "store_true",
    argparse._StoreFalseAction: "store_false",
    argparse._StoreConstAction: "store_const",
    argparse._AppendAction: "append",
    argparse._ExtendAction: "extend",
    argparse._CountAction: "count",
}
# The types a rebuilt parser can convert with: builtins, and the light
# module's converters (named as in `keras_prune_cli.TYPES`).
_TYPES = {None: None, int: "int", float: "float", str: "str"}


def describe(parser=None):
    """Every command's parser as plain data: {name: description}."""
    parser = parser or app.build_parser()
    (commands,) = [a for a in parser._actions
                   if isinstance(a, argparse._SubParsersAction)]
    return {name: _parser(sub) for name, sub in commands.choices.items()
            if name in keras_prune_cli.COMMANDS}


def _parser(parser):
    if parser._mutually_exclusive_groups:
        raise NotImplementedError(
            f"{parser.prog}: mutually exclusive groups are not described; "
            "extend keras_prune.cli.snapshot.")
    groups = parser._action_groups
    # The help lists each group's arguments; the usage line all of them in
    # the order they were added: kept, each with its group's index.
    return {
        "description": parser.description,
        "epilog": parser.epilog,
        "groups": [{"title": g.title, "description": g.description}
                   for g in groups],
        "arguments": [
            dict(_action(a), group=next(i for i, g in enumerate(groups)
                                        if a in g._group_actions))
            for a in parser._actions
            if not isinstance(a, argparse._HelpAction)
        ],
    }


def _action(action):
    kind = _ACTIONS.get(type(action))
    if kind is None:
        raise NotImplementedError(
            f"{action.dest}: action {type(action).__name__} is not "
            "described; extend keras_prune.cli.snapshot.")
    found = {"option_strings": list(action.option_strings),
             "dest": action.dest, "action": kind, "help": action.help,
             "default": _value(action.default), "required": action.required}
    if kind in ("store", "append", "extend"):
        found.update(nargs=action.nargs, metavar=_value(action.metavar),
                     type=_type(action), choices=_value(action.choices))
    if kind in ("store_const", "append_const"):
        found["const"] = _value(action.const)
    return found


def _type(action):
    if action.type in _TYPES:
        return _TYPES[action.type]
    name = getattr(action.type, "__name__", None)
    if keras_prune_cli.TYPES.get(name) is not action.type:
        raise NotImplementedError(
            f"{action.dest}: type {action.type!r} is not one the light "
            "parser has; define it in keras_prune_cli.TYPES and use it "
            "from there.")
    return name


def _value(value):
    """A Python literal: tuples stay tuples (a default's text in the help
    depends on it), other sequences (a registry's keys) become lists."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple):
        return tuple(_value(v) for v in value)
    if isinstance(value, (list, type({}.keys()))):
        return [_value(v) for v in value]
    raise NotImplementedError(f"{value!r} is not a literal the light "
                              "parser can hold.")


def source(parsers=None):
    """The text of `keras_prune_cli_parsers.py`."""
    parsers = describe() if parsers is None else parsers
    return (
        '"""The commands\' parsers as data (generated: do not edit).\n\n'
        "Written by `python -m keras_prune.cli.snapshot --write` from the "
        "parsers\nkeras_prune.cli builds; read by keras_prune_cli. "
        "tests/test_cli_startup.py\nchecks that it is current.\n"
        '"""\n\n'
        f"PARSERS = {pprint.pformat(parsers, width=79, sort_dicts=False)}\n"
    )


def path():
    """Where the light entry point reads the parsers from."""
    return os.path.join(os.path.dirname(keras_prune_cli.__file__),
                        "keras_prune_cli_parsers.py")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--write"]:
        with open(path(), "w") as file:
            file.write(source())
        print(f"wrote {path()}")
    else:
        sys.stdout.write(source())
    return 0


if __name__ == "__main__":
    sys.exit(main())
