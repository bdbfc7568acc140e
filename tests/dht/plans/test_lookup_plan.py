"""The lookup plan without an event loop: brute-force truth, retries, poison, supersession."""

from __future__ import annotations

import random

import base58
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lumera_p2p.b58 import encode as b58_encode
from lumera_p2p.content import digest
from lumera_p2p.dht.contacts import ContactReader, wire_node
from lumera_p2p.dht.eligibility import Eligibility
from lumera_p2p.dht.options import DHTOptions
from lumera_p2p.dht.plans import (
    Answered,
    LookupKind,
    LookupParams,
    LookupPlan,
    LookupStarted,
    Poisoned,
    Request,
    Unanswered,
)
from lumera_p2p.dht.statuses import ok
from lumera_p2p.errors import TransportError
from lumera_p2p.kademlia import Contact, hash_id
from lumera_p2p.wire.messages import (
    BatchFindNodeRequest,
    BatchFindNodeResponse,
    FindNodeRequest,
    FindNodeResponse,
    FindValueRequest,
    FindValueResponse,
    Message,
    MessageType,
    StoreDataResponse,
)

from .world import ME, ScriptedPeer, World, drive, reader

PARAMS = LookupParams()  # production: k 20, α 6, 5 s timeout, 1 s stall, 2 retries


def plan_for(
    world: World, target: bytes, kind: LookupKind = LookupKind.NODES, **kw: object
) -> LookupPlan:
    seeds = world.nearest(target, 3, alive_only=False)  # a few contacts, maybe dead
    params = kw.pop("params", PARAMS)
    assert isinstance(params, LookupParams)
    return LookupPlan(kind, target, seeds, reader(), params, exclude={ME.hashed_id}, **kw)  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=150),
    seed=st.integers(min_value=0, max_value=10**6),
    dead=st.sampled_from([0.0, 0.0, 0.2, 0.4]),
)
def test_finds_the_true_closest_live_nodes(n: int, seed: int, dead: float) -> None:
    world = World.random(n, seed, dead=dead)
    target = random.Random(seed).randbytes(32)
    plan = plan_for(world, target)
    trace = drive(plan, world, seed=seed)
    outcome = plan.result()
    assert plan.done
    # Every live node among the 20 nearest of all (dead ones included) is known to every peer
    # near the target and must be found; farther live nodes can be crowded out of answers by
    # dead ones, which is Kademlia, not a lookup bug (as in tests/kademlia/test_lookup.py).
    alive = {c.hashed_id for c in world.alive()}
    guaranteed = [c for c in world.nearest(target, 20, alive_only=False) if c.hashed_id in alive]
    seeded_alive = any(s.hashed_id in alive for s in world.nearest(target, 3, alive_only=False))
    if seeded_alive:
        assert outcome.closest[: len(guaranteed)] == guaranteed
        if dead == 0.0:
            assert outcome.closest == world.nearest(target, 20)
    assert all(c.hashed_id in alive for c in outcome.closest)
    # α requests at most, counting only those not yet stalled, is the lookup's own rule; the
    # plan adds one attempt per retry at most, and never two to the same peer at once.
    assert trace.max_per_peer == 1
    assert outcome.messages == len(trace.sent)
    assert all(r.mtype is MessageType.BATCH_FIND_NODE for _, r in trace.sent)
    assert all(isinstance(r.data, BatchFindNodeRequest) for _, r in trace.sent)
    assert trace.events[0] == LookupStarted(target)
    answered = {e.peer.hashed_id for e in trace.of(Answered)}
    assert {c.hashed_id for c in outcome.closest} <= answered
    dead_ids = {c.hashed_id for c in world.contacts()} - {c.hashed_id for c in world.alive()}
    assert not answered & dead_ids
    # Every failure of a dead peer was reported; every reported peer was asked.
    asked = {r.peer.hashed_id for _, r in trace.sent}
    assert {e.peer.hashed_id for e in trace.of(Unanswered)} <= asked


def test_same_seed_same_requests() -> None:
    world = World.random(120, 3, dead=0.3)
    target = digest(b"replay")
    first = drive(plan_for(world, target), world, seed=9)
    world = World.random(120, 3, dead=0.3)
    second = drive(plan_for(world, target), world, seed=9)
    assert [(t, r.token, r.peer, r.mtype) for t, r in first.sent] == [
        (t, r.token, r.peer, r.mtype) for t, r in second.sent
    ]
    assert first.events == second.events


def test_a_failed_peer_is_asked_again_up_to_the_retries() -> None:
    """Production's lookup_retries=2: a peer whose request fails is asked twice more."""
    world = World.random(30, 5)
    target = digest(b"retry")
    flaky = world.peers[world.nearest(target, 1)[0].hashed_id]
    fails = iter([TransportError("reset"), TransportError("reset")])

    def twice_then_honest(peer: ScriptedPeer, request: Request) -> object:
        return next(fails, None) or peer.honest(request)

    flaky.behaviour = twice_then_honest  # type: ignore[assignment]
    plan = plan_for(world, target)
    trace = drive(plan, world)
    asked = [r for _, r in trace.sent if r.peer == flaky.contact]
    assert len(asked) == 3  # the first try and two retries
    assert plan.result().closest[0] == flaky.contact
    assert len([e for e in trace.of(Unanswered) if e.peer == flaky.contact]) == 2
    assert plan.result().failures == 2

    # Without retries it is given up after the first failure.
    world = World.random(30, 5)
    flaky = world.peers[world.nearest(target, 1)[0].hashed_id]
    flaky.behaviour = lambda peer, request: TransportError("reset")
    plan = plan_for(world, target, params=LookupParams(retries=0))
    trace = drive(plan, world)
    assert len([r for _, r in trace.sent if r.peer == flaky.contact]) == 1
    assert flaky.contact not in plan.result().closest


def test_a_retry_supersedes_the_attempt_the_lookup_gave_up_on() -> None:
    """A silent peer times out inside the lookup (5 s) long before its RPC does (FindNode
    10 s): the retry names the earlier attempt, so a driver cancels it and its late failure
    never counts against the new one."""
    world = World.random(25, 8)
    target = world.nearest(digest(b"slow"), 1)[0].hashed_id
    slow = world.peers[world.nearest(target, 1)[0].hashed_id]
    replies = iter([None, None])  # silent twice, then honest

    def behaviour(peer: ScriptedPeer, request: Request) -> object:
        return None if next(replies, "answer") is None else peer.honest(request)

    slow.behaviour = behaviour  # type: ignore[assignment]
    plan = plan_for(world, target)
    trace = drive(plan, world, timeouts={MessageType.BATCH_FIND_NODE: 12.0})
    attempts = [r for _, r in trace.sent if r.peer == slow.contact]
    assert len(attempts) == 3
    assert attempts[0].supersedes is None
    assert attempts[1].supersedes == attempts[0].token
    assert attempts[2].supersedes == attempts[1].token
    assert attempts[0].token in trace.cancelled and attempts[1].token in trace.cancelled
    assert slow.contact in plan.result().closest


def test_find_value_stops_at_the_first_verified_value_and_abandons_the_rest() -> None:
    world = World.random(60, 11)
    value = b"the value"
    key = digest(value)
    holder = world.peers[world.nearest(key, 4)[3].hashed_id]
    holder.values[key] = value
    plan = plan_for(world, key, LookupKind.VALUE)
    trace = drive(plan, world)
    outcome = plan.result()
    assert outcome.value == value
    assert outcome.value_from == holder.contact
    assert all(isinstance(r.data, FindValueRequest) for _, r in trace.sent)
    # Whatever was still outstanding when the value came is no longer wanted: every request
    # was answered, failed, or abandoned at the end.
    answered_or_failed = len(trace.of(Answered)) + len(trace.of(Unanswered))
    assert answered_or_failed + len(trace.cancelled) == len(trace.sent)
    assert plan.poll(trace.end + 100.0) == []


def test_find_value_asks_only_the_nearest_first_and_widens_when_it_lacks_the_value() -> None:
    world = World.random(60, 14)
    value = b"held by the six nearest"
    key = digest(value)
    near = world.nearest(key, 6)
    for contact in near:
        world.peers[contact.hashed_id].values[key] = value
    # Seeded with the six nearest (a routing table that knows them): one request suffices.
    plan = LookupPlan(LookupKind.VALUE, key, near, reader(), PARAMS, exclude={ME.hashed_id})
    trace = drive(plan, world)
    assert plan.result().value == value
    assert [r.peer for _, r in trace.sent] == [near[0]]
    # The nearest has lost it: the lookup widens to α at once and still finds it.
    del world.peers[near[0].hashed_id].values[key]
    plan = LookupPlan(LookupKind.VALUE, key, near, reader(), PARAMS, exclude={ME.hashed_id})
    trace = drive(plan, world)
    assert plan.result().value == value
    assert trace.sent[0][1].peer == near[0]
    assert 2 <= len(trace.sent) <= 1 + PARAMS.alpha
    # With value_alpha = α (Go's way) the first poll asks six.
    wide = LookupParams(value_alpha=PARAMS.alpha)
    plan = LookupPlan(LookupKind.VALUE, key, near, reader(), wide, exclude={ME.hashed_id})
    trace = drive(plan, world)
    assert len([t for t, _ in trace.sent if t == 0.0]) == PARAMS.alpha


def test_find_value_widens_when_the_nearest_is_silent() -> None:
    world = World.random(60, 15)
    value = b"v"
    key = digest(value)
    near = world.nearest(key, 6)
    world.peers[near[0].hashed_id].alive = False
    world.peers[near[1].hashed_id].values[key] = value
    plan = LookupPlan(LookupKind.VALUE, key, near, reader(), PARAMS, exclude={ME.hashed_id})
    trace = drive(plan, world)
    assert plan.result().value == value
    # The first request stalled (1 s) before anyone else was asked.
    assert trace.sent[0][1].peer == near[0]
    assert trace.sent[1][0] == pytest.approx(PARAMS.stall)


def test_a_poisoned_value_is_reported_and_its_sender_never_asked_again() -> None:
    world = World.random(60, 12)
    value = b"real"
    key = digest(value)
    near = world.nearest(key, 8)
    liar = world.peers[near[0].hashed_id]
    liar.behaviour = lambda peer, request: FindValueResponse(
        status=ok(), closest=[], value=b"forged"
    )
    world.peers[near[5].hashed_id].values[key] = value
    plan = plan_for(world, key, LookupKind.VALUE)
    trace = drive(plan, world)
    assert plan.result().value == value
    assert trace.of(Poisoned) == [Poisoned(liar.contact, key)]
    assert plan.result().poisoners == [liar.contact]
    assert len([r for _, r in trace.sent if r.peer == liar.contact]) == 1
    assert liar.contact not in {e.peer for e in trace.of(Answered)}


def test_an_answer_with_the_wrong_body_counts_as_no_answer() -> None:
    world = World.random(30, 13)
    target = digest(b"odd")
    odd = world.peers[world.nearest(target, 1)[0].hashed_id]
    odd.behaviour = lambda peer, request: StoreDataResponse(status=ok())
    plan = plan_for(world, target, params=LookupParams(retries=0))
    trace = drive(plan, world)
    assert Unanswered(odd.contact) in trace.events
    assert Answered(odd.contact) not in trace.events
    assert odd.contact not in plan.result().closest


def test_find_node_by_id_asks_with_the_node_id() -> None:
    world = World.random(40, 14)
    node_id = b"lumera1someone"
    seeds = world.nearest(hash_id(node_id), 3)
    plan = LookupPlan.for_node_id(node_id, seeds, reader(), PARAMS, exclude={ME.hashed_id})
    assert plan.target == hash_id(node_id)
    trace = drive(plan, world)
    assert all(
        isinstance(r.data, FindNodeRequest) and r.data.target == node_id for _, r in trace.sent
    )
    assert [c.hashed_id for c in plan.result().closest] == [
        c.hashed_id for c in world.nearest(hash_id(node_id), 20)
    ]


def test_late_answers_for_forgotten_tokens_are_ignored() -> None:
    world = World.random(10, 15)
    plan = plan_for(world, digest(b"x"))
    requests = plan.poll(0.0)
    plan.on_response(10_000, Message(sender=None, receiver=None, message_type=6), 0.1)
    plan.on_failure(10_001, TransportError("?"), 0.1)
    assert plan.next_event() == LookupStarted(digest(b"x"))
    assert plan.next_event() is None
    assert requests


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="node_id"):
        LookupPlan(LookupKind.NODE_ID, bytes(32), [], reader(), PARAMS)
    with pytest.raises(ValueError, match="hash"):
        LookupPlan(LookupKind.NODE_ID, bytes(32), [], reader(), PARAMS, node_id=b"x")
    with pytest.raises(ValueError, match="32 bytes"):
        LookupPlan(LookupKind.VALUE, b"short", [], reader(), PARAMS)


def test_no_seeds_is_done_at_once() -> None:
    plan = LookupPlan(LookupKind.NODES, bytes(32), [], reader(), PARAMS)
    assert plan.done
    assert plan.poll(0.0) == []
    assert plan.result().closest == []


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        (LookupKind.NODES, "find_node"),
        (LookupKind.NODES, "find_value"),
        (LookupKind.NODE_ID, "batch_find_node"),
        (LookupKind.NODE_ID, "find_value"),
        (LookupKind.VALUE, "find_node"),
        (LookupKind.VALUE, "batch_find_node"),
    ],
)
def test_an_answer_of_another_lookup_kind_counts_as_no_answer(kind: LookupKind, body: str) -> None:
    world = World.random(30, 16)
    target = digest(b"kinds")
    odd = world.peers[world.nearest(target, 1)[0].hashed_id]
    near = [wire_node(c) for c in world.nearest(target, 5)]
    bodies = {
        "find_node": FindNodeResponse(status=ok(), closest=near),
        "find_value": FindValueResponse(status=ok(), closest=near),
        "batch_find_node": BatchFindNodeResponse(
            status=ok(), closest_nodes={base58.b58encode(target).decode(): near}
        ),
    }
    odd.behaviour = lambda peer, request: bodies[body]
    node_id = b"lumera-kinds"
    if kind is LookupKind.NODE_ID:
        target = hash_id(node_id)
        seeds = world.nearest(target, 3, alive_only=False)
        odd = world.peers[seeds[0].hashed_id]
        odd.behaviour = lambda peer, request: bodies[body]
        plan = LookupPlan.for_node_id(
            node_id, seeds, reader(), LookupParams(retries=0), exclude={ME.hashed_id}
        )
    else:
        plan = plan_for(world, target, kind, params=LookupParams(retries=0))
    trace = drive(plan, world)
    assert Unanswered(odd.contact) in trace.events
    assert Answered(odd.contact) not in trace.events


def test_an_answer_for_another_target_brings_no_contacts() -> None:
    world = World.random(30, 17)
    target = digest(b"elsewhere")
    (seed,) = world.nearest(target, 1)
    others = [wire_node(c) for c in world.nearest(target, 5)]
    world.peers[seed.hashed_id].behaviour = lambda peer, request: BatchFindNodeResponse(
        status=ok(), closest_nodes={base58.b58encode(bytes(32)).decode(): others}
    )
    plan = LookupPlan(LookupKind.NODES, target, [seed], reader(), PARAMS, exclude={ME.hashed_id})
    trace = drive(plan, world)
    assert trace.of(Answered) == [Answered(seed)]
    assert plan.result().closest == [seed]
    assert len(trace.sent) == 1


def test_the_params_reach_the_lookup() -> None:
    world = World.random(60, 18)
    target = digest(b"params")
    seeds = world.nearest(target, 10)
    plan = LookupPlan(
        LookupKind.NODES, target, seeds, reader(), LookupParams(k=3, alpha=2), exclude=set()
    )
    assert len(plan.poll(0.0)) == 2  # alpha
    plan = LookupPlan(LookupKind.NODES, target, seeds, reader(), LookupParams(k=3, alpha=2))
    drive(plan, world)
    outcome = plan.result()
    assert outcome.closest == world.nearest(target, 3)  # k
    assert outcome.rounds >= 1 and outcome.messages >= 2


def test_stall_and_timeout_come_from_the_params() -> None:
    (silent,) = World.random(1, 19).contacts()
    params = LookupParams(stall=0.5, timeout=2.5, retries=0)
    plan = LookupPlan(LookupKind.NODES, digest(b"t"), [silent], reader(), params)
    assert [r.peer for r in plan.poll(0.0)] == [silent]
    assert plan.next_deadline() == 0.5
    assert plan.poll(0.5) == []
    assert plan.next_deadline() == 2.5
    assert not plan.done
    plan.poll(2.5)
    assert plan.done
    assert plan.result().failures == 1


def test_excluded_peers_are_never_asked() -> None:
    world = World.random(40, 20)
    target = digest(b"exclude")
    seeds = world.nearest(target, 6)
    barred = {seeds[0].hashed_id, seeds[3].hashed_id}
    plan = LookupPlan(LookupKind.NODES, target, seeds, reader(), PARAMS, exclude=barred)
    trace = drive(plan, world)
    assert trace.sent and all(r.peer.hashed_id not in barred for _, r in trace.sent)
    node_id = b"lumera-excluded"
    seeds = world.nearest(hash_id(node_id), 6)
    barred = {seeds[1].hashed_id}
    plan = LookupPlan.for_node_id(node_id, seeds, reader(), PARAMS, exclude=barred)
    trace = drive(plan, world)
    assert trace.sent and all(r.peer.hashed_id not in barred for _, r in trace.sent)


def test_params_from_the_node_options() -> None:
    options = DHTOptions(
        k=7,
        alpha=2,
        lookup_timeout=3.5,
        lookup_stall=0.75,
        lookup_retries=4,
        find_value_alpha=3,
    )
    assert LookupParams.from_options(options) == LookupParams(
        k=7, alpha=2, timeout=3.5, stall=0.75, retries=4, value_alpha=3
    )


def test_a_value_known_to_be_arriving_neither_stalls_nor_times_out_before_its_time() -> None:
    world = World.random(6, 21)
    value = b"a large value"
    key = digest(value)
    near = world.nearest(key, 3)
    params = LookupParams(stall=1.0, timeout=5.0, retries=0)
    plan = LookupPlan(LookupKind.VALUE, key, near, reader(), params, exclude={ME.hashed_id})
    [first] = plan.poll(0.0)
    assert first.peer == near[0] and first.watch
    plan.on_progress(first.token + 100, 60.0, 0.5)  # not one of its tokens: ignored
    plan.on_progress(first.token, 60.0, 0.5)  # its header came: 60 s more
    assert plan.poll(2.0) == []  # past the stall: nobody else is asked
    assert plan.poll(6.0) == [] and not plan.done  # past the timeout: still waiting
    assert plan.next_deadline() == pytest.approx(65.5)
    answer = Message(sender=wire_node(near[0]), data=FindValueResponse(status=ok(), value=value))
    plan.on_response(first.token, answer, 40.0)
    assert plan.done and plan.result().value == value


def test_without_progress_the_same_request_stalls_and_the_lookup_widens() -> None:
    world = World.random(6, 21)
    key = digest(b"a large value")
    near = world.nearest(key, 3)
    params = LookupParams(stall=1.0, timeout=5.0, retries=0)
    plan = LookupPlan(LookupKind.VALUE, key, near, reader(), params, exclude={ME.hashed_id})
    assert [r.peer for r in plan.poll(0.0)] == [near[0]]
    assert [r.peer for r in plan.poll(2.0)][:1] == [near[1]]


def test_a_lookup_stopped_early_reports_whom_it_never_asked_nearest_first() -> None:
    world = World.random(60, 22)
    target = digest(b"enough")
    seeds = world.nearest(target, 20)
    plan = LookupPlan(
        LookupKind.NODES,
        target,
        seeds,
        reader(),
        PARAMS,
        exclude={ME.hashed_id},
        enough=(3, lambda c: True),
    )
    trace = drive(plan, world)
    outcome = plan.result()
    asked = {r.peer for _, r in trace.sent}
    assert outcome.unasked and not asked & set(outcome.unasked)
    t = int.from_bytes(target, "big")
    distances = [int.from_bytes(c.hashed_id, "big") ^ t for c in outcome.unasked]
    assert distances == sorted(distances)


def test_a_node_the_allowlist_refused_is_asked_once_a_chain_refresh_allows_it() -> None:
    # The reader's verdict on a node's fields is remembered; the allowlist is asked for every
    # answer, so a node refused in one answer counts in a later one once the chain lists it.
    a, c, x = (Contact(b"lumera1al-%d" % i, "127.0.0.1", 4500 + i) for i in range(3))
    target = digest(b"allowlist")
    eligibility = Eligibility()
    eligibility.update([a.hashed_id, c.hashed_id], [])
    plan = LookupPlan(
        LookupKind.NODES,
        target,
        [a, c],
        ContactReader(ME.hashed_id, eligibility, allow_private=True),
        PARAMS,
        exclude={ME.hashed_id},
    )
    requests = {r.peer: r.token for r in plan.poll(0.0)}
    assert set(requests) == {a, c}

    def answer(peer: Contact) -> Message:
        body = BatchFindNodeResponse(
            status=ok(), closest_nodes={b58_encode(target): [wire_node(x)]}
        )
        return Message(wire_node(peer), wire_node(ME), int(MessageType.BATCH_FIND_NODE), body)

    plan.on_response(requests[a], answer(a), 0.1)
    assert [r.peer for r in plan.poll(0.1)] == []  # x is not routable yet
    eligibility.update([a.hashed_id, c.hashed_id, x.hashed_id], [])
    plan.on_response(requests[c], answer(c), 0.2)
    assert [r.peer for r in plan.poll(0.2)] == [x]
