"""One error path: what the user sees when something goes wrong.

Every error the user can fix is a `UserError` whose message says what, where and how to fix it (exit 2);
`RunFailed` is work that failed for a reason the user can act on, such as a diverged run (exit 1). The CLI
prints either as one line, `stylealign: error: <message>`. Anything else is a bug, in stylealign or in a
library it calls: one line that says so, with the path of the saved traceback, exit 1 (`--debug` re-raises
it instead). This module is the bottom layer: it imports nothing of the kit.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

PROG = "stylealign"


class UserError(Exception):
    """Bad input from the user (a path, a value, a file); the message says what, where and how to fix."""

    exit_code = 2

    def message(self) -> str:
        """The line (or lines) the CLI prints after `stylealign: error: `."""
        return str(self)


class RunFailed(UserError):
    """The work failed for a reason the user can act on (diverged training, a judge that went down)."""

    exit_code = 1


class ConfigError(UserError, ValueError):
    """A recipe, flag or setting has a wrong value; a ValueError too, for callers that catch those."""


class NotFound(UserError, FileNotFoundError):
    """A file or folder the user named (or must provide) does not exist; the message says which and what to do."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


# Errors of the machine rather than of a path the kit chose: the user fixes them wherever they happen.
_ENVIRONMENT = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EMFILE}

_OS_HINTS = {
    errno.EACCES: "permission denied; choose a folder you can write to",
    errno.EPERM: "operation not permitted; choose a folder you can write to",
    errno.EROFS: "read-only file system; choose a writable folder",
    errno.ENOSPC: "no space left on the device; free some space or write elsewhere",
    errno.EDQUOT: "disk quota exceeded; free some space or write elsewhere",
    errno.ENOENT: "no such file or folder",
    errno.EEXIST: "already exists",
    errno.ENOTDIR: "a part of this path is a file, not a folder",
    errno.EISDIR: "is a folder, not a file",
    errno.ELOOP: "a loop of symbolic links; point it at a real file or folder",
    errno.ENAMETOOLONG: "the name is too long; choose a shorter path",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n)",
}


def describe(exc: BaseException) -> tuple[str, int] | None:
    """Return (message, exit code) for an error the user can fix, or None for a bug."""
    if isinstance(exc, UserError):
        return exc.message(), exc.exit_code
    if isinstance(exc, shutil.Error):  # copytree gathers its OS errors as (source, destination, "[Errno N] ...")
        exc = _first_copy_error(exc) or exc
    if isinstance(exc, OSError) and exc.errno is not None and (exc.errno in _ENVIRONMENT or _users_path(exc)):
        return os_message(exc), 2
    return None


def _first_copy_error(exc: shutil.Error) -> OSError | None:
    """Return the first failed copy of a shutil.Error as an OSError naming its destination, if it has an errno."""
    for item in exc.args[0] if exc.args and isinstance(exc.args[0], list) else []:
        found = re.match(r"\[Errno (\d+)\] ([^:]*)", str(item[-1])) if len(item) == 3 else None
        if found:
            return OSError(int(found[1]), found[2], item[1])
    return None


def _users_path(exc: OSError) -> bool:
    """Whether an OS error names a path outside the installed code: a missing file inside the kit or a
    library is a broken install or a bug, never the user's input."""
    if not exc.filename or not isinstance(exc.filename, (str, bytes, os.PathLike)):
        return False
    path = os.path.abspath(os.fsdecode(exc.filename))
    installed = {str(Path(__file__).resolve().parent), sys.prefix, sys.base_prefix}
    return not any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in installed)


def os_message(exc: OSError) -> str:
    """Return an OS error as 'path: what; how to fix' (our own messages pass through unchanged)."""
    if exc.filename is None or exc.errno is None:
        return str(exc)
    path = os.fsdecode(exc.filename)
    hint = _OS_HINTS.get(exc.errno, exc.strerror or str(exc))
    if exc.errno in (errno.EACCES, errno.EPERM) and os.path.isfile(path) and not os.access(path, os.R_OK):
        hint = "cannot be read (permission denied); give yourself read access (chmod u+r) or pass another file"
    return f"{path}: {hint}"


def report_bug(exc: BaseException, log: str | Path | None = None) -> str:
    """Save the traceback (to `log` when given, else a temp file) and return the one line that says where."""
    text = "".join(traceback.format_exception(exc))
    try:
        if log is not None:
            path = Path(log)
            with path.open("a", encoding="utf-8") as f:
                f.write(text)
        else:
            fd, name = tempfile.mkstemp(prefix=f"{PROG}-traceback-", suffix=".txt")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            path = Path(name)
        where = f"traceback saved to {path}"
    except OSError:
        where = "the traceback could not be saved"
    return (f"internal error (a bug in {PROG} or a library it uses, not your input): "
            f"{type(exc).__name__}: {one_line(exc)[:300]}; {where}; rerun with --debug to print it")


def one_line(text: object) -> str:
    """Return `text` with its whitespace (newlines included) collapsed to single spaces."""
    return " ".join(str(text).split())
