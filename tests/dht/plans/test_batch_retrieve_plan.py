"""Batch retrieve as a plan: Go's tx_id rotation, waves, caps, streaming verdicts, fallback."""

from __future__ import annotations

import base58
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lumera_p2p.content import digest
from lumera_p2p.dht.contacts import wire_node
from lumera_p2p.dht.plans import (
    Answered,
    BatchRetrievePlan,
    LookupParams,
    LookupStarted,
    Poisoned,
    Request,
    Unanswered,
    ValueArrived,
    fnv1a64,
    provider_index,
)
from lumera_p2p.dht.statuses import ok
from lumera_p2p.errors import TransportError
from lumera_p2p.kademlia import Contact, RoutingTable
from lumera_p2p.wire.messages import (
    BatchGetValuesRequest,
    BatchGetValuesResponse,
    FindValueResponse,
    KeyValWithClosest,
    Message,
    MessageType,
)

from .world import ME, ScriptedPeer, World, drive, reader


def test_fnv1a64_is_go_hash_fnv_new64a() -> None:
    # The reference values of Go's hash/fnv tests (and the FNV authors' table).
    assert fnv1a64(b"") == 0xCBF29CE484222325
    assert fnv1a64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a64(b"foobar") == 0x85944171F73967E8


def test_provider_rotation_is_seeded_by_tx_id() -> None:
    key = digest(b"k")
    start = fnv1a64(base58.b58encode(key) + b"tx-1") % 6
    assert [provider_index(key, "tx-1", w, 6) for w in range(6)] == [
        (start + w) % 6 for w in range(6)
    ]
    # Different transactions start at different replicas (for most keys).
    keys = [digest(b"%d" % i) for i in range(60)]
    assert {provider_index(k, "a", 0, 6) for k in keys} == set(range(6))
    assert any(provider_index(k, "a", 0, 6) != provider_index(k, "b", 0, 6) for k in keys)


def setup(
    n_keys: int, n_nodes: int = 12, holders_per_key: int = 6, seed: int = 1
) -> tuple[World, list[bytes], dict[bytes, bytes], dict[bytes, list[Contact]]]:
    """A world where each key's value is held by the first ``holders_per_key`` of its six
    nearest nodes; returns the world, keys, values and every key's nearest contacts."""
    world = World.random(n_nodes, seed)
    values = {digest(b"v%d-%d" % (seed, i)): b"v%d-%d" % (seed, i) for i in range(n_keys)}
    nearest = {k: world.nearest(k, 20) for k in values}
    for key, value in values.items():
        for contact in nearest[key][:holders_per_key]:
            world.peers[contact.hashed_id].values[key] = value
    return world, list(values), values, nearest


def plan_for(
    keys: list[bytes], need: int, nearest: dict[bytes, list[Contact]], **kw: object
) -> BatchRetrievePlan:
    return BatchRetrievePlan(
        keys,
        need,
        str(kw.pop("tx_id", "tx")),
        nearest,
        reader(),
        LookupParams(),
        exclude=frozenset({ME.hashed_id}),
        **kw,  # type: ignore[arg-type]
    )


def test_every_key_from_its_rotated_provider_in_one_wave() -> None:
    world, keys, values, nearest = setup(200)
    plan = plan_for(keys, len(keys), nearest, tx_id="tx-42")
    trace = drive(plan, world)
    got = {e.key: e.value for e in trace.of(ValueArrived)}
    assert got == values
    assert plan.result().delivered == 200 and plan.result().waves == 1
    # Each key was asked of exactly the provider Go's rotation picks for wave 0.
    for _, request in trace.sent:
        assert isinstance(request.data, BatchGetValuesRequest)
        for hex_key in request.data.data:
            key = bytes.fromhex(hex_key)
            providers = nearest[key][:6]
            assert request.peer == providers[provider_index(key, "tx-42", 0, 6)]
    assert {e.peer for e in trace.of(Answered)} == {r.peer for _, r in trace.sent}


def test_a_missing_value_is_asked_of_the_next_provider_in_the_next_wave() -> None:
    world, keys, _values, nearest = setup(30, holders_per_key=6)
    # Nobody but the last provider of the rotation holds keys[0].
    key = keys[0]
    providers = nearest[key][:6]
    last = providers[provider_index(key, "tx", 5, 6)]
    for contact in providers:
        if contact != last:
            del world.peers[contact.hashed_id].values[key]
    plan = plan_for(keys, len(keys), nearest)
    trace = drive(plan, world)
    assert plan.result().waves == 6
    asked = [r.peer for _, r in trace.sent if key.hex() in r.data.data]  # type: ignore[union-attr]
    assert asked == [providers[provider_index(key, "tx", w, 6)] for w in range(6)]
    assert {e.key for e in trace.of(ValueArrived)} == set(keys)


def test_at_most_600_keys_per_request_one_at_a_time_per_node() -> None:
    world, keys, _, nearest = setup(4000, n_nodes=6)  # every node provides every key
    plan = plan_for(keys, len(keys), nearest)
    trace = drive(plan, world)
    assert plan.result().delivered == 4000
    sizes = [len(r.data.data) for _, r in trace.sent]  # type: ignore[union-attr]
    assert max(sizes) == 600
    assert sum(sizes) == 4000
    assert trace.max_per_peer == 1  # a node's chunks go one after another


def test_at_most_eight_batch_requests_at_once() -> None:
    world, keys, _, nearest = setup(3000, n_nodes=40)
    plan = plan_for(keys, len(keys), nearest)
    trace = drive(plan, world)
    assert plan.result().delivered == 3000
    assert len(trace.sent) > 8
    assert trace.max_in_flight == 8


def test_a_refused_value_is_fetched_again_from_another_provider() -> None:
    world, keys, _values, nearest = setup(20)
    refused: list[bytes] = []

    def consume(key: bytes, value: bytes) -> bool:
        if key == keys[3] and not refused:
            refused.append(key)
            return False
        return True

    plan = plan_for(keys, len(keys), nearest)
    trace = drive(plan, world, consume=consume)
    offers = [e for e in trace.of(ValueArrived) if e.key == keys[3]]
    assert len(offers) == 2 and offers[0].peer != offers[1].peer
    assert plan.result().delivered == 20 and plan.result().refused == 1
    assert plan.result().waves == 2


def test_stops_once_enough_are_accepted_and_abandons_the_rest() -> None:
    world, keys, _values, nearest = setup(3000, n_nodes=40)
    plan = plan_for(keys, 700, nearest)
    trace = drive(plan, world)
    assert plan.result().delivered == 700
    assert len(trace.of(ValueArrived)) == 700  # no value beyond the need is even offered
    assert trace.cancelled  # requests still out when the need was met were dropped
    assert plan.poll(trace.end + 1) == []


def test_a_poisoning_provider_is_reported_and_the_rest_of_its_answer_dropped() -> None:
    world, keys, _values, nearest = setup(40)
    liar = world.peers[nearest[keys[0]][provider_index(keys[0], "tx", 0, 6)].hashed_id]

    def poison(peer: ScriptedPeer, request: object) -> object:
        answer = peer.honest(request)  # type: ignore[arg-type]
        assert isinstance(answer, BatchGetValuesResponse)
        first = next(iter(answer.data))
        rest = {k: v for k, v in answer.data.items() if k != first}
        answer.data = {first: KeyValWithClosest(value=b"forged", closest=[]), **rest}
        return answer

    liar.behaviour = poison  # type: ignore[assignment]
    plan = plan_for(keys, len(keys), nearest)
    trace = drive(plan, world)
    assert len(trace.of(Poisoned)) == 1 and trace.of(Poisoned)[0].peer == liar.contact
    assert plan.result().poisoners == [liar.contact]
    assert all(digest(e.value) == e.key for e in trace.of(ValueArrived))
    # Nothing the liar sent was offered: the keys it was asked came from other providers.
    assert liar.contact not in {e.peer for e in trace.of(ValueArrived)}
    assert {e.key for e in trace.of(ValueArrived)} == set(keys)
    assert plan.result().waves == 2


def test_keys_no_provider_had_fall_back_to_find_value_lookups() -> None:
    world, keys, values, nearest = setup(20, n_nodes=40, holders_per_key=0)
    # The values live only on nodes farther away than the six providers.
    for key in keys:
        world.peers[nearest[key][9].hashed_id].values[key] = values[key]
    plan = plan_for(keys, len(keys), nearest)
    trace = drive(plan, world)
    outcome = plan.result()
    assert outcome.delivered == 20
    assert outcome.fallback_lookups == 20
    assert len(trace.of(LookupStarted)) == 20
    assert {e.key for e in trace.of(ValueArrived)} == set(keys)
    assert MessageType.FIND_VALUE in trace.sent_types()


def test_at_most_eight_fallback_lookups_at_once() -> None:
    world, keys, _values, nearest = setup(30, n_nodes=40, holders_per_key=0)
    plan = plan_for(keys, len(keys), nearest, fallback_lookups=2)
    trace = drive(plan, world)
    assert plan.result().delivered == 0  # nobody has anything
    assert plan.result().fallback_lookups == 30
    # Two lookups at once, each with at most α (6) requests out: never more than 12.
    find_value = [r for _, r in trace.sent if r.mtype is MessageType.FIND_VALUE]
    assert find_value and trace.max_in_flight <= 12


def test_nothing_known_finishes_at_once() -> None:
    keys = [digest(b"nowhere")]
    plan = plan_for(keys, 1, {})
    assert plan.done and plan.poll(0.0) == [] and plan.result().delivered == 0


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_keys=st.integers(1, 40),
    holders=st.integers(0, 6),
    need_share=st.floats(0.1, 1.0),
    refuse_every=st.integers(0, 5),
    dead=st.sampled_from([0.0, 0.0, 0.3]),
    slow_rpcs=st.booleans(),
)
def test_never_more_than_needed_never_a_key_twice(
    seed: int,
    n_keys: int,
    holders: int,
    need_share: float,
    refuse_every: int,
    dead: float,
    slow_rpcs: bool,
) -> None:
    world, keys, _values, nearest = setup(n_keys, n_nodes=25, holders_per_key=holders, seed=seed)
    for index, peer in enumerate(world.peers.values()):
        peer.alive = (index * 7919 + seed) % 100 >= dead * 100
    need = max(1, round(need_share * n_keys))
    offers = 0

    def consume(key: bytes, value: bytes) -> bool:
        nonlocal offers
        offers += 1
        return not (refuse_every and offers % refuse_every == 0)

    plan = plan_for(keys, need, nearest, tx_id=f"tx-{seed}")
    # With slow RPCs a lookup gives requests up (5 s) long before they fail (12 s).
    timeouts = {MessageType.FIND_VALUE: 12.0, MessageType.BATCH_GET_VALUES: 1.0}
    trace = drive(
        plan, world, seed=seed, consume=consume, **({"timeouts": timeouts} if slow_rpcs else {})
    )  # type: ignore[arg-type]
    accepted: list[bytes] = []
    refused_keys = 0
    offered = trace.of(ValueArrived)
    for index, event in enumerate(offered, start=1):
        assert digest(event.value) == event.key
        if refuse_every and index % refuse_every == 0:
            refused_keys += 1
        else:
            accepted.append(event.key)
    assert len(accepted) == len(set(accepted)) == plan.result().delivered <= need
    # Eight batch requests, or eight lookups: α each, plus the stalled ones that no longer
    # count against α, never more than a lookup's k nearest candidates.
    assert trace.max_in_flight <= 8 * 20
    if holders and not refuse_every and not dead:
        assert plan.result().delivered == need


def test_stream_verdict_for_another_key_is_an_error() -> None:
    _world, keys, values, nearest = setup(3)
    plan = plan_for(keys, 3, nearest)
    requests = plan.poll(0.0)
    peer = requests[0].peer
    data = requests[0].data
    assert isinstance(data, BatchGetValuesRequest)
    body = BatchGetValuesResponse(
        data={h: KeyValWithClosest(value=values[bytes.fromhex(h)], closest=[]) for h in data.data},
        status=ok(),
    )
    plan.on_response(
        requests[0].token,
        Message(sender=wire_node(peer), receiver=None, message_type=11, data=body),
        0.1,
    )
    assert plan.next_event() == Answered(peer)
    offer = plan.next_event()
    assert isinstance(offer, ValueArrived)
    assert plan.next_event() is None  # one offer at a time, until its verdict
    with pytest.raises(ValueError, match="not offered"):
        plan.on_verdict(digest(b"other"), True, 0.2)
    plan.on_verdict(offer.key, True, 0.2)


def test_world_sanity() -> None:
    contact = Contact(b"x", "10.0.0.1", 1)
    assert ScriptedPeer(contact, RoutingTable(contact.hashed_id)).values == {}


def test_a_lookup_that_times_out_in_poll_makes_room_for_the_next_at_once() -> None:
    """Fallback lookups whose every peer is silent end inside ``poll`` (at their deadline);
    the next lookup must start in that same poll, or nothing would wake the plan again."""
    world, keys, _, nearest = setup(3, n_nodes=30, holders_per_key=0)
    for peer in world.peers.values():
        peer.alive = False
    plan = plan_for(keys, 3, nearest, fallback_lookups=1)
    # The lookup gives a request up after 5 s; the RPC itself would wait 12.
    timeouts = {MessageType.FIND_VALUE: 12.0, MessageType.BATCH_GET_VALUES: 1.0}
    trace = drive(plan, world, timeouts=timeouts)
    assert plan.done and plan.result().delivered == 0
    assert plan.result().fallback_lookups == 3
    assert len(trace.of(LookupStarted)) == 3


def test_no_keys_is_done_at_once() -> None:
    plan = plan_for([], 1, {})
    assert plan.done and plan.poll(0.0) == [] and plan.result().waves == 0


def test_eight_fallback_lookups_at_once_by_default() -> None:
    _world, keys, _values, nearest = setup(20, n_nodes=40, holders_per_key=0)
    plan = plan_for(keys, len(keys), nearest, replicas=0)  # no providers: straight to lookups
    started = []
    while (event := plan.next_event()) is not None:
        started.append(event)
    assert len(started) == 8 and all(isinstance(e, LookupStarted) for e in started)
    assert plan.result().fallback_lookups == 8
    # While they run, the plan needs the clock (their stall timers).
    assert plan.poll(0.0)
    assert plan.next_deadline() == LookupParams().stall


def test_one_wave_per_provider_then_the_fallback() -> None:
    world, keys, _values, nearest = setup(1, n_nodes=30, holders_per_key=0)
    plan = plan_for(keys, 1, nearest, tx_id="tx-w")
    trace = drive(plan, world)
    outcome = plan.result()
    asks = [r for _, r in trace.sent if r.mtype is MessageType.BATCH_GET_VALUES]
    assert outcome.waves == 6 == outcome.batch_requests == len(asks)
    (key,) = keys
    providers = nearest[key][:6]
    assert [r.peer for r in asks] == [
        providers[provider_index(key, "tx-w", w, 6)] for w in range(6)
    ]
    # A BatchGetValues names each key with an empty entry (what Go sends).
    for request in asks:
        assert isinstance(request.data, BatchGetValuesRequest)
        assert list(request.data.data.values()) == [KeyValWithClosest(value=b"", closest=[])]
    assert outcome.fallback_lookups == 1


def test_a_node_gets_its_next_chunk_in_the_same_wave() -> None:
    world, keys, values, _nearest = setup(1300, n_nodes=12, holders_per_key=0)
    holder = world.contacts()[0]
    world.peers[holder.hashed_id].values.update(values)
    plan = plan_for(keys, len(keys), {k: [holder] for k in keys}, batch_get_keys=600)
    trace = drive(plan, world)
    outcome = plan.result()
    assert outcome.delivered == 1300
    assert outcome.waves == 1 and outcome.fallback_lookups == 0
    assert outcome.batch_requests == len(trace.sent) == 3  # 600 + 600 + 100, in turn
    assert trace.max_per_peer == 1


def test_a_key_nobody_holds_does_not_stall_the_waves() -> None:
    world, keys, _values, nearest = setup(1, n_nodes=12)
    orphan = digest(b"orphan")
    plan = plan_for([*keys, orphan], 2, {**nearest, orphan: []})
    drive(plan, world)
    assert plan.done
    assert plan.result().delivered == 1


def test_an_answer_is_read_past_missing_and_unasked_keys() -> None:
    world, keys, values, nearest = setup(2, n_nodes=12, holders_per_key=0)
    first, second = keys
    holder = nearest[second][0]
    nearest = {first: [holder], second: [holder]}
    stray = digest(b"stray")

    def answer(peer: ScriptedPeer, request: Request) -> object:
        if isinstance(request.data, BatchGetValuesRequest):
            asked = list(request.data.data)
            data = {h: KeyValWithClosest(value=b"", closest=[]) for h in asked}
            data[second.hex()] = KeyValWithClosest(value=values[second], closest=[])
            data[stray.hex()] = KeyValWithClosest(value=b"stray", closest=[])  # never asked
            return BatchGetValuesResponse(data=data, status=ok())
        return peer.honest(request)

    world.peers[holder.hashed_id].behaviour = answer  # type: ignore[assignment]
    plan = plan_for([first, second], 2, nearest)
    trace = drive(plan, world)
    assert [e.key for e in trace.of(ValueArrived)] == [second]
    assert trace.of(Poisoned) == []
    assert plan.result().fallback_lookups == 1  # only the key nobody had


def test_poisoners_of_waves_and_lookups_are_all_reported_and_never_asked_again() -> None:
    world = World.random(4, 21)
    p1, p2 = world.contacts()[:2]
    k1, k2 = digest(b"one"), digest(b"two")

    def poisons_batches(peer: ScriptedPeer, request: Request) -> object:
        if isinstance(request.data, BatchGetValuesRequest):
            data = {h: KeyValWithClosest(value=b"bad", closest=[]) for h in request.data.data}
            return BatchGetValuesResponse(data=data, status=ok())
        return peer.honest(request)

    def poisons_lookups(peer: ScriptedPeer, request: Request) -> object:
        if request.mtype is MessageType.FIND_VALUE:
            return FindValueResponse(status=ok(), closest=[], value=b"bad")
        return peer.honest(request)

    world.peers[p1.hashed_id].behaviour = poisons_batches  # type: ignore[assignment]
    world.peers[p2.hashed_id].behaviour = poisons_lookups  # type: ignore[assignment]
    plan = plan_for([k1, k2], 2, {k1: [p1], k2: [p2, p1]}, replicas=1)
    trace = drive(plan, world)
    assert plan.result().poisoners == [p1, p2]
    assert trace.of(Poisoned) == [Poisoned(p1, k1), Poisoned(p2, k2)]
    assert not any(r.peer == p1 and r.mtype is MessageType.FIND_VALUE for _, r in trace.sent)


def test_a_fallback_lookup_hears_of_refused_connections() -> None:
    world, keys, _values, nearest = setup(1, n_nodes=20, holders_per_key=0)
    (key,) = keys
    refuser = nearest[key][0]
    world.peers[refuser.hashed_id].behaviour = lambda peer, request: TransportError("refused")
    plan = plan_for(keys, 1, nearest, replicas=0)
    trace = drive(plan, world)
    assert Unanswered(refuser) in trace.events
    assert plan.done and plan.result().delivered == 0


def test_every_refused_value_is_counted() -> None:
    world, keys, _values, nearest = setup(2, n_nodes=12, holders_per_key=1)
    plan = plan_for(keys, 2, nearest, replicas=1)
    trace = drive(plan, world, consume=lambda key, value: False)
    offers = trace.of(ValueArrived)
    assert len(offers) >= 2
    assert plan.result().refused == len(offers) and plan.result().delivered == 0


def test_a_verdict_for_a_value_not_offered_is_named() -> None:
    plan = plan_for([digest(b"v")], 1, {})
    with pytest.raises(ValueError, match=r"^a verdict for a value that was not offered$"):
        plan.on_verdict(digest(b"v"), True, 0.0)
