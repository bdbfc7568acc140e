"""Replicate announcements and BatchFindValues fetches as plans, without an event loop."""

from __future__ import annotations

import random

import pytest

from lumera_p2p.content import digest
from lumera_p2p.dht.plans import (
    Announcement,
    AnnouncePlan,
    Answered,
    Backoff,
    FetchPlan,
    Request,
    Unanswered,
)
from lumera_p2p.dht.statuses import failed, ok
from lumera_p2p.errors import TransportError
from lumera_p2p.kademlia import Contact
from lumera_p2p.wire.find_values import decode_values, encode_values
from lumera_p2p.wire.messages import (
    BatchFindValuesRequest,
    BatchFindValuesResponse,
    MessageType,
    ReplicateDataResponse,
)

from .world import Reply, drive


def peers(n: int) -> list[Contact]:
    return [Contact(b"lumera-r-%d" % i, f"10.3.0.{i + 1}", 4445) for i in range(n)]


def keys(n: int, tag: bytes = b"k") -> list[bytes]:
    return [digest(tag + b"%d" % i) for i in range(n)]


def test_backoff_grows_with_jitter_and_gives_up_past_its_budget() -> None:
    b = Backoff(initial=1.0, multiplier=2.0, randomization=0.5, max_elapsed=10.0)
    rng = random.Random(1)
    first = b.next_delay(1, 0.0, rng)
    assert first is not None and 0.5 <= first <= 1.5
    third = b.next_delay(3, 0.0, rng)
    assert third is not None and 2.0 <= third <= 6.0
    assert b.next_delay(1, 9.9, rng) is None  # elapsed + delay would pass 10 s
    assert Backoff(max_interval=2.0, initial=1.0, multiplier=10.0, randomization=0.0).next_delay(
        5, 0.0, rng
    ) == pytest.approx(2.0)


def announce_world(
    behaviour: dict[bytes, list[Reply]] | None = None,
) -> tuple[list[Request], object]:
    """A world that acknowledges every Replicate, or plays ``behaviour[peer id]`` in turn."""
    seen: list[Request] = []
    script = {k: list(v) for k, v in (behaviour or {}).items()}

    def reply(request: Request) -> Reply:
        seen.append(request)
        queue = script.get(request.peer.id)
        if queue:
            return queue.pop(0)
        return ReplicateDataResponse(status=ok())

    return seen, reply


def test_keys_go_in_batches_in_order_one_batch_at_a_time_per_peer() -> None:
    [a, b] = peers(2)
    many = keys(12_001)
    seen, reply = announce_world()
    plan = AnnouncePlan(
        [Announcement(a, many), Announcement(b, many[:3])], rng=random.Random(0), timeout=30.0
    )
    trace = drive(plan, reply)  # type: ignore[arg-type]
    outcome = plan.result()
    assert set(outcome.succeeded) == {a, b} and not outcome.failed
    to_a = [r for r in seen if r.peer == a]
    assert [len(r.data.keys) for r in to_a] == [5000, 5000, 2001]  # type: ignore[union-attr]
    sent = [k for r in to_a for k in r.data.keys]  # type: ignore[union-attr]
    assert sent == [k.hex() for k in many]
    assert all(r.mtype is MessageType.REPLICATE and r.timeout == 30.0 for r in seen)
    assert trace.max_per_peer == 1
    assert outcome.keys_acknowledged == 12_004 and outcome.batches_acknowledged == 4
    assert Answered(a) in trace.events


def test_a_peer_stops_at_its_first_batch_that_fails_for_good() -> None:
    [a, b] = peers(2)
    refused = TransportError("connection refused")
    seen, reply = announce_world({a.id: [ReplicateDataResponse(status=ok())] + [refused] * 50})
    plan = AnnouncePlan(
        [Announcement(a, keys(12_000)), Announcement(b, keys(2))], rng=random.Random(0)
    )
    trace = drive(plan, reply)  # type: ignore[arg-type]
    outcome = plan.result()
    assert outcome.failed == [a] and outcome.succeeded == [b]
    assert "refused" in outcome.errors[a.id]
    to_a = [r for r in seen if r.peer == a]
    # Batch 1 went through; batch 2 was retried with backoff until 45 s had passed; batch 3
    # was never sent.
    assert {tuple(r.data.keys[:1]) for r in to_a[1:]} == {(keys(12_000)[5000].hex(),)}  # type: ignore[union-attr]
    assert len(to_a) > 3 and outcome.retries == len(to_a) - 2
    times = [t for t, r in trace.sent if r.peer == a]
    assert times[-1] - times[1] <= 45.0
    assert Unanswered(a) in trace.events
    assert outcome.keys_acknowledged == 5000 + 2


def test_a_failed_status_is_retried_and_may_succeed() -> None:
    [a] = peers(1)
    seen, reply = announce_world({a.id: [ReplicateDataResponse(status=failed("Busy"))] * 2})
    plan = AnnouncePlan([Announcement(a, keys(3))], rng=random.Random(0))
    drive(plan, reply)  # type: ignore[arg-type]
    assert plan.result().succeeded == [a] and plan.result().retries == 2
    assert len(seen) == 3


def test_a_batch_that_timed_out_is_not_retried() -> None:
    [a, b] = peers(2)
    seen, reply = announce_world({a.id: [None] * 5})  # None: silence until the timeout
    plan = AnnouncePlan(
        [Announcement(a, keys(3)), Announcement(b, keys(3))], rng=random.Random(0), timeout=10.0
    )
    trace = drive(plan, reply)  # type: ignore[arg-type]
    assert plan.result().failed == [a]
    assert len([r for r in seen if r.peer == a]) == 1
    assert trace.end == pytest.approx(10.0, abs=0.2)


def test_at_most_concurrency_peers_at_once_and_empty_announcements_are_skipped() -> None:
    many = peers(10)
    seen, reply = announce_world()
    plan = AnnouncePlan(
        [Announcement(p, keys(1)) for p in many] + [Announcement(peers(11)[10], [])],
        rng=random.Random(0),
        concurrency=3,
    )
    trace = drive(plan, reply)  # type: ignore[arg-type]
    assert trace.max_in_flight == 3
    assert len(plan.result().succeeded) == 10 and len(seen) == 10


def fetch_reply(values: dict[bytes, bytes], script: list[Reply] | None = None) -> object:
    queue = list(script or [])

    def reply(request: Request) -> Reply:
        if queue:
            return queue.pop(0)
        assert isinstance(request.data, BatchFindValuesRequest)
        doc = {k: values.get(bytes.fromhex(k)) for k in request.data.keys}
        return BatchFindValuesResponse(status=ok(), response=encode_values(doc), done=True)

    return reply


def test_a_fetch_returns_the_payload_the_peer_sent() -> None:
    [a] = peers(1)
    wanted = keys(3)
    plan = FetchPlan(a, wanted, rng=random.Random(0))
    trace = drive(plan, fetch_reply({wanted[0]: b"v0"}))  # type: ignore[arg-type]
    outcome = plan.result()
    assert outcome.payload is not None and outcome.done and outcome.attempts == 1
    doc = decode_values(outcome.payload, 1 << 20)
    assert doc == {wanted[0].hex(): b"v0", wanted[1].hex(): None, wanted[2].hex(): None}
    [(_, request)] = trace.sent
    assert request.mtype is MessageType.BATCH_FIND_VALUES
    assert request.data == BatchFindValuesRequest(keys=[k.hex() for k in wanted])
    assert Answered(a) in trace.events


def test_busy_and_quick_failures_are_retried_after_about_ten_seconds() -> None:
    [a] = peers(1)
    script: list[Reply] = [
        BatchFindValuesResponse(status=failed("Busy")),
        TransportError("connection refused"),
    ]
    plan = FetchPlan(a, keys(2), rng=random.Random(0))
    trace = drive(plan, fetch_reply({}, script))  # type: ignore[arg-type]
    assert plan.result().payload is not None and plan.result().attempts == 3
    times = [t for t, _ in trace.sent]
    assert 5.0 <= times[1] - times[0] <= 15.0  # Go: 10 s ± 50 %


def test_a_fetch_gives_up_after_thirty_seconds_of_failures() -> None:
    [a] = peers(1)
    plan = FetchPlan(a, keys(2), rng=random.Random(0))
    trace = drive(plan, fetch_reply({}, [TransportError("refused")] * 20))  # type: ignore[arg-type]
    outcome = plan.result()
    assert outcome.payload is None and "refused" in outcome.error
    assert 2 <= outcome.attempts <= 5
    assert trace.end <= 30.0
    assert trace.of(Unanswered)


def test_a_fetch_that_timed_out_is_not_retried() -> None:
    [a] = peers(1)
    plan = FetchPlan(a, keys(2), rng=random.Random(0), timeout=20.0)
    drive(plan, fetch_reply({}, [None]))  # type: ignore[arg-type]
    assert plan.result().payload is None and plan.result().attempts == 1


def test_a_fetch_needs_keys() -> None:
    with pytest.raises(ValueError):
        FetchPlan(peers(1)[0], [], rng=random.Random(0))
    with pytest.raises(ValueError):
        AnnouncePlan([], rng=random.Random(0), batch_keys=0)
