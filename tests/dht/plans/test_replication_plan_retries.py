"""When the replication plans retry, give up, and what they report: timing on the plan's own
clock, against Go's backoff (``Fixed`` pins its jitter)."""

from __future__ import annotations

import itertools
import random

import pytest

from lumera_p2p.content import digest
from lumera_p2p.dht.plans import (
    Announcement,
    AnnouncePlan,
    Backoff,
    FetchOutcome,
    FetchPlan,
    Request,
    Unanswered,
)
from lumera_p2p.dht.statuses import failed, ok
from lumera_p2p.errors import TransportError
from lumera_p2p.kademlia import Contact
from lumera_p2p.wire.messages import (
    BatchFindValuesResponse,
    Message,
    ReplicateDataResponse,
)

from .world import BODYLESS, Fixed, Reply, drive

A = Contact(b"lumera-retry-a", "10.4.0.1", 4445)
B = Contact(b"lumera-retry-b", "10.4.0.2", 4445)
KEYS = [digest(b"retry-%d" % i) for i in range(3)]
REFUSED = TransportError("connection refused")
#: One second, then two, then four, ... with no jitter: retry times are exact.
DOUBLING = Backoff(initial=1.0, multiplier=2.0, randomization=0.0, max_elapsed=100.0)


def scripted(script: dict[bytes, list[Reply]], honest: Reply) -> object:
    """Play ``script[peer id]`` in turn, then answer ``honest``."""
    queues = {k: list(v) for k, v in script.items()}

    def reply(request: Request) -> Reply:
        queue = queues.get(request.peer.id)
        return queue.pop(0) if queue else honest

    return reply


def answer(plan: FetchPlan | AnnouncePlan, token: int, body: object) -> None:
    plan.on_response(token, Message(data=body), 0.0)  # type: ignore[arg-type]


# --- AnnouncePlan ----------------------------------------------------------------------------


def test_an_announcement_retries_after_the_backoff_delays_in_turn() -> None:
    reply = scripted({A.id: [REFUSED] * 3}, ReplicateDataResponse(status=ok()))
    plan = AnnouncePlan([Announcement(A, KEYS)], rng=Fixed(0.5), backoff=DOUBLING)
    trace = drive(plan, reply)  # type: ignore[arg-type]
    times = [t for t, _ in trace.sent]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Each gap is the failure's latency (under 0.05 s) plus 1, 2 and then 4 seconds.
    assert len(gaps) == 3
    for gap, delay in zip(gaps, [1.0, 2.0, 4.0], strict=True):
        assert delay <= gap <= delay + 0.05
    assert plan.result().succeeded == [A] and plan.result().retries == 3


def test_a_peer_served_late_gets_its_own_backoff_budget_and_timeout() -> None:
    # One peer at a time: B waits for A's batch to time out (20 s), then refuses quickly,
    # again and again. Its budget (10 s) and the timeout count from B's own first send.
    budget = Backoff(initial=1.0, multiplier=1.0, randomization=0.0, max_elapsed=10.0)
    reply = scripted({A.id: [None], B.id: [REFUSED] * 100}, ReplicateDataResponse(status=ok()))
    plan = AnnouncePlan(
        [Announcement(A, KEYS), Announcement(B, KEYS)],
        rng=Fixed(0.5),
        backoff=budget,
        concurrency=1,
        timeout=20.0,
    )
    trace = drive(plan, reply)  # type: ignore[arg-type]
    outcome = plan.result()
    assert outcome.failed == [A, B]
    to_b = [t for t, r in trace.sent if r.peer == B]
    assert to_b[0] == pytest.approx(20.0)
    assert 9 <= len(to_b) <= 11 and to_b[-1] - to_b[0] <= 10.0
    assert outcome.retries == len(to_b) - 1


def test_unknown_tokens_are_ignored() -> None:
    plan = AnnouncePlan([Announcement(A, KEYS)], rng=Fixed(0.5))
    [request] = plan.poll(0.0)
    plan.on_failure(request.token + 1, REFUSED, 0.1)
    answer(plan, request.token + 1, ReplicateDataResponse(status=ok()))
    assert not plan.done and plan.next_event() is None
    answer(plan, request.token, ReplicateDataResponse(status=ok()))
    assert plan.done and plan.result().succeeded == [A]


def test_each_batch_starts_its_backoff_afresh() -> None:
    ok_answer = ReplicateDataResponse(status=ok())
    reply = scripted({A.id: [REFUSED, ok_answer, REFUSED, REFUSED]}, ok_answer)
    plan = AnnouncePlan([Announcement(A, KEYS[:2])], rng=Fixed(0.5), backoff=DOUBLING, batch_keys=1)
    trace = drive(plan, reply)  # type: ignore[arg-type]
    times = [t for t, _ in trace.sent]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Batch 1: refused, 1 s, acknowledged; batch 2 at once: refused, 1 s, refused, 2 s.
    assert len(gaps) == 4
    for gap, delay in zip(gaps, [1.0, 0.0, 1.0, 2.0], strict=True):
        assert delay <= gap <= delay + 0.1
    assert plan.result().keys_acknowledged == 2 and plan.result().batches_acknowledged == 2


def test_a_peer_waiting_to_retry_still_takes_its_place() -> None:
    c, d = (Contact(b"lumera-retry-%d" % i, f"10.4.0.{i}", 4445) for i in (3, 4))
    reply = scripted({A.id: [REFUSED], B.id: [REFUSED]}, ReplicateDataResponse(status=ok()))
    plan = AnnouncePlan(
        [Announcement(p, KEYS) for p in (A, B, c, d)],
        rng=Fixed(0.5),
        backoff=DOUBLING,
        concurrency=2,
    )
    trace = drive(plan, reply)  # type: ignore[arg-type]
    first = {r.peer: t for t, r in reversed(trace.sent)}
    assert first[A] == first[B] == 0.0
    assert first[c] >= 1.0 and first[d] >= 1.0  # after A or B was served, not while they slept
    assert len(plan.result().succeeded) == 4


def test_by_default_sixteen_peers_at_once_with_go_s_three_minute_call() -> None:
    many = [Contact(b"lumera-many-%d" % i, f"10.5.0.{i}", 4445) for i in range(20)]
    plan = AnnouncePlan([Announcement(p, KEYS) for p in many], rng=Fixed(0.5))
    trace = drive(plan, scripted({}, ReplicateDataResponse(status=ok())))  # type: ignore[arg-type]
    assert trace.max_in_flight == 16
    assert {r.timeout for _, r in trace.sent} == {180.0}


def test_one_key_per_batch_and_one_peer_at_a_time_are_allowed() -> None:
    plan = AnnouncePlan([Announcement(A, KEYS)], rng=Fixed(0.5), batch_keys=1, concurrency=1)
    trace = drive(plan, scripted({}, ReplicateDataResponse(status=ok())))  # type: ignore[arg-type]
    assert len(trace.sent) == 3 and plan.result().batches_acknowledged == 3
    for bad in ({"batch_keys": 0}, {"concurrency": 0}):
        with pytest.raises(ValueError, match=r"^batch_keys and concurrency must be at least 1$"):
            AnnouncePlan([], rng=Fixed(0.5), **bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (ReplicateDataResponse(status=failed("Busy")), "answered: Busy"),
        (ReplicateDataResponse(status=failed("")), "answered: failed"),
        (ReplicateDataResponse(status=None), "answered: no status"),  # type: ignore[arg-type]
        (BODYLESS, "answered: no status"),
        (BatchFindValuesResponse(status=ok()), "answered: no status"),
    ],
)
def test_a_peer_refusing_to_the_end_is_failed_with_how_it_answered(body: Reply, error: str) -> None:
    plan = AnnouncePlan([Announcement(A, KEYS)], rng=Fixed(0.5), backoff=DOUBLING)
    drive(plan, scripted({}, body))  # type: ignore[arg-type]
    assert plan.result().failed == [A] and plan.result().errors == {A.id: error}


# --- FetchPlan -------------------------------------------------------------------------------


def fetched(payload: bytes = b"zstd") -> BatchFindValuesResponse:
    return BatchFindValuesResponse(status=ok(), response=payload, done=True)


def test_a_fetch_asks_with_go_s_three_minute_call_and_a_new_token_each_time() -> None:
    reply = scripted({A.id: [REFUSED, REFUSED]}, fetched())
    plan = FetchPlan(A, KEYS, rng=random.Random(0))
    trace = drive(plan, reply)  # type: ignore[arg-type]
    assert [r.timeout for _, r in trace.sent] == [180.0] * 3
    tokens = [r.token for _, r in trace.sent]
    assert all(isinstance(t, int) for t in tokens) and len(set(tokens)) == 3
    assert plan.result() == FetchOutcome(A, b"zstd", True, attempts=3)


def test_before_it_runs_a_fetch_reports_not_run() -> None:
    plan = FetchPlan(A, KEYS, rng=random.Random(0))
    assert plan.result() == FetchOutcome(A, None, error="not run")
    with pytest.raises(ValueError, match=r"^a fetch needs keys$"):
        FetchPlan(A, [], rng=random.Random(0))


def test_an_empty_answer_is_an_empty_payload() -> None:
    plan = FetchPlan(A, KEYS, rng=random.Random(0))
    [request] = plan.poll(0.0)
    answer(plan, request.token, BatchFindValuesResponse(status=ok(), response=None))  # type: ignore[arg-type]
    assert plan.result() == FetchOutcome(A, b"", False, attempts=1)


def test_a_fetch_that_timed_out_is_not_retried_even_with_time_to_spare() -> None:
    # Timed out after 5 s: a retry 10 s later would still fit the 30-second budget.
    plan = FetchPlan(A, KEYS, rng=Fixed(0.5), timeout=5.0)
    trace = drive(plan, scripted({A.id: [None]}, fetched()))  # type: ignore[arg-type]
    assert plan.result() == FetchOutcome(A, None, error="no answer", attempts=1)
    assert len(trace.sent) == 1 and trace.of(Unanswered) == [Unanswered(A)]


def test_a_quick_failure_late_in_a_fetch_is_retried_whatever_the_timeout() -> None:
    # The second try goes out at about 10 s and is refused at once: not a timeout, though
    # 10 s is past the 5-second one.
    reply = scripted({A.id: [BatchFindValuesResponse(status=failed("Busy")), REFUSED]}, fetched())
    plan = FetchPlan(A, KEYS, rng=Fixed(0.5), timeout=5.0)
    trace = drive(plan, reply)  # type: ignore[arg-type]
    assert plan.result() == FetchOutcome(A, b"zstd", True, attempts=3)
    assert [round(t) for t, _ in trace.sent] == [0, 10, 20]


def test_a_fetch_begun_late_counts_its_budget_from_its_first_try() -> None:
    plan = FetchPlan(A, KEYS, rng=Fixed(0.5))
    [first] = plan.poll(100.0)
    plan.on_failure(first.token, REFUSED, 100.5)
    assert not plan.done and plan.next_deadline() == pytest.approx(110.5)
    assert plan.poll(110.0) == []
    [second] = plan.poll(110.5)
    plan.on_failure(second.token, REFUSED, 111.0)
    assert plan.next_deadline() == pytest.approx(121.0)
    [third] = plan.poll(121.0)
    plan.on_failure(third.token, REFUSED, 121.5)  # 21.5 s + 10 s would pass 30 s
    assert plan.result() == FetchOutcome(A, None, error="connection refused", attempts=3)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (BatchFindValuesResponse(status=failed("Busy")), "answered: Busy"),
        (BatchFindValuesResponse(status=failed("")), "answered: failed"),
        (BatchFindValuesResponse(status=None), "answered: no status"),  # type: ignore[arg-type]
        (BODYLESS, "answered: no status"),
        (ReplicateDataResponse(status=ok()), "answered: no status"),
    ],
)
def test_a_fetch_refused_to_the_end_says_how_it_was_answered(body: Reply, error: str) -> None:
    plan = FetchPlan(A, KEYS, rng=Fixed(0.5))
    drive(plan, scripted({}, body))  # type: ignore[arg-type]
    assert plan.result() == FetchOutcome(A, None, error=error, attempts=3)
