"""What the commands share: registration, loading, writing, messages.

Every rule of `keras_prune.cli`'s docstring that is common to several
commands lives here once: loading in safe mode (or with `--unsafe`),
output checks (`.keras`, never an input, `--force`), atomic writes,
progress on stderr, results on stdout, and `CommandError` for a failure
reported in one line.
"""

import argparse
import contextlib
import json
import os
import re
import signal
import sys
import tempfile
import threading
import zipfile

import keras
import keras_prune_cli

from keras_prune.analysis.report import SparsityReport
from keras_prune.deploy import files

# The scope `load_model` itself uses, which restores the previous mode on
# exit; Keras's public switch (`enable_unsafe_deserialization`) cannot be
# undone, so it is only the fallback if a Keras release moves the scope.
try:
    from keras.src.saving.serialization_lib import SafeModeScope
except ImportError:
    SafeModeScope = None

PROG = keras_prune_cli.PROG


class CommandError(Exception):
    """A failure that a command reports in one line, with exit status 1."""


class Parser(argparse.ArgumentParser):
    """argparse's parser, with usage errors in one line (a message passed
    on from a library error may hold line breaks)."""

    def error(self, message):
        super().error(one_line(message, limit=None))


def command(commands, name, run, examples, **kwargs):
    """Adds a command's parser to `commands` (argparse's subparsers).

    Args:
        commands: what `ArgumentParser.add_subparsers` returned.
        name: the command's name.
        run: its handler, `run(args) -> exit status`.
        examples: the epilog (text of examples, shown as it is).
        **kwargs: for `add_parser` (`description`; `help`, by default the
            one `keras_prune_cli.COMMANDS` lists for `name`).

    Returns:
        The command's `ArgumentParser`; `args.handler`, `args.parser` and
        `args.command` are set for the handler.
    """
    if name in keras_prune_cli.COMMANDS:
        # One source for what `keras-prune --help` lists without Keras.
        kwargs.setdefault("help", keras_prune_cli.COMMANDS[name][0])
    parser = commands.add_parser(
        name,
        epilog=examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kwargs,
    )
    parser.set_defaults(handler=run, parser=parser, command=name)
    return parser


def add_unsafe(parser):
    parser.add_argument(
        "--unsafe",
        action="store_true",
        help="load models with safe_mode=False, which runs the Python code "
        "of Lambda layers: only for files you trust",
    )


def add_output(parser):
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


def add_json(parser, what):
    parser.add_argument(
        "--json",
        action="store_true",
        help=f"print {what} as one JSON document instead of a table",
    )


def log(message):
    """A progress line: stderr, so stdout holds only the result."""
    print(message, file=sys.stderr, flush=True)


def print_json(data):
    print(json.dumps(data, indent=2))


@contextlib.contextmanager
def progress_on_stderr():
    """Sends what library code prints (progress lines, Keras's bars) to
    stderr until the block ends."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def progress_verbosity():
    """Keras's `verbose` for progress on stderr: 1 (live bars) in a
    terminal, 2 (plain lines: no ANSI codes or carriage returns, which
    Keras's bars write even into a file) otherwise."""
    return 1 if sys.stderr.isatty() else 2


def load(path, unsafe):
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
    if zipfile.is_zipfile(path):
        check_declared_sizes(path)
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
            f"cannot load {path}: {type(err).__name__}: {one_line(message)}"
        ) from None


# A model's config.json / metadata.json: far below this in any real model.
MAX_CONFIG_BYTES = 64 * 2**20
# DEFLATE expands at most ~1032x; more declared means a damaged archive.
MAX_RATIO = 1100


def check_declared_sizes(path):
    """A CommandError before anything is read when the archive declares
    members larger than it can hold (a damaged or hostile .keras file that
    would take minutes and gigabytes to fail)."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise CommandError(
            f"cannot load {path}: a damaged zip archive ({one_line(err)})."
        ) from None
    limit = os.path.getsize(path) * MAX_RATIO + 2**20
    for info in infos:
        small = info.filename.endswith(".json")
        if info.file_size > (MAX_CONFIG_BYTES if small else limit):
            raise CommandError(
                f"cannot load {path}: its member {info.filename} declares "
                f"{info.file_size:,} bytes, more than "
                + ("a model's config holds" if small else
                   "a file of this size can hold")
                + " (damaged or not a Keras model)."
            )


def one_line(text, limit=400):
    """`text` (an error message) on one line: whitespace runs collapsed,
    cut at `limit` characters (`None`: not cut)."""
    flat = " ".join(str(text).split())
    if limit is None or len(flat) <= limit:
        return flat
    return flat[: limit - 1] + "…"


@contextlib.contextmanager
def unsafe_deserialization():
    """Lets Keras deserialize Lambda layers until the command ends.

    `load_model(safe_mode=False)` covers the load only, but cloning the
    model (`prune`) deserializes its layers again.
    """
    if SafeModeScope is None:
        keras.config.enable_unsafe_deserialization()
        yield
        return
    with SafeModeScope(safe_mode=False):
        yield


def report(model, path):
    """The model's SparsityReport, or a CommandError naming `path`."""
    try:
        return SparsityReport(model)
    except (TypeError, ValueError) as err:
        raise CommandError(f"cannot report on {path}: {err}") from None


def check_output(args, path, inputs):
    """Usage error for a bad output name, failure if it cannot be written."""
    if not path.endswith(".keras"):
        args.parser.error(
            f"the output {path!r} must end in .keras: Keras saves whole "
            "models as .keras files."
        )
    if is_one_of(path, inputs):
        args.parser.error(
            f"the output {path} is the input file; write to another file "
            "(an input file is never modified)."
        )
    check_writable(args, path)


def is_one_of(path, sources):
    """Whether `path` names the same existing file as one of `sources`."""
    return os.path.exists(path) and any(
        source and os.path.exists(source) and os.path.samefile(source, path)
        for source in sources
    )


def check_writable(args, path):
    """A CommandError if `path` is a directory, exists without `--force`,
    or lies in a directory that does not exist."""
    if os.path.isdir(path):
        raise CommandError(f"{path} is a directory; name an output file.")
    if os.path.exists(path) and not args.force:
        raise CommandError(f"{path} exists; pass --force to overwrite it.")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CommandError(
            f"cannot write {path}: the directory {directory} does not exist."
        )
    try:  # before any work: a read-only or forbidden directory
        with tempfile.TemporaryFile(prefix=SCRATCH, dir=directory):
            pass
    except OSError as err:
        raise CommandError(
            f"cannot write {path}: the directory {directory} cannot be "
            f"written ({err.strerror or err}); choose another output."
        ) from None


# Scratch folders beside an output: ".keras-prune-<pid>-<random>", so that a
# later run can tell one left by a killed process (SIGKILL) and remove it.
SCRATCH = ".keras-prune-"
_STALE = re.compile(r"^\.keras-prune-(\d+)-")


class Terminated(BaseException):
    """SIGTERM arrived while a file was being written (`timeout`, CI
    cancellation): raised so that the scratch files are removed on the way
    out; the command exits with 128 + 15."""


@contextlib.contextmanager
def terminate_cleanly():
    """Inside, SIGTERM raises `Terminated` instead of killing the process
    at once (the main thread only; the previous handler comes back)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def write_atomically(path, write):
    """Calls `write(temporary_path)`, then moves that file to `path`.

    The temporary file has `path`'s name (model.save and matplotlib go by
    the extension) inside a fresh directory beside `path`: on the same file
    system, so `os.replace` swaps it in at once. If `write` fails, `path`
    is left as it was.
    """
    directory = os.path.dirname(os.path.abspath(path))
    files.remove_stale(directory, _STALE)
    with terminate_cleanly(), tempfile.TemporaryDirectory(
            prefix=f"{SCRATCH}{os.getpid()}-", dir=directory) as scratch:
        temporary = os.path.join(scratch, os.path.basename(path))
        try:
            write(temporary)
        except Exception as err:
            # Any failure of the writer (disk full, a layer that cannot be
            # saved) is reported in one line; the temporary file goes.
            raise CommandError(
                f"cannot write {path}: {type(err).__name__}: "
                f"{one_line(err)}"
            ) from None
        os.replace(temporary, path)
