"""The one base class of every *expected* error: something the user gave is wrong.

A command line tool catches `UserError`, prints its message on one line (the message
names the file, field, tensor or row at fault) and exits with status 2; any other
exception is a bug and keeps its traceback. Every module raises its own subclass
(`ConfigError`, `TableError`, `CheckpointError`, ...) so that library callers can
still catch precisely; this module imports only the standard library, so the analysis
side (which never imports JAX) can use it too.
"""

from __future__ import annotations

import errno


class UserError(Exception):
    """Bad input, a bad config, a missing or existing path, a corrupt file: the
    message says what and where, and no traceback is needed to act on it."""


class DiskFullError(UserError, OSError):
    """A write failed because the disk (or quota) is full; the message names the path."""


_DISK_FULL_ERRNOS = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_DISK_FULL_TEXT = ("No space left on device", "Disk quota exceeded", "os_error_code='28'",
                   "os_error_code=28")


def is_disk_full(error: BaseException) -> bool:
    """True if `error` or anything in its cause chain is a full disk or quota.

    OSErrors carry the errno; tensorstore (orbax's writer) raises ValueErrors whose text
    holds the OS error ("... No space left on device [os_error_code='28']").
    """
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _DISK_FULL_ERRNOS:
            return True
        if any(t in str(error) for t in _DISK_FULL_TEXT):
            return True
        error = error.__cause__ or error.__context__
    return False
