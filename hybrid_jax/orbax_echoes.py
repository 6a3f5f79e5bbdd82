"""Silence the echoes of a failed orbax read or write, keep its cause.

orbax runs a checkpoint's reads and writes as asyncio tasks on a loop that it closes as
soon as the first one fails. The tasks still in flight then finish into the closed loop:
each prints "RuntimeError: Event loop is closed" through `sys.unraisablehook` (about 40
tracebacks for a 2-layer model), asyncio logs "Task (or Future) exception was never
retrieved" for the failed siblings, and a coroutine that never ran warns at exit. None of these says
anything the raised exception does not; printed from orbax's threads they interleave
with, and can split, the one-line error a tool prints (CI saw
"RuntimeErrorhybrid-jax-score: error: ...").

`quiet_failed_io()` wraps one orbax call. Its first use installs a `sys.unraisablehook`
that drops closed-loop reports (raised in asyncio's `_check_closed`; a call that
succeeds makes none) and stays, since abandoned tasks finish after the call returns. If
the call raises, asyncio's never-retrieved reports (orbax's tasks, tensorstore's
futures) and the never-awaited warning are dropped from then on too. Anything else
reaches the previous hooks.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Any

_lock = threading.Lock()
_installed = False


def _is_closed_loop_echo(unraisable: Any) -> bool:
    exc = unraisable.exc_value
    if not (isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed"):
        return False
    tb = unraisable.exc_traceback
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_name == "_check_closed"


def _install_unraisable_filter() -> None:
    global _installed
    with _lock:
        if _installed:
            return
        previous = sys.unraisablehook

        def hook(unraisable: Any) -> None:
            if not _is_closed_loop_echo(unraisable):
                previous(unraisable)

        sys.unraisablehook = hook
        _installed = True


class _OrbaxTaskEchoes(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # orbax's own tasks, and the bare futures tensorstore hands them.
        msg = record.getMessage()
        return not msg.startswith(("Task exception was never retrieved",
                                   "Future exception was never retrieved"))


_task_filter = _OrbaxTaskEchoes()


def _after_failure() -> None:
    asyncio_log = logging.getLogger("asyncio")
    if _task_filter not in asyncio_log.filters:
        asyncio_log.addFilter(_task_filter)
    warnings.filterwarnings("ignore", message=r"coroutine '.*' was never awaited",
                            category=RuntimeWarning)


@contextlib.contextmanager
def quiet_failed_io() -> Iterator[None]:
    """Run one orbax save/restore; drop the closed-loop echoes of its failure."""
    _install_unraisable_filter()
    try:
        yield
    except BaseException:
        _after_failure()
        raise
