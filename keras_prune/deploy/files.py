"""Files written and read safely: paths checked before any work, temporary
files that a killed process leaves recognized and removed, archive members
whose declared size is checked before they are read, and the exceptions a
damaged file raises while it is read (so that a caller reports them in one
line)."""

import contextlib
import os
import shutil
import zipfile
import zlib


def remove_stale(directory, pattern):
    """Removes what killed processes left in `directory`: the entries whose
    name `pattern` (a compiled regex whose group 1 is a pid) matches and
    whose process is gone (SIGKILL gave it no chance to clean up). A live
    process's entries, and this process's, stay."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for entry in names:
        found = pattern.match(entry)
        if not found or int(found.group(1)) == os.getpid() or _alive(
                int(found.group(1))):
            continue
        path = os.path.join(directory, entry)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.remove(path)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # someone else's process: alive
        return True
    return True


class Damaged(ValueError):
    """A file whose contents contradict themselves."""


# What a damaged file raises while it is read and unpacked.
DAMAGE = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, KeyError,
          TypeError, IndexError, AttributeError, OverflowError, EOFError,
          MemoryError, Damaged)


def checked_path(path, caller):
    """`path` as a str, or an error naming `caller` and what was given."""
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(
            f"{caller}: path must be a str or os.PathLike, got "
            f"{type(path).__name__}: {path!r}."
        ) from None
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not path:
        raise ValueError(f"{caller}: path is empty; give a file path.")
    return path


def member(archive, name, limit):
    """A member's bytes, its declared size checked first (a damaged or
    hostile zip may declare gigabytes)."""
    info = archive.getinfo(name)
    if info.file_size > limit:
        raise Damaged(
            f"member {name!r} declares {info.file_size:,} bytes, more than "
            f"the {limit:,} this file can hold")
    return archive.read(name)
