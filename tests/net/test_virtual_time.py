"""The virtual-time loop: waiting costs no wall time, and neither does work in a thread."""

from __future__ import annotations

import asyncio
import time

import pytest

from lumera_p2p.net.virtual_time import run_virtual


def test_sleeping_advances_the_clock_without_waiting() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(3600)
        return loop.time()

    started = time.monotonic()
    assert run_virtual(main()) == pytest.approx(3600)
    assert time.monotonic() - started < 30  # a hang guard: an hour did not pass


def test_work_in_a_thread_takes_no_virtual_time() -> None:
    """A timer must not fire while a thread works, however long the thread takes in wall
    time: a busy machine would otherwise turn a compression in a thread into a timeout."""

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        ticks: list[float] = []

        async def ticker() -> None:
            while True:
                await asyncio.sleep(0.01)
                ticks.append(loop.time())

        task = asyncio.ensure_future(ticker())
        start = loop.time()
        async with asyncio.timeout(0.5):
            await asyncio.to_thread(time.sleep, 0.2)
        during = loop.time() - start
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(1.0)  # and the clock runs again afterwards
        return during, loop.time() - start

    during, after = run_virtual(main())
    assert during == 0.0
    assert after == pytest.approx(1.0)
