"""A pytest plugin: a test that runs past its timeout fails, even if the code under test
swallows the exception pytest-timeout raises.

pytest-timeout's ``signal`` method raises ``Failed`` from its SIGALRM handler in whatever
frame is running. In an asyncio test that frame is usually inside some task, and code that
treats any task exception as a peer's failure (as the DHT's old lookup driver did), gathers
with ``return_exceptions=True``, or logs a background task's error and moves on, turns the
timeout into nothing: a simulation once overran its 120 s and counted as passed. This plugin
records that the alarm fired and fails the test's report regardless of what became of the
exception. (The ``thread`` method ends the whole run with ``os._exit``; it cannot be
swallowed.)
"""

from __future__ import annotations

import signal
from collections.abc import Generator
from typing import Any

import pytest

TIMED_OUT = pytest.StashKey[float]()
REPORTED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> Generator[None, object, object]:
    """After pytest-timeout arms its alarm, put a recorder in front of its handler."""
    result = yield
    handler = signal.getsignal(signal.SIGALRM)
    if settings.method == "signal" and callable(handler):

        def recording(signum: int, frame: object) -> None:
            item.stash[TIMED_OUT] = settings.timeout
            handler(signum, frame)  # type: ignore[arg-type]

        signal.signal(signal.SIGALRM, recording)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A phase during which the alarm fired fails, whatever its outcome looked like."""
    report = yield
    timeout = item.stash.get(TIMED_OUT, None)
    if timeout is not None and not item.stash.get(REPORTED, False):
        item.stash[REPORTED] = True
        if report.outcome != "failed":
            report.outcome = "failed"
            report.longrepr = (
                f"Timeout (>{timeout}s): the test ran past its limit; the exception "
                "pytest-timeout raised was swallowed by the code under test"
            )
    return report
