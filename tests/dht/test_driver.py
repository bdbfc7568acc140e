"""The asyncio driver on the virtual-time loop: timeouts, cancellation, errors, verdicts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from lumera_p2p.dht import DHTCounters, Driver
from lumera_p2p.dht.contacts import wire_node
from lumera_p2p.dht.plans import Answered, Event, Plan, Request, ValueArrived
from lumera_p2p.errors import TransportError
from lumera_p2p.kademlia import Contact
from lumera_p2p.net.virtual_time import run_virtual
from lumera_p2p.wire.messages import Message, MessageData, MessageType

PEER = Contact(b"lumera-peer", "10.0.0.2", 4445)
OTHER = Contact(b"lumera-other", "10.0.0.3", 4445)


class Scripted(Plan[list[str]]):
    """Sends what ``script(now, plan)`` returns on each poll; done when ``finish`` says so."""

    def __init__(
        self,
        script: Callable[[float, Scripted], list[Request]],
        finish: Callable[[Scripted], bool],
        deadline: Callable[[Scripted], float | None] = lambda plan: None,
    ) -> None:
        super().__init__()
        self.script = script
        self.finish = finish
        self.deadline = deadline
        self.log: list[str] = []
        self.verdicts: list[tuple[bytes, bool]] = []

    def poll(self, now: float) -> list[Request]:
        self.log.append(f"poll@{now:g}")
        return self.script(now, self)

    def next_deadline(self) -> float | None:
        return self.deadline(self)

    @property
    def done(self) -> bool:
        return self.finish(self)

    def result(self) -> list[str]:
        return self.log

    def on_response(self, token: int, message: Message, now: float) -> None:
        self.log.append(f"ok {token}@{now:g}")

    def on_failure(self, token: int, error: TransportError, now: float) -> None:
        self.log.append(f"fail {token}@{now:g}: {error}")

    def on_verdict(self, key: bytes, accepted: bool, now: float) -> None:
        self.verdicts.append((key, accepted))

    def emit(self, event: Event) -> None:
        self._emit(event)

    def abandon(self, *tokens: int) -> None:
        self._abandon(tokens)


class FakeTransport:
    """Answers after ``delay`` virtual seconds with ``reply(request)`` (a Message or an error)."""

    def __init__(self, delay: float = 0.1, reply: Callable[[Message], object] | None = None):
        self.delay = delay
        self.reply = reply or (lambda m: m)
        self.calls: list[tuple[Message, float]] = []
        self.cancelled: list[Message] = []

    async def call(
        self, peer: Contact, request: Message, timeout: float, *, on_answer: object = None
    ) -> Message:
        self.calls.append((request, timeout))
        try:
            await asyncio.sleep(min(self.delay, timeout))
        except asyncio.CancelledError:
            self.cancelled.append(request)
            raise
        if self.delay > timeout:
            raise TransportError("timed out")
        answer = self.reply(request)
        if isinstance(answer, BaseException):
            raise answer
        assert isinstance(answer, Message)
        return answer


def echo(request: Message) -> Message:
    return Message(
        sender=request.receiver, receiver=request.sender, message_type=request.message_type
    )


def driver(
    transport: FakeTransport,
    applied: list[Event] | None = None,
    counters: DHTCounters | None = None,
) -> Driver:
    timeouts = {MessageType.PING: 1.5, MessageType.STORE_DATA: 9.0}

    def message(mtype: MessageType, to: Contact, data: MessageData | None) -> Message:
        return Message(
            sender=wire_node(OTHER), receiver=wire_node(to), message_type=int(mtype), data=data
        )

    return Driver(
        transport,
        message=message,
        timeout_for=lambda mtype: timeouts.get(mtype, 15.0),
        apply=(applied if applied is not None else []).append,
        counters=counters or DHTCounters(),
    )


def once(*requests: Request) -> Callable[[float, Scripted], list[Request]]:
    sent: list[bool] = []

    def script(now: float, plan: Scripted) -> list[Request]:
        if sent:
            return []
        sent.append(True)
        return list(requests)

    return script


def answered(n: int) -> Callable[[Scripted], bool]:
    return lambda plan: sum(e.startswith(("ok", "fail")) for e in plan.log) >= n


def test_timeouts_come_from_the_options_unless_the_request_sets_one() -> None:
    transport = FakeTransport(0.2, echo)
    plan = Scripted(
        once(
            Request(1, PEER, MessageType.PING, None),
            Request(2, PEER, MessageType.STORE_DATA, None),
            Request(3, PEER, MessageType.REPLICATE, None),
            Request(4, PEER, MessageType.PING, None, timeout=0.1),
        ),
        answered(4),
    )
    log = run_virtual(driver(transport).run(plan))
    assert [t for _, t in transport.calls] == [1.5, 9.0, 15.0, 0.1]
    assert "fail 4@0.1: timed out" in log
    assert {"ok 1@0.2", "ok 2@0.2", "ok 3@0.2"} <= set(log)


def test_a_superseded_or_abandoned_request_is_cancelled_and_never_reported() -> None:
    transport = FakeTransport(5.0, echo)
    step = {"n": 0}

    def script(now: float, plan: Scripted) -> list[Request]:
        step["n"] += 1
        if step["n"] == 1:
            return [
                Request(1, PEER, MessageType.PING, None),
                Request(2, OTHER, MessageType.PING, None),
            ]
        if step["n"] == 2:
            plan.abandon(2)
            return [Request(3, PEER, MessageType.PING, None, timeout=10.0, supersedes=1)]
        return []

    plan = Scripted(script, answered(1), deadline=lambda p: 1.0 if step["n"] == 1 else None)
    log = run_virtual(driver(transport).run(plan))
    assert [m.receiver.id for m in transport.cancelled] == [PEER.id, OTHER.id]  # type: ignore[union-attr]
    assert log == ["poll@0", "poll@1", "ok 3@6", "poll@6"]


def test_outstanding_requests_are_cancelled_when_the_plan_is_done() -> None:
    transport = FakeTransport(1.0, echo)
    requests = [
        Request(i, PEER, MessageType.PING, None, timeout=t) for i, t in ((1, 0.5), (2, 5), (3, 5))
    ]
    plan = Scripted(once(*requests), answered(1))
    log = run_virtual(driver(transport).run(plan))
    assert log[-2:] == ["fail 1@0.5: timed out", "poll@0.5"]
    assert len(transport.cancelled) == 2


def test_anything_but_a_transport_error_propagates() -> None:
    """A bug (or a test's timeout, which pytest raises wherever the code is) must never be
    taken for a peer that did not answer: that is how an overrun test once passed."""

    class Overrun(BaseException):
        pass

    for error in (RuntimeError("bug"), Overrun()):
        transport = FakeTransport(0.1, lambda m, e=error: e)  # type: ignore[misc]
        plan = Scripted(once(Request(1, PEER, MessageType.PING, None)), answered(1))
        with pytest.raises(type(error)):
            run_virtual(driver(transport).run(plan))


def test_an_answer_of_the_wrong_type_is_a_failure_and_is_counted() -> None:
    def wrong(request: Message) -> Message:
        return Message(sender=None, receiver=None, message_type=int(MessageType.FIND_NODE))

    transport = FakeTransport(0.1, wrong)
    counters = DHTCounters()
    plan = Scripted(once(Request(1, PEER, MessageType.PING, None)), answered(1))
    log = run_virtual(driver(transport, counters=counters).run(plan))
    failure = log[-2]
    assert failure.startswith("fail 1@0.1:")
    assert (
        f"answered type {int(MessageType.FIND_NODE)} to a type {int(MessageType.PING)}" in failure
    )
    assert (counters.rpc_sent, counters.rpc_failed) == (1, 1)
    assert counters.rpc_sent_by_type == {"PING": 1}
    assert counters.rpc_failed_by_type == {"PING": 1}


def test_events_go_to_the_node_and_values_to_the_consumer() -> None:
    applied: list[Event] = []
    transport = FakeTransport(0.1, echo)
    plan = Scripted(once(Request(1, PEER, MessageType.PING, None)), answered(1))
    plan.emit(Answered(PEER))
    plan.emit(ValueArrived(b"k1", b"v1", PEER))
    plan.emit(ValueArrived(b"k2", b"v2", PEER))
    seen: list[bytes] = []

    async def consume(key: bytes, value: bytes) -> bool:
        seen.append(key)
        await asyncio.sleep(0.01)  # the driver waits for the consumer's answer
        return key == b"k1"

    run_virtual(driver(transport, applied).run(plan, consume))
    assert applied == [Answered(PEER)]
    assert seen == [b"k1", b"k2"]
    assert plan.verdicts == [(b"k1", True), (b"k2", False)]


def test_a_plan_that_only_waits_for_time_is_woken_at_its_deadline() -> None:
    async def main() -> tuple[list[str], float]:
        loop = asyncio.get_running_loop()
        plan = Scripted(
            lambda now, p: [], lambda p: len(p.log) >= 3, deadline=lambda p: 10.0 * len(p.log)
        )
        log = await driver(FakeTransport()).run(plan)
        return log, loop.time()

    log, end = run_virtual(main())
    assert log == ["poll@0", "poll@10", "poll@20"]
    assert end == 20.0


def test_a_plan_that_waits_for_nothing_is_a_bug() -> None:
    plan = Scripted(lambda now, p: [], lambda p: False)
    with pytest.raises(RuntimeError, match="waits for nothing"):
        run_virtual(driver(FakeTransport()).run(plan))
