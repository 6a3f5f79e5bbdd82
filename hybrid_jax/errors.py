"""The one base class of every *expected* error: something the user gave is wrong.

A command line tool catches `UserError`, prints its message on one line (the message
names the file, field, tensor or row at fault) and exits with status 2; any other
exception is a bug and keeps its traceback. Every module raises its own subclass
(`ConfigError`, `TableError`, `CheckpointError`, ...) so that library callers can
still catch precisely; this module imports nothing, so the analysis side (which never
imports JAX) can use it too.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input, a bad config, a missing or existing path, a corrupt file: the
    message says what and where, and no traceback is needed to act on it."""
