"""A failing background job (an unreachable chain, say) is one WARNING line per round, with
its traceback only at DEBUG; the job keeps being retried. On the virtual clock."""

from __future__ import annotations

import asyncio
import logging

import pytest

from lumera_p2p.errors import ChainError
from lumera_p2p.net.virtual_time import run_virtual
from lumera_p2p.service import _every


def rounds_of_a_failing_job(rounds: int) -> int:
    calls = 0

    async def refresh_registry() -> None:
        nonlocal calls
        calls += 1
        raise ChainError("chain unreachable at 127.0.0.1:9090:\n  connection refused")

    async def main() -> None:
        task = asyncio.create_task(_every(30.0, refresh_registry))
        await asyncio.sleep(30.0 * rounds + 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run_virtual(main())
    return calls


def test_one_line_per_failed_round_and_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="lumera_p2p.service"):
        assert rounds_of_a_failing_job(3) == 3
    lines = [r for r in caplog.records if r.name == "lumera_p2p.service"]
    assert len(lines) == 3
    for record in lines:
        assert record.levelno == logging.WARNING and not record.exc_info
        text = record.getMessage()
        assert "\n" not in text
        assert text == (
            "background job refresh_registry failed, retrying in 30 s: ChainError: chain "
            "unreachable at 127.0.0.1:9090: connection refused"
        )


def test_the_traceback_comes_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="lumera_p2p.service"):
        rounds_of_a_failing_job(1)
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert record.exc_info is not None and record.exc_info[0] is ChainError
