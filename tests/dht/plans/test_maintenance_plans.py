"""Pings, the health check, the LRU probe and AllOf, without an event loop."""

from __future__ import annotations

import pytest

from lumera_p2p.content import digest
from lumera_p2p.dht.contacts import wire_node
from lumera_p2p.dht.plans import (
    AllOf,
    Answered,
    Cleared,
    HealthCheckPlan,
    LookupKind,
    LookupParams,
    LookupPlan,
    LookupStarted,
    PingPlan,
    ProbeAnswered,
    ProbeFailed,
    ProbePlan,
    Request,
    Struck,
    Unanswered,
)
from lumera_p2p.errors import TransportError
from lumera_p2p.kademlia import Contact, RoutingTable
from lumera_p2p.wire.messages import Message, MessageType

from .world import ME, ScriptedPeer, World, drive, reader


def contacts(n: int) -> list[Contact]:
    return [Contact(b"lumera-m-%d" % i, f"10.2.0.{i + 1}", 4445) for i in range(n)]


def world_of(nodes: list[Contact], dead: set[int] = frozenset()) -> World:  # type: ignore[assignment]
    return World(
        ScriptedPeer(c, RoutingTable(c.hashed_id), alive=i not in dead) for i, c in enumerate(nodes)
    )


def test_ping_clears_and_learns_those_that_answer_and_strikes_the_rest() -> None:
    nodes = contacts(5)
    plan = PingPlan(nodes, reader())
    trace = drive(plan, world_of(nodes, dead={1, 3}))
    outcome = plan.result()
    assert set(outcome.answered) == {nodes[0], nodes[2], nodes[4]}
    assert set(outcome.failed) == {nodes[1], nodes[3]}
    assert trace.max_in_flight == 5  # all at once without a limit
    assert all(r.mtype is MessageType.PING and r.data is None for _, r in trace.sent)
    for node in outcome.answered:
        assert trace.events.index(Cleared(node)) < trace.events.index(Answered(node))
    assert set(trace.of(Struck)) == {Struck(nodes[1]), Struck(nodes[3])}
    assert trace.of(Unanswered) == []  # a ping on its own does not count toward eviction


def test_an_answer_from_someone_else_is_no_answer() -> None:
    nodes = contacts(2)
    impostor = Contact(b"lumera-impostor", "10.2.9.9", 4445)

    plan = PingPlan([nodes[0]], reader())
    [request] = plan.poll(0.0)
    plan.on_response(
        request.token,
        Message(sender=wire_node(impostor), receiver=None, message_type=1, data=None),
        0.1,
    )
    assert plan.done and plan.result().failed == [nodes[0]]
    assert plan.next_event() is None  # neither cleared nor learned, nor struck
    # A sender we cannot read (unusable address) is taken to be the peer we dialled.
    plan = PingPlan([nodes[1]], reader())
    [request] = plan.poll(0.0)
    odd = Contact(b"lumera-odd", "0.0.0.0", 4445)
    plan.on_response(
        request.token,
        Message(sender=wire_node(odd), receiver=None, message_type=1, data=None),
        0.1,
    )
    assert plan.result().answered == [nodes[1]]


def test_health_check_pings_32_at_once_and_counts_misses_toward_eviction() -> None:
    nodes = contacts(100)
    dead = {7, 8, 50}
    plan = HealthCheckPlan(nodes, reader(), concurrency=32)
    trace = drive(plan, world_of(nodes, dead))
    assert trace.max_in_flight == 32
    assert len(plan.result().answered) == 97
    assert {e.peer for e in trace.of(Unanswered)} == {nodes[i] for i in dead}
    assert {e.peer for e in trace.of(Struck)} == {nodes[i] for i in dead}
    assert set(plan.result().failed) == {nodes[i] for i in dead}


def test_probe_keeps_a_head_that_answers_and_evicts_one_that_does_not() -> None:
    head = contacts(1)[0]
    plan = ProbePlan(head)
    trace = drive(plan, world_of([head]))
    assert plan.result() is True
    assert trace.events == [ProbeAnswered(head)]
    plan = ProbePlan(head)
    trace = drive(plan, world_of([head], dead={0}))
    assert plan.result() is False
    assert trace.events == [Struck(head), ProbeFailed(head)]
    assert len(trace.sent) == 1 and trace.end == 5.0  # the ping's timeout
    assert plan.poll(10.0) == []


def test_all_of_runs_plans_side_by_side_with_a_limit_and_keeps_their_order() -> None:
    nodes = contacts(12)
    plans = [PingPlan([c], reader()) for c in nodes]
    built: list[int] = []

    def lazily() -> object:
        for i, p in enumerate(plans):
            built.append(i)
            yield p

    group = AllOf(lazily(), limit=3)  # type: ignore[arg-type]
    assert built == [0, 1, 2]  # only as many as may run
    trace = drive(group, world_of(nodes, dead={4}))
    assert trace.max_in_flight == 3
    results = group.result()
    assert [r.answered or r.failed for r in results] == [[c] for c in nodes]
    assert results[4].failed == [nodes[4]]
    assert Struck(nodes[4]) in trace.events
    with pytest.raises(ValueError):
        AllOf([], limit=0)
    assert AllOf([]).done


def test_all_of_polls_only_plans_with_news() -> None:
    """A bucket refresh runs ~250 lookups at once; an answer for one must not poll them all."""
    world = World.random(80, 21)
    targets = [digest(b"t%d" % i) for i in range(40)]
    polls: dict[int, int] = {}

    class Counting(LookupPlan):
        def poll(self, now: float) -> list[Request]:
            polls[id(self)] = polls.get(id(self), 0) + 1
            return super().poll(now)

    lookups = [
        Counting(
            LookupKind.NODES,
            t,
            world.nearest(t, 3),
            reader(),
            LookupParams(),
            exclude={ME.hashed_id},
        )
        for t in targets
    ]
    group = AllOf(lookups)
    trace = drive(group, world)
    assert [e.target for e in trace.of(LookupStarted)] == targets
    answers = len(trace.of(Answered)) + len(trace.of(Unanswered))
    # Each lookup is polled about once per answer it gets, not once per answer of any.
    assert sum(polls.values()) <= answers + 2 * len(lookups)
    for lookup, outcome in zip(lookups, group.result(), strict=True):
        assert outcome.closest == world.nearest(lookup.target, 20)


def test_all_of_maps_supersession_and_abandonment_to_its_own_tokens() -> None:
    world = World.random(30, 22)
    t = digest(b"flaky")
    flaky = world.peers[world.nearest(t, 1)[0].hashed_id]
    replies = iter([None])

    def silent_once(peer: ScriptedPeer, request: Request) -> object:
        silent = next(replies, "answer") is None
        return None if silent else peer.honest(request)

    flaky.behaviour = silent_once  # type: ignore[assignment]
    lookups = [
        LookupPlan(LookupKind.NODES, t, world.nearest(t, 3), reader(), LookupParams()),
        LookupPlan(LookupKind.VALUE, digest(b"v"), world.nearest(t, 3), reader(), LookupParams()),
    ]
    group = AllOf(lookups)
    trace = drive(group, world, timeouts={MessageType.BATCH_FIND_NODE: 12.0})
    retries = [r for _, r in trace.sent if r.supersedes is not None]
    assert retries, "the silent attempt was retried"
    tokens = {r.token for _, r in trace.sent}
    assert all(r.supersedes in tokens for r in retries)
    assert len(tokens) == len(trace.sent)  # outer tokens are unique across the sub-plans


def test_ping_failure_of_an_unknown_token_is_ignored() -> None:
    plan = PingPlan(contacts(1), reader())
    plan.poll(0.0)
    plan.on_failure(77, TransportError("?"), 0.0)
    assert not plan.done
