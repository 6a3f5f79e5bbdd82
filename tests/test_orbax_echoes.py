"""orbax_echoes drops only the closed-loop echoes of a failed orbax call."""

import asyncio
import logging
import sys
import types

import pytest

from hybrid_jax import orbax_echoes


def _unraisable(exc: BaseException) -> types.SimpleNamespace:
    return types.SimpleNamespace(exc_type=type(exc), exc_value=exc,
                                 exc_traceback=exc.__traceback__, err_msg=None, object=None)


def _closed_loop_error() -> RuntimeError:
    loop = asyncio.new_event_loop()
    loop.close()
    try:
        loop.call_soon_threadsafe(print)
    except RuntimeError as e:
        return e
    raise AssertionError("a closed loop accepted a callback")


@pytest.fixture
def seen(monkeypatch):
    got = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: got.append(u.exc_value))
    monkeypatch.setattr(orbax_echoes, "_installed", False)
    asyncio_log = logging.getLogger("asyncio")
    # (an earlier test in this process may have failed an orbax call already)
    monkeypatch.setattr(asyncio_log, "filters", [f for f in asyncio_log.filters
                                                 if f is not orbax_echoes._task_filter])
    return got


def test_closed_loop_echoes_are_dropped_and_other_errors_pass(seen):
    with orbax_echoes.quiet_failed_io():
        pass
    echo = _closed_loop_error()
    sys.unraisablehook(_unraisable(echo))
    assert seen == []
    # The same message raised elsewhere, and any other error, still reach the old hook.
    try:
        raise RuntimeError("Event loop is closed")
    except RuntimeError as e:
        elsewhere = e
    other = ValueError("a real problem")
    sys.unraisablehook(_unraisable(elsewhere))
    sys.unraisablehook(_unraisable(other))
    assert seen == [elsewhere, other]


def test_never_retrieved_reports_are_dropped_only_after_a_failure(seen, caplog):
    asyncio_log = logging.getLogger("asyncio")
    with orbax_echoes.quiet_failed_io():
        pass
    asyncio_log.error("Future exception was never retrieved\nfuture: <Future>")
    assert "never retrieved" in caplog.text
    caplog.clear()
    with pytest.raises(ValueError, match="DATA_LOSS"):
        with orbax_echoes.quiet_failed_io():
            raise ValueError("DATA_LOSS: manifest")
    for kind in ("Task", "Future"):
        asyncio_log.error("%s exception was never retrieved\nfuture: <%s>", kind, kind)
    asyncio_log.error("Unclosed client session")
    assert "never retrieved" not in caplog.text and "Unclosed client session" in caplog.text
