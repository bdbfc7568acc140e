"""The one asyncio driver: runs any :class:`~lumera_p2p.dht.plans.Plan` over a ``Transport``.

Its whole job, as aioquic's asyncio glue: poll the plan with the loop's time and send what it
asks (each request with its timeout, from the node's options unless the plan sets one); cancel
requests the plan superseded or abandoned; hand events to the node, and values to the
consumer, feeding the consumer's verdict back; wait for the first answer or the plan's next
deadline; repeat until the plan is done, then cancel whatever is still outstanding.

Only ``TransportError`` is an RPC failure the plan hears of. Any other exception (a bug, or a
test's timeout) propagates: nothing is swallowed. The loop's clock is the only one read, so on
the virtual-time loop a run is replayable from a seed. Answers are fed in the order they
complete; waiting costs the same however many requests are outstanding (a bucket refresh has
hundreds), because each request reports its own completion instead of being polled.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from lumera_p2p.dht.counters import DHTCounters
from lumera_p2p.dht.plans.base import Plan, Request
from lumera_p2p.dht.plans.events import Event, ValueArrived
from lumera_p2p.errors import TransportError
from lumera_p2p.kademlia import Contact
from lumera_p2p.wire.messages import Message, MessageData, MessageType

R = TypeVar("R")

#: Message type names, for the counters (an enum's ``name`` is a property: slow per RPC).
_TYPE_NAMES: dict[int, str] = {t.value: t.name for t in MessageType}

#: ``consume(key, value)`` → accept (True) or refuse (False) a value a plan delivers.
Consumer = Callable[[bytes, bytes], Awaitable[bool]]
#: ``on_answer(extra)``: a large answer has started to arrive and is given ``extra`` seconds.
AnswerWatcher = Callable[[float], None]


class Transport(Protocol):
    """Sends one request to a peer and returns its response (the one interface of ``net/``)."""

    async def call(
        self,
        peer: Contact,
        request: Message,
        timeout: float,
        *,
        on_answer: AnswerWatcher | None = None,
    ) -> Message:
        """Deliver ``request`` to ``peer``; raise ``TransportError`` on any failure.

        A transport whose answers can take long to arrive (TCP: a large one) calls
        ``on_answer`` once such an answer has started, with the seconds it allows it."""
        ...


class Driver:
    """Runs plans for one node (see the module docstring).

    ``message`` wraps a request's body in a message from the node; ``timeout_for`` gives the
    per-type timeout; ``apply`` records an event in the node's state.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        message: Callable[[MessageType, Contact, MessageData | None], Message],
        timeout_for: Callable[[MessageType], float],
        apply: Callable[[Event], None],
        counters: DHTCounters,
    ) -> None:
        self._transport = transport
        self._message = message
        self._timeout_for = timeout_for
        self._apply = apply
        self._counters = counters

    async def run(self, plan: Plan[R], consume: Consumer | None = None) -> R:
        """Run ``plan`` to completion and return its result.

        ``consume`` answers the plan's ``ValueArrived`` events (every value is accepted when
        it is None).
        """
        loop = asyncio.get_running_loop()
        pending: dict[int, asyncio.Task[Message]] = {}
        finished: deque[int] = deque()
        waiter: list[asyncio.Future[None]] = []  # the one future ``run`` sleeps on, if any

        def report(token: int, _: object) -> None:
            if token not in pending:
                return  # cancelled by us (superseded or abandoned): nothing to report
            finished.append(token)
            if waiter and not waiter[0].done():
                waiter[0].set_result(None)

        try:
            while True:
                for request in plan.poll(loop.time()):
                    if request.supersedes is not None:
                        self._cancel(pending, request.supersedes)
                    task = loop.create_task(self._call(request, plan))
                    task.add_done_callback(functools.partial(report, request.token))
                    pending[request.token] = task
                for token in plan.abandoned():
                    self._cancel(pending, token)
                await self._drain(plan, consume)
                if plan.done:
                    return plan.result()
                if not finished:
                    deadline = plan.next_deadline()
                    if not pending and deadline is None:
                        raise RuntimeError(f"{type(plan).__name__} waits for nothing")
                    await self._sleep(loop, waiter, deadline)
                while finished:
                    token = finished.popleft()
                    ended = pending.pop(token, None)
                    if ended is not None:  # else cancelled by us: superseded or abandoned
                        await self._feed(plan, consume, token, ended, loop.time())
        finally:
            for task in pending.values():
                task.cancel()
            if pending:
                await asyncio.gather(*pending.values(), return_exceptions=True)

    @staticmethod
    async def _sleep(
        loop: asyncio.AbstractEventLoop,
        waiter: list[asyncio.Future[None]],
        deadline: float | None,
    ) -> None:
        """Until a request completes or ``deadline`` (the loop's time) passes."""
        future: asyncio.Future[None] = loop.create_future()
        waiter[:] = [future]
        timer = None
        if deadline is not None:
            timer = loop.call_at(
                deadline, lambda: None if future.done() else future.set_result(None)
            )
        try:
            await future
        finally:
            waiter.clear()
            if timer is not None:
                timer.cancel()

    async def _feed(
        self,
        plan: Plan[object],
        consume: Consumer | None,
        token: int,
        task: asyncio.Task[Message],
        now: float,
    ) -> None:
        """Tell ``plan`` how request ``token`` ended, then hand on what that made it say."""
        # A transport that cancels its own call has simply not answered.
        error = TransportError("request cancelled") if task.cancelled() else task.exception()
        if error is None:
            plan.on_response(token, task.result(), now)
        elif isinstance(error, TransportError):
            plan.on_failure(token, error, now)
        else:
            raise error
        await self._drain(plan, consume)

    async def _drain(self, plan: Plan[object], consume: Consumer | None) -> None:
        loop = asyncio.get_running_loop()
        while (event := plan.next_event()) is not None:
            if isinstance(event, ValueArrived):
                accepted = True if consume is None else await consume(event.key, event.value)
                plan.on_verdict(event.key, accepted, loop.time())
            else:
                self._apply(event)

    @staticmethod
    def _cancel(pending: dict[int, asyncio.Task[Message]], token: int) -> None:
        task = pending.pop(token, None)
        if task is not None:
            task.cancel()

    async def _call(self, request: Request, plan: Plan[object]) -> Message:
        """One RPC: the answer must be of the type asked, or it counts as a failure."""
        counters = self._counters
        mtype = request.mtype
        name = _TYPE_NAMES[mtype]
        message = self._message(mtype, request.peer, request.data)
        timeout = request.timeout if request.timeout is not None else self._timeout_for(mtype)
        counters.count_sent(name)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            if request.watch:
                token = request.token

                def on_answer(extra: float) -> None:
                    plan.on_progress(token, extra, loop.time())

                response = await self._transport.call(
                    request.peer, message, timeout, on_answer=on_answer
                )
            else:
                response = await self._transport.call(request.peer, message, timeout)
            if response.message_type != mtype:
                raise TransportError(
                    f"{request.peer}: answered type {response.message_type} "
                    f"to a type {int(mtype)} request"
                )
        except TransportError:
            counters.rpc_failed += 1
            counters.rpc_failed_by_type[name] = counters.rpc_failed_by_type.get(name, 0) + 1
            counters.observe_rpc(name, loop.time() - started)
            raise
        counters.observe_rpc(name, loop.time() - started)
        return response
