"""A test that overruns its timeout fails, even when the code under test swallows the error."""

from __future__ import annotations

from pathlib import Path

import pytest

GUARD = Path(__file__).with_name("timeout_guard.py")

SWALLOWING = """
import asyncio
import time

import pytest


@pytest.mark.timeout(0.3)
def test_swallows_in_sync_code():
    try:
        time.sleep(3)
    except BaseException:
        pass  # the Failed from pytest-timeout, eaten


@pytest.mark.timeout(0.3)
def test_swallows_inside_an_asyncio_task():
    async def work():
        await asyncio.sleep(0)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:  # busy: the alarm lands in this task
            pass

    async def main():
        # What the old DHT driver did: any task exception is a "failed peer".
        results = await asyncio.gather(work(), return_exceptions=True)
        assert results

    asyncio.run(main())


@pytest.mark.timeout(5)
def test_within_its_limit():
    time.sleep(0.1)
"""


def inner_run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.RunResult:
    """The inner session in a fresh interpreter with pytest-timeout and nothing else loaded
    (hypothesis, asyncio and the rest would only slow its start)."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    return pytester.runpytest_subprocess("-p", "pytest_timeout", "-p", "no:cacheprovider", "-q")


def test_an_overrun_fails_even_when_swallowed(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest(GUARD.read_text())
    pytester.makepyfile(test_inner=SWALLOWING)
    result = inner_run(pytester, monkeypatch)
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed") == 2, result.stdout.str()
    assert outcomes.get("passed") == 1, result.stdout.str()
    result.stdout.fnmatch_lines(["*Timeout (>0.3s): the test ran past its limit*"])


def test_without_the_guard_the_overrun_would_pass(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The defect the guard exists for: plain pytest-timeout counts these as passed."""
    pytester.makepyfile(test_inner=SWALLOWING)
    result = inner_run(pytester, monkeypatch)
    assert result.parseoutcomes().get("passed") == 3, result.stdout.str()
