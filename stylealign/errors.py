"""One place for what the user sees when something goes wrong: a line naming what, where and how to fix.

Code raises `UserError` (bad input: exit 2) or `RunFailed` (the work itself failed, e.g. a non-finite
loss: exit 1); `describe` also turns the kit's own validation errors (DataError, PersonaError, recipe
ValueErrors) and OS errors on user paths into such a line. The CLI prints it as
`stylealign: error: <message>`; `stylealign --debug ...` re-raises instead, showing the traceback.
"""

from __future__ import annotations

import errno

PROG = "stylealign"


class UserError(Exception):
    """Bad input from the user (a path, a value, a file); the message says what, where and how to fix."""

    exit_code = 2


class RunFailed(UserError):
    """The work failed for a reason the user can act on (diverged training, a judge that went down)."""

    exit_code = 1


class ConfigError(UserError, ValueError):
    """A recipe or setting has a wrong value; a ValueError too, for callers that catch those."""


_OS_HINTS = {
    errno.EACCES: "permission denied; choose a folder you can write to",
    errno.EPERM: "operation not permitted; choose a folder you can write to",
    errno.EROFS: "read-only file system; choose a writable folder",
    errno.ENOSPC: "no space left on the device; free some space or write elsewhere",
    errno.ENOENT: "no such file or folder",
    errno.EEXIST: "already exists",
    errno.ENOTDIR: "a part of this path is a file, not a folder",
    errno.EISDIR: "is a folder, not a file",
}


def describe(exc: BaseException) -> tuple[str, int] | None:
    """Return (message, exit code) for an error the user can fix, or None for a bug (show the traceback)."""
    from stylealign.data import DataError
    from stylealign.personas import PersonaError

    if isinstance(exc, DataError):
        return f"data problems ({len(exc.problems)}), found before the step that reads them wrote anything:\n{exc}", 2
    if isinstance(exc, UserError):
        return str(exc), exc.exit_code
    if isinstance(exc, (PersonaError, ValueError)):
        return str(exc), 2
    if isinstance(exc, OSError):
        return os_message(exc), 2
    return None


def os_message(exc: OSError) -> str:
    """Return an OS error as 'path: what; how to fix' (our own messages pass through unchanged)."""
    if exc.filename is None or exc.errno is None:
        return str(exc)
    hint = _OS_HINTS.get(exc.errno, exc.strerror or str(exc))
    return f"{exc.filename}: {hint}"


def one_line(text: object) -> str:
    """Return `text` with its whitespace (newlines included) collapsed to single spaces."""
    return " ".join(str(text).split())
