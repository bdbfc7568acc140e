"""Helpers shared by several test packages."""

from __future__ import annotations

import asyncio
import inspect
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lumera_p2p.service import P2P


async def peer_closed(reader: asyncio.StreamReader, timeout: float = 5.0) -> bool:
    """True once the other end has closed (EOF or reset), reading and discarding until then."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                if not await reader.read(65536):
                    return True
            except ConnectionError:
                return True


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]],
    timeout: float = 30.0,
    what: str = "the condition",
) -> None:
    """Wait until ``condition()`` holds, checking every 20 ms; fail after ``timeout`` seconds
    of wall time. For real sockets, where how long something takes depends on the machine's
    load: the deadline is generous, and a fast machine waits no longer than it must."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout} s")
        await asyncio.sleep(0.02)  # polling, not waiting for a guess at a duration


async def full_tables(nodes: Sequence[P2P], timeout: float = 120.0) -> None:
    """Wait until every node's routing table holds every other node (a deadline for a hang,
    not a speed: under load bootstrap is slow)."""
    await eventually(
        lambda: all(n.node.peer_count == len(nodes) - 1 for n in nodes),
        timeout=timeout,
        what=f"every routing table holding {len(nodes) - 1} peers",
    )


async def settle(rounds: int = 10) -> None:
    """Let every callback already scheduled on the loop run: yield to it ``rounds`` times
    (no wall time passes; nothing is waited for but the loop's own queue)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


def python_calls(run: Callable[[], object]) -> int:
    """How many Python-level function calls ``run()`` makes (whatever it raises): a measure of
    work that, unlike a stopwatch, a busy machine cannot change."""
    calls = 0

    def count(frame: object, event: str, arg: object) -> None:
        nonlocal calls
        if event == "call":
            calls += 1

    sys.setprofile(count)
    try:
        run()
    except Exception:  # the caller checks what was raised; here only the work counts
        pass
    finally:
        sys.setprofile(None)
    return calls
