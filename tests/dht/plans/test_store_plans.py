"""Store and batch store as plans: waves, replacements, the 75 % rule, chunking, concurrency."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lumera_p2p.content import digest
from lumera_p2p.dht.plans import (
    BatchStorePlan,
    LookupKind,
    LookupParams,
    LookupPlan,
    RefusedStore,
    Request,
    StorePlan,
    Struck,
    Unanswered,
    chunks_by_size,
)
from lumera_p2p.dht.statuses import BATCH_NOT_STORE_ELIGIBLE, NOT_STORE_ELIGIBLE, failed
from lumera_p2p.errors import TransportError
from lumera_p2p.kademlia import Contact, RoutingTable
from lumera_p2p.wire.messages import (
    BatchStoreDataRequest,
    MessageType,
    StoreDataRequest,
    StoreDataResponse,
)

from .world import BODYLESS, ME, ScriptedPeer, World, drive, reader

# --- single store ---------------------------------------------------------------------------


def store_plan(world: World, value: bytes, **kw: object) -> StorePlan:
    key = digest(value)
    seeds = world.nearest(key, 4, alive_only=False)
    lookup = LookupPlan(
        LookupKind.NODES, key, seeds, reader(), LookupParams(), exclude={ME.hashed_id}
    )
    eligible = kw.pop("store_eligible", lambda c: True)
    return StorePlan(key, value, 1, lookup, replicas=6, store_eligible=eligible)  # type: ignore[arg-type]


def early_store_plan(
    world: World,
    value: bytes,
    eligible: Callable[[Contact], bool],
    seeds: int = 20,
    *,
    stop_early: bool = True,
) -> StorePlan:
    """A store as the node builds it: its lookup stops at six eligible answers (with
    ``stop_early=False``, the same store whose lookup runs to its ``k`` nearest)."""
    key = digest(value)
    lookup = LookupPlan(
        LookupKind.NODES,
        key,
        world.nearest(key, 64)[-seeds:],  # a table that knows only far (live) nodes
        reader(),
        LookupParams(),
        exclude={ME.hashed_id},
        enough=(6, eligible) if stop_early else None,
    )
    return StorePlan(key, value, 0, lookup, replicas=6, store_eligible=eligible)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=150),
    seed=st.integers(min_value=0, max_value=10**6),
    dead=st.sampled_from([0.0, 0.0, 0.2]),
    ineligible=st.sampled_from([0.0, 0.0, 0.3]),
    seeds=st.integers(min_value=1, max_value=20),
)
@example(n=51, seed=619, dead=0.2, ineligible=0.3, seeds=4)  # compared once to other seeds
def test_an_early_stopping_store_finds_the_six_nearest_eligible_live_nodes(
    n: int, seed: int, dead: float, ineligible: float, seeds: int
) -> None:
    world = World.random(n, seed, dead=dead)
    rng = random.Random(seed)
    barred = {c.hashed_id for c in world.contacts() if rng.random() < ineligible}

    def eligible(contact: Contact) -> bool:
        return contact.hashed_id not in barred

    value = b"value %d" % seed
    plan = early_store_plan(world, value, eligible, seeds)
    trace = drive(plan, world, seed=seed)
    key = digest(value)
    truth = [c for c in world.nearest(key, n) if eligible(c)][:6]
    assert set(plan.result().stored_on) == set(truth)
    # ... and with no more lookup messages than the full lookup's from the same seeds.
    full = early_store_plan(world, value, eligible, seeds, stop_early=False)
    full_trace = drive(full, world, seed=seed)
    early_lookups = [r for _, r in trace.sent if r.mtype is MessageType.BATCH_FIND_NODE]
    full_lookups = [r for _, r in full_trace.sent if r.mtype is MessageType.BATCH_FIND_NODE]
    assert len(early_lookups) <= len(full_lookups)
    assert set(full.result().stored_on) == set(truth)


def test_a_store_seeded_with_the_nearest_sends_six_lookups_and_six_stores() -> None:
    world = World.random(64, 3)
    value = b"twelve messages"
    key = digest(value)
    lookup = LookupPlan(
        LookupKind.NODES,
        key,
        world.nearest(key, 20),
        reader(),
        LookupParams(),
        exclude={ME.hashed_id},
        enough=(6, lambda c: True),
    )
    plan = StorePlan(key, value, 0, lookup, replicas=6, store_eligible=lambda c: True)
    trace = drive(plan, world)
    assert plan.result().replicas == 6
    assert Counter(trace.sent_types()) == {
        MessageType.BATCH_FIND_NODE: 6,
        MessageType.STORE_DATA: 6,
    }


def test_stores_on_the_six_nearest_in_one_wave() -> None:
    world = World.random(50, 1)
    plan = store_plan(world, b"six")
    trace = drive(plan, world)
    outcome = plan.result()
    assert outcome.replicas == 6
    assert outcome.waves == 1
    assert set(outcome.stored_on) == set(world.nearest(digest(b"six"), 6))
    stores = [r for _, r in trace.sent if r.mtype is MessageType.STORE_DATA]
    assert len(stores) == 6
    assert all(isinstance(r.data, StoreDataRequest) and r.data.type == 1 for r in stores)
    # The lookup came first: no StoreData before the last lookup request was sent.
    first_store = trace.sent.index(next((t, r) for t, r in trace.sent if r in stores))
    assert all(r.mtype is MessageType.BATCH_FIND_NODE for _, r in trace.sent[:first_store])
    assert outcome.lookup is not None and len(outcome.lookup.closest) == 20


def test_failed_and_refusing_nodes_are_replaced_by_the_next_nearest() -> None:
    world = World.random(50, 2)
    key = digest(b"waves")
    near = world.nearest(key, 12)
    world.peers[near[0].hashed_id].behaviour = lambda peer, request: (
        TransportError("reset") if request.mtype is MessageType.STORE_DATA else peer.honest(request)
    )
    world.peers[near[2].hashed_id].behaviour = lambda peer, request: (
        StoreDataResponse(status=failed(NOT_STORE_ELIGIBLE))
        if request.mtype is MessageType.STORE_DATA
        else peer.honest(request)
    )
    world.peers[near[3].hashed_id].behaviour = lambda peer, request: (
        StoreDataResponse(status=failed("disk full"))
        if request.mtype is MessageType.STORE_DATA
        else peer.honest(request)
    )
    plan = store_plan(world, b"waves")
    trace = drive(plan, world)
    outcome = plan.result()
    assert outcome.replicas == 6
    assert set(outcome.stored_on) == {near[1], near[4], near[5], near[6], near[7], near[8]}
    assert set(outcome.failed) == {near[0], near[3]}
    assert outcome.refused == [near[2]]
    assert outcome.waves == 2
    assert trace.of(RefusedStore) == [RefusedStore(near[2])]
    stores = [r.peer for _, r in trace.sent if r.mtype is MessageType.STORE_DATA]
    assert set(stores[:6]) == set(near[:6])  # the first wave; then the three replacements
    assert set(stores[6:]) == set(near[6:9])


def test_only_store_eligible_nodes_are_sent_the_value() -> None:
    world = World.random(40, 3)
    key = digest(b"eligible")
    near = world.nearest(key, 20)
    barred = {c.hashed_id for c in near[:4]}
    plan = store_plan(world, b"eligible", store_eligible=lambda c: c.hashed_id not in barred)
    trace = drive(plan, world)
    stored = [r.peer for _, r in trace.sent if r.mtype is MessageType.STORE_DATA]
    assert set(stored) == set(near[4:10])
    assert plan.result().replicas == 6


def test_fewer_replicas_when_candidates_run_out() -> None:
    world = World.random(5, 4)
    plan = store_plan(world, b"few")
    drive(plan, world)
    assert plan.result().replicas == 5


def test_the_lookup_must_be_for_the_key() -> None:
    lookup = LookupPlan(LookupKind.NODES, bytes(32), [], reader(), LookupParams())
    with pytest.raises(ValueError, match="for the key"):
        StorePlan(digest(b"x"), b"x", 0, lookup, replicas=6, store_eligible=lambda c: True)


# --- batch store ----------------------------------------------------------------------------


def peers(n: int) -> list[Contact]:
    return [Contact(b"lumera-bs-%d" % i, f"10.1.0.{i + 1}", 4445) for i in range(n)]


def targets_for(keys: list[bytes], nodes: list[Contact], replicas: int = 6) -> list[list[Contact]]:
    out = []
    for key in keys:
        t = int.from_bytes(key, "big")
        out.append(sorted(nodes, key=lambda c: c.int_id ^ t)[:replicas])
    return out


def world_of(nodes: list[Contact]) -> World:
    return World(ScriptedPeer(c, RoutingTable(c.hashed_id)) for c in nodes)


def test_each_node_gets_exactly_its_share() -> None:
    nodes = peers(10)
    values = [b"value %d" % i for i in range(200)]
    keys = [digest(v) for v in values]
    targets = targets_for(keys, nodes)
    world = world_of(nodes)
    plan = BatchStorePlan(keys, values, targets, datatype=1, task_id="t-9")
    trace = drive(plan, world)
    report = plan.result()
    assert report.failure is None
    assert report.task_id == "t-9"
    assert report.success_rate == 1.0
    assert report.requests == len({c.hashed_id for ts in targets for c in ts}) == len(trace.sent)
    for peer in world.peers.values():
        expected = {keys[i] for i, ts in enumerate(targets) if peer.contact in ts}
        assert set(peer.values) == expected
    assert all(
        isinstance(r.data, BatchStoreDataRequest) and r.data.type == 1 for _, r in trace.sent
    )
    assert set(report.per_node) == {c.address for ts in targets for c in ts}


def test_shares_are_split_by_size_and_sent_at_most_sixteen_at_once() -> None:
    nodes = peers(40)
    values = [random.Random(i).randbytes(1000) for i in range(300)]
    keys = [digest(v) for v in values]
    targets = targets_for(keys, nodes)
    plan = BatchStorePlan(keys, values, targets, chunk_bytes=5000)
    trace = drive(plan, world_of(nodes))
    assert plan.result().failure is None
    assert trace.max_in_flight == 16
    for _, request in trace.sent:
        assert isinstance(request.data, BatchStoreDataRequest)
        assert sum(len(v) for v in request.data.data) <= 5000
    assert plan.result().requests > len(plan.result().per_node)


def test_requests_are_spread_over_the_nodes() -> None:
    # Three nodes with six chunks each, four requests at once: never three to one node
    # while another has none (the least busy node gets the next request).
    nodes = peers(3)
    values = [random.Random(i).randbytes(1000) for i in range(18)]
    keys = [digest(v) for v in values]

    def plan() -> BatchStorePlan:
        return BatchStorePlan(keys, values, [nodes] * 18, chunk_bytes=3000, concurrency=4)

    first = plan().poll(0.0)
    assert [r.peer for r in first] == [nodes[0], nodes[1], nodes[2], nodes[0]]
    run = plan()
    trace = drive(run, world_of(nodes))
    assert trace.max_per_peer == 2
    assert run.result().requests == len(trace.sent) == 18
    assert run.result().failure is None
    # On a tie the node with the most left to send goes first: here the third, then the
    # second (its 2 chunks against the first's 1).
    shares = [[nodes[0]]] * 3 + [[nodes[1]]] * 6 + [[nodes[2]]] * 9
    uneven = BatchStorePlan(keys, values, shares, chunk_bytes=3000, concurrency=3)
    assert [r.peer for r in uneven.poll(0.0)] == [nodes[2], nodes[1], nodes[0]]


def test_a_nodes_first_requests_ramp_up_to_the_chunk_size() -> None:
    [a] = peers(1)
    mib = 1024 * 1024
    values = [bytes([i]) * (mib // 4) for i in range(64)]  # 16 MiB for one node
    plan = BatchStorePlan([digest(v) for v in values], values, [[a]] * 64, chunk_bytes=8 * mib)
    trace = drive(plan, world_of([a]))
    sizes = [sum(map(len, r.data.data)) // (mib // 4) for _, r in trace.sent]  # type: ignore[union-attr]
    assert sizes == [4, 8, 16, 32, 4]  # 1, 2, 4, 8 MiB, then the rest
    assert plan.result().replicas == [1] * 64
    # A first chunk is never below RAMP_MIN_BYTES, or the whole limit when that is less.
    plan = BatchStorePlan([digest(v) for v in values], values, [[a]] * 64, chunk_bytes=2 * mib)
    trace = drive(plan, world_of([a]))
    assert [sum(map(len, r.data.data)) // (mib // 4) for _, r in trace.sent] == [4] + [8] * 7 + [4]  # type: ignore[union-attr]


def outcome_world(nodes: list[Contact], outcomes: dict[int, object]) -> World:
    """Node i fails (TransportError), refuses, errs, or is silent per ``outcomes[i]``."""
    world = world_of(nodes)
    for index, outcome in outcomes.items():
        peer = world.peers[nodes[index].hashed_id]
        if outcome == "fail":
            peer.behaviour = lambda p, r: TransportError("reset")
        elif outcome == "refuse":
            peer.behaviour = lambda p, r: StoreDataResponse(status=failed(BATCH_NOT_STORE_ELIGIBLE))
        elif outcome == "error":
            peer.behaviour = lambda p, r: StoreDataResponse(status=failed("disk full"))
        elif outcome == "silent":
            peer.alive = False
    return world


def one_each(nodes: list[Contact]) -> tuple[list[bytes], list[bytes], list[list[Contact]]]:
    values = [b"for node %d" % i for i in range(len(nodes))]
    return [digest(v) for v in values], values, [[c] for c in nodes]


def test_seventy_five_percent_is_enough() -> None:
    nodes = peers(4)
    plan = BatchStorePlan(*one_each(nodes))
    trace = drive(plan, outcome_world(nodes, {0: "fail"}))
    report = plan.result()
    assert (report.requests, report.succeeded) == (4, 3)
    assert report.failure is None
    assert report.per_node[nodes[0].address] is False
    assert trace.of(Struck) == [Struck(nodes[0])]  # Go counts it on the ban list


def test_below_seventy_five_percent_fails() -> None:
    nodes = peers(4)
    plan = BatchStorePlan(*one_each(nodes))
    drive(plan, outcome_world(nodes, {0: "error", 1: "silent"}))
    report = plan.result()
    assert report.failure == "batch store reached 2/4 nodes (50% < 75%)"


def test_refusals_by_ineligible_nodes_leave_the_count() -> None:
    nodes = peers(4)
    plan = BatchStorePlan(*one_each(nodes))
    trace = drive(plan, outcome_world(nodes, {0: "refuse", 1: "refuse"}))
    report = plan.result()
    assert (report.requests, report.succeeded, report.refused_not_eligible) == (4, 2, 2)
    assert report.success_rate == 1.0 and report.failure is None
    assert set(trace.of(RefusedStore)) == {RefusedStore(nodes[0]), RefusedStore(nodes[1])}
    # ...and when every request was refused, nothing was performed.
    plan = BatchStorePlan(*one_each(nodes))
    drive(plan, outcome_world(nodes, dict.fromkeys(range(4), "refuse")))
    assert plan.result().failure == "no store operations were performed"


def test_keys_without_targets_fail_before_anything_is_sent() -> None:
    nodes = peers(3)
    keys, values, targets = one_each(nodes)
    plan = BatchStorePlan(keys, values, [targets[0], [], []])
    assert plan.done and plan.poll(0.0) == []
    assert plan.result().failure == "no eligible store peers for 2/3 keys"
    plan = BatchStorePlan(keys, values, [[], [], []])
    assert plan.result().failure == "no store-eligible peers for any key: stored locally only"
    empty = BatchStorePlan([], [], [])
    assert empty.done and empty.result().failure is None
    with pytest.raises(ValueError, match="one entry per value"):
        BatchStorePlan(keys, values, [])


@settings(max_examples=40, deadline=None)
@given(
    outcomes=st.lists(
        st.sampled_from(["ok", "ok", "ok", "fail", "refuse", "error", "silent"]),
        min_size=1,
        max_size=30,
    ),
    seed=st.integers(0, 1000),
)
def test_the_report_counts_every_request_once(outcomes: list[str], seed: int) -> None:
    nodes = peers(len(outcomes))
    world = outcome_world(nodes, {i: o for i, o in enumerate(outcomes) if o != "ok"})
    plan = BatchStorePlan(*one_each(nodes), concurrency=4)
    trace = drive(plan, world, seed=seed)
    report = plan.result()
    assert trace.max_in_flight <= 4
    assert report.requests == len(outcomes) == len(trace.sent)
    assert report.succeeded == outcomes.count("ok")
    assert report.refused_not_eligible == outcomes.count("refuse")
    counted = len(outcomes) - outcomes.count("refuse")
    if counted == 0:
        assert report.failure == "no store operations were performed"
    elif outcomes.count("ok") / counted < 0.75:
        assert report.failure is not None and "batch store reached" in report.failure
    else:
        assert report.failure is None
    assert len(trace.of(Struck)) == outcomes.count("fail") + outcomes.count("silent")


def test_chunks_by_size() -> None:
    values = [b"a" * 40, b"b" * 40, b"c" * 40, b"d" * 200, b"e" * 10]
    assert chunks_by_size(values, 100) == [values[0:2], values[2:3], values[3:4], values[4:5]]
    assert chunks_by_size([], 100) == []
    assert [v for chunk in chunks_by_size(values, 10**6) for v in chunk] == values


def test_answers_to_unknown_tokens_are_ignored() -> None:
    nodes = peers(2)
    plan = BatchStorePlan(*one_each(nodes))
    sent: list[Request] = plan.poll(0.0)
    plan.on_failure(999, TransportError("?"), 0.0)
    assert plan.result().requests == 0 and not plan.done
    assert len(sent) == 2


def store_data_fails(peer: ScriptedPeer, request: Request) -> object:
    if request.mtype is MessageType.STORE_DATA:
        return TransportError("reset")
    return peer.honest(request)


def test_one_failure_is_replaced_and_each_wave_takes_the_next_unasked() -> None:
    world = World.random(50, 5)
    key = digest(b"three waves")
    near = world.nearest(key, 12)
    # near[2] fails in the first wave; its replacement near[6] fails too; near[7] stores.
    for index in (2, 6):
        world.peers[near[index].hashed_id].behaviour = store_data_fails  # type: ignore[assignment]
    plan = store_plan(world, b"three waves")
    trace = drive(plan, world)
    outcome = plan.result()
    assert outcome.key == key
    assert outcome.waves == 3
    assert set(outcome.stored_on) == {near[i] for i in (0, 1, 3, 4, 5, 7)}
    assert outcome.failed == [near[2], near[6]]
    stores = [r for _, r in trace.sent if r.mtype is MessageType.STORE_DATA]
    assert [r.peer for r in stores[6:]] == [near[6], near[7]]
    assert len({r.peer for r in stores}) == len(stores)  # nobody is sent the value twice
    assert all(
        isinstance(r.data, StoreDataRequest) and bytes(r.data.data) == b"three waves"
        for r in stores
    )


def test_no_extra_wave_once_the_candidates_are_used_up() -> None:
    world = World.random(5, 4)
    plan = store_plan(world, b"few")
    drive(plan, world)
    assert plan.result().replicas == 5
    assert plan.result().waves == 1


def test_the_lookup_phase_needs_the_clock_and_hears_of_failures() -> None:
    world = World.random(30, 6)
    key = digest(b"clock")
    seeds = world.nearest(key, 4, alive_only=False)
    refusing = seeds[0]
    world.peers[refusing.hashed_id].behaviour = lambda peer, request: TransportError("refused")
    first = store_plan(world, b"clock")
    assert first.poll(0.0)
    assert first.next_deadline() == LookupParams().stall  # the stall timer of its requests
    plan = store_plan(world, b"clock")
    trace = drive(plan, world)
    assert Unanswered(refusing) in trace.events
    assert refusing not in plan.result().stored_on


def test_a_store_answer_without_a_body_counts_as_failed() -> None:
    world = World.random(20, 7)
    key = digest(b"bodyless")
    near = world.nearest(key, 6)
    world.peers[near[0].hashed_id].behaviour = lambda peer, request: (
        BODYLESS if request.mtype is MessageType.STORE_DATA else peer.honest(request)
    )
    plan = store_plan(world, b"bodyless")
    drive(plan, world)
    assert near[0] in plan.result().failed
    assert plan.result().replicas == 6


def test_chunks_may_fill_the_limit_exactly() -> None:
    five = [b"a" * 5, b"b" * 5]
    assert chunks_by_size(five, 10) == [five]
    six_five_five = [b"c" * 6, b"d" * 5, b"e" * 5]
    assert chunks_by_size(six_five_five, 10) == [six_five_five[:1], six_five_five[1:]]


def test_batch_store_defaults_and_per_node_verdicts() -> None:
    nodes = peers(2)
    values = [b"x" * 40, b"y" * 40, b"z" * 40]
    keys = [digest(v) for v in values]
    # nodes[0] holds every value, in two chunks; nodes[1] only the last.
    targets = [[nodes[0]], [nodes[0]], [nodes[0], nodes[1]]]
    fail_first = iter([True, False])

    def first_chunk_fails(peer: ScriptedPeer, request: Request) -> object:
        return TransportError("reset") if next(fail_first) else peer.honest(request)

    world = world_of(nodes)
    world.peers[nodes[0].hashed_id].behaviour = first_chunk_fails  # type: ignore[assignment]
    plan = BatchStorePlan(keys, values, targets, chunk_bytes=80, concurrency=1)
    trace = drive(plan, world)
    report = plan.result()
    assert report.keys == keys and report.task_id == ""
    assert all(
        isinstance(r.data, BatchStoreDataRequest) and r.data.type == 0 for _, r in trace.sent
    )
    assert report.requests == 3 and report.succeeded == 2
    # One of nodes[0]'s two requests failed, the later one succeeded: not all went through.
    assert report.per_node == {nodes[0].address: False, nodes[1].address: True}


def test_a_batch_store_answer_without_a_body_counts_as_failed() -> None:
    nodes = peers(4)
    world = world_of(nodes)
    world.peers[nodes[0].hashed_id].behaviour = lambda peer, request: BODYLESS
    plan = BatchStorePlan(*one_each(nodes))
    drive(plan, world)
    report = plan.result()
    assert (report.requests, report.succeeded) == (4, 3)
    assert report.per_node[nodes[0].address] is False
