"""An asyncio event loop whose clock is virtual: waiting costs no wall time.

The simulator runs thousands of nodes' real asyncio code (the same DHT operations the TCP node
runs) over the in-memory transport. With a virtual clock, ``asyncio.sleep(0.05)`` as injected
latency returns as soon as nothing else is runnable, and timeouts fire in simulated seconds;
a run is as fast as the CPU allows and, since nothing depends on wall time or thread timing,
identical for the same seed.

How: the loop's ``time()`` returns a counter, and its selector, when the loop would block for
``timeout`` seconds, advances the counter by that much and polls real file descriptors without
waiting (so thread wake-ups still work). Work handed to a thread (``asyncio.to_thread``,
``run_in_executor``) takes no virtual time: while any is outstanding the clock stands still and
the loop really waits for the thread, so a timer cannot fire "during" it however slow the
machine is (otherwise a busy machine would turn a compression in a thread into a timeout).
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from typing import Any, TypeVar, TypeVarTuple

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


#: How long (wall time) the loop waits for a worker thread when no timer is pending, before
#: concluding that the simulation is deadlocked.
_IDLE_WALL_TIMEOUT = 30.0


class _VirtualSelector(selectors.DefaultSelector):
    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[Any, int]]:
        if self._clock.threads and (timeout is None or timeout > 0):
            # A worker thread is running: wait for its wake-up, the clock standing still.
            events: list[tuple[Any, int]] = super().select(_IDLE_WALL_TIMEOUT)
            if not events:
                raise RuntimeError("virtual-time loop: a worker thread did not finish")
            return events
        if timeout is None:
            # Nothing is scheduled and nothing is ready: either a worker thread is about to
            # wake the loop (really wait for it), or every task waits for something that can
            # never happen.
            events = super().select(_IDLE_WALL_TIMEOUT)
            if not events:
                raise RuntimeError("virtual-time loop deadlocked: no timer and no ready task")
            return events
        if timeout > 0:
            self._clock.now += timeout
        result: list[tuple[Any, int]] = super().select(0)
        return result


class VirtualClock:
    """The loop's notion of now, in seconds from its start."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        #: Executor jobs handed out and not yet finished (see the module docstring).
        self.threads = 0


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop driven by a :class:`VirtualClock`."""

    def __init__(self, start: float = 0.0) -> None:
        self.clock = VirtualClock(start)
        super().__init__(_VirtualSelector(self.clock))
        # Timers due "now" are run on the same iteration; a coarse resolution would let the
        # loop fire timers early by that amount.
        self._clock_resolution = 1e-9

    def time(self) -> float:
        return self.clock.now

    def run_in_executor(
        self, executor: Executor | None, func: Callable[[*Ts], T], *args: *Ts
    ) -> asyncio.Future[T]:
        future = super().run_in_executor(executor, func, *args)
        clock = self.clock
        clock.threads += 1

        def finished(_: asyncio.Future[T]) -> None:
            clock.threads -= 1

        future.add_done_callback(finished)
        return future


def run_virtual(main: Coroutine[Any, Any, T], start: float = 0.0) -> T:
    """Run a coroutine to completion on a fresh :class:`VirtualTimeLoop`; return its result."""
    loop = VirtualTimeLoop(start)
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main)
    finally:
        # As asyncio.run does: cancel what is left (in-flight probes, lost messages that
        # would wait forever) and let it unwind before closing.
        leftover = asyncio.all_tasks(loop)
        for task in leftover:
            task.cancel()
        if leftover:
            loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        asyncio.set_event_loop(None)
        loop.close()
