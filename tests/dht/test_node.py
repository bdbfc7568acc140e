"""The Node's own state: identity, learning, the LRU probe, eviction, bans, allowlists."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from lumera_p2p.dht import DHTOptions, MemoryStore, Node, ServingLimits
from lumera_p2p.dht.plans import Event, Plan, Poisoned, Request
from lumera_p2p.dht.wire_nodes import WireNodes
from lumera_p2p.errors import TransportError
from lumera_p2p.kademlia import Contact, bucket_index
from lumera_p2p.net.virtual_time import run_virtual
from lumera_p2p.wire.messages import Message, MessageType

ME = Contact(b"lumera-node-under-test", "10.0.0.1", 4445)


class Peers:
    """A transport where listed peers answer pings (after 10 ms) and the rest are silent."""

    def __init__(self, alive: set[bytes] | None = None) -> None:
        self.alive = alive if alive is not None else set()
        self.pinged: list[bytes] = []

    async def call(
        self, peer: Contact, request: Message, timeout: float, *, on_answer: object = None
    ) -> Message:
        self.pinged.append(peer.id)
        if peer.id not in self.alive:
            await asyncio.sleep(timeout)
            raise TransportError("no answer")
        await asyncio.sleep(0.01)
        return Message(
            sender=request.receiver,
            receiver=request.sender,
            message_type=request.message_type,
        )


class Reporting(Plan[None]):
    """A plan that only reports ``events`` (as if its requests had shown them)."""

    def __init__(self, *events: Event) -> None:
        super().__init__()
        for event in events:
            self._emit(event)

    def poll(self, now: float) -> list[Request]:
        return []

    @property
    def done(self) -> bool:
        return True

    def result(self) -> None:
        return None

    def on_response(self, token: int, message: Message, now: float) -> None:
        raise AssertionError("sends nothing")

    def on_failure(self, token: int, error: TransportError, now: float) -> None:
        raise AssertionError("sends nothing")


def in_bucket(index: int, count: int, prefix: bytes = b"c") -> list[Contact]:
    """``count`` contacts that fall in bucket ``index`` of ME's table."""
    out = []
    for i in itertools.count():
        c = Contact(prefix + b"-%d" % i, f"10.3.{i // 250}.{i % 250 + 1}", 4445)
        if bucket_index(ME.hashed_id, c.hashed_id) == index:
            out.append(c)
            if len(out) == count:
                return out
    raise AssertionError


def node(transport: Peers | None = None, **options: object) -> Node:
    opts = DHTOptions(allow_private=True, **options)  # type: ignore[arg-type]
    return Node(ME, MemoryStore(), transport or Peers(), options=opts)


def test_identity_moves_only_through_move_to() -> None:
    n = node()
    assert n.me == ME
    n.move_to("10.9.9.9", 5000)
    assert (n.me.ip, n.me.port, n.me.id) == ("10.9.9.9", 5000, ME.id)
    message = n.request(MessageType.PING, ME, None)
    assert message.sender is not None and message.sender.port == 5000
    assert message.sender.hashed_id == ME.hashed_id
    with pytest.raises(AttributeError):
        n.me = ME  # type: ignore[misc]


def test_our_version_is_advertised_and_the_peers_known_one_addressed() -> None:
    me = Contact(ME.id, ME.ip, ME.port, "v2.4.1")
    n = Node(me, MemoryStore(), Peers(), options=DHTOptions(allow_private=True))
    [peer] = in_bucket(255, 1)
    request = n.request(MessageType.PING, peer, None)
    assert request.sender is not None and request.sender.version == "v2.4.1"
    assert request.receiver is not None and request.receiver.version == ""
    n.learn(Contact(peer.id, peer.ip, peer.port, "v2.6.0"), now=0.0)
    # A seed without a version is addressed with the one the table learned.
    request = n.request(MessageType.PING, peer, None)
    assert request.receiver is not None and request.receiver.version == "v2.6.0"


def test_learn_skips_ourselves_and_peers_the_chain_does_not_list() -> None:
    n = node()
    a, b = in_bucket(255, 2)
    n.learn(ME, now=0.0)
    assert n.peer_count == 0
    assert n.apply_allowlist([a.hashed_id], [a.hashed_id], self_store_eligible=True)
    n.learn(a, now=0.0)
    n.learn(b, now=0.0)
    assert n.contacts() == [a]


def test_a_full_bucket_pings_its_oldest_before_a_newcomer_may_replace_it() -> None:
    async def main() -> None:
        head, second, newcomer = in_bucket(255, 3)
        transport = Peers(alive={head.id, second.id})
        n = node(transport, k=2, probe_after=0.0)  # every newcomer probes
        n.learn(head)
        n.learn(second)
        n.learn(newcomer)  # full: the head is probed in the background
        assert transport.pinged == [] and n.contacts() == [head, second]
        await asyncio.sleep(1.0)
        assert transport.pinged == [head.id]
        assert n.contacts() == [second, head]  # it answered: it stays, now most recent
        assert not n.knows(newcomer.hashed_id)
        # The next newcomer probes the new head, which is dead: evicted, newcomer promoted.
        transport.alive.discard(second.id)
        late = in_bucket(255, 4)[3]
        n.learn(late)
        await asyncio.sleep(10.0)
        assert transport.pinged == [head.id, second.id]
        assert not n.knows(second.hashed_id)
        assert n.knows(late.hashed_id) and n.knows(head.hashed_id)
        counters = n.snapshot_counters()
        assert (counters.probes, counters.evictions) == (2, 1)
        await n.close()

    run_virtual(main())


def test_a_head_heard_from_recently_is_not_probed() -> None:
    async def main() -> None:
        head, second, newcomer, late = in_bucket(255, 4)
        transport = Peers(alive={head.id, second.id})
        n = node(transport, k=2, probe_after=30.0)
        n.learn(head)
        n.learn(second)
        await asyncio.sleep(29.0)
        n.learn(newcomer)  # the head was seen 29 s ago: alive, no probe
        await asyncio.sleep(1.0)
        assert transport.pinged == [] and n.contacts() == [head, second]
        assert n.snapshot_counters().probes == 0
        await asyncio.sleep(0.5)
        n.learn(late)  # now 30.5 s: probed
        await asyncio.sleep(1.0)
        assert transport.pinged == [head.id]
        assert n.snapshot_counters().probes == 1
        await n.close()

    run_virtual(main())


def test_repeated_failures_evict_after_max_failures() -> None:
    for max_failures in (2, 3):
        n = node(max_failures=max_failures)
        [peer] = in_bucket(250, 1)
        n.learn(peer, now=0.0)
        for _ in range(max_failures - 1):
            n.record_failure(peer)
            assert n.knows(peer.hashed_id)
        n.learn(peer, now=1.0)  # any sign of life resets the count
        for _ in range(max_failures - 1):
            n.record_failure(peer)
        assert n.knows(peer.hashed_id)
        n.record_failure(peer)
        assert not n.knows(peer.hashed_id)
        assert n.snapshot_counters().evictions == 1


def test_a_ban_removes_the_peer_and_keeps_it_out_of_our_own_requests() -> None:
    async def main() -> None:
        n = node()
        peers = in_bucket(255, 5)
        for p in peers:
            n.learn(p)
        target = peers[0].hashed_id
        n.ban(peers[1], "misbehaved", n.now())
        assert not n.knows(peers[1].hashed_id)
        assert n.is_banned(peers[1].hashed_id) and n.banned_count() == 1
        n.learn(peers[2])
        n.strike(peers[2], n.now())
        n.strike(peers[2], n.now())  # two strikes: banned, though still in the table
        assert n.knows(peers[2].hashed_id) and n.is_banned(peers[2].hashed_id)
        assert peers[2] not in n.closest(target, 10)
        assert peers[2] in n.closest(target, 10, include_banned=True)  # answers to peers
        assert peers[2] not in n.store_targets(target)
        n.forgive(peers[2])
        assert not n.is_banned(peers[2].hashed_id)
        # A poisoned value reported by a plan: counted, banned, gone from the table.
        await n.run(Reporting(Poisoned(peers[3], b"k" * 32)))
        assert not n.knows(peers[3].hashed_id) and n.is_banned(peers[3].hashed_id)
        counters = n.snapshot_counters()
        assert (counters.poisoned_values, counters.bans) == (1, 2)

    run_virtual(main())


def test_allowlists_prune_the_table_and_an_empty_one_is_ignored() -> None:
    n = node()
    a, b, c = in_bucket(254, 3)
    for p in (a, b, c):
        n.learn(p, now=0.0)
    assert not n.apply_allowlist([], [], self_store_eligible=False)
    assert n.self_store_eligible and n.peer_count == 3
    assert n.apply_allowlist([a.hashed_id, b.hashed_id], [a.hashed_id], self_store_eligible=False)
    assert set(n.contacts()) == {a, b}
    assert not n.self_store_eligible
    assert n.routing_allowlist_size == 2


def test_store_targets_are_the_nearest_store_eligible_peers() -> None:
    async def main() -> None:
        n = node(replicas=3)
        peers = in_bucket(255, 12) + in_bucket(253, 4, b"d")
        for p in peers:
            n.learn(p)
        key = peers[0].hashed_id
        t = int.from_bytes(key, "big")
        by_distance = sorted(peers, key=lambda p: p.int_id ^ t)
        assert n.store_targets(key) == by_distance[:3]
        store = [p.hashed_id for p in by_distance[2:]]
        n.apply_allowlist([p.hashed_id for p in peers], store, self_store_eligible=True)
        assert n.store_targets(key) == by_distance[2:5]

    run_virtual(main())


def test_the_health_check_evicts_the_dead_after_two_rounds() -> None:
    async def main() -> None:
        peers = in_bucket(255, 6)
        transport = Peers(alive={p.id for p in peers[:4]})
        n = node(transport)
        for p in peers:
            n.learn(p)
        assert await n.check_peers() == (4, 2)
        assert n.peer_count == 6
        assert await n.check_peers() == (4, 2)
        assert set(n.contacts()) == set(peers[:4])
        assert n.snapshot_counters().health_checks == 2

    run_virtual(main())


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="k must be at least 1"):
        DHTOptions(k=0)
    with pytest.raises(ValueError, match="share"):
        DHTOptions(min_batch_store_success=1.5)
    with pytest.raises(ValueError, match="positive"):
        DHTOptions(rpc_timeouts={MessageType.PING: 0.0})
    with pytest.raises(ValueError, match="batch_find_values_wait"):
        ServingLimits(batch_find_values_wait=0)
    timeouts = {MessageType.PING: 2.0}
    options = DHTOptions(rpc_timeouts=timeouts)
    timeouts[MessageType.PING] = 99.0  # the caller's dict is not the node's
    assert options.rpc_timeout(MessageType.PING) == 2.0
    assert options.rpc_timeout(MessageType.FIND_NODE) == options.default_rpc_timeout == 15.0


def test_wire_nodes_are_built_once_per_contact_and_follow_a_change() -> None:
    cache = WireNodes(limit=3)
    a, b, c, d = in_bucket(255, 4)
    first = cache.of(a)
    assert (first.id, first.ip, first.port, first.hashed_id) == (a.id, a.ip, a.port, a.hashed_id)
    assert cache.of(a) is first and cache.of_all([a, b, a])[::2] == [first, first]
    moved = Contact(a.id, "10.7.7.7", 9, "v3")
    again = cache.of(moved)  # the same peer at another address: built anew
    assert (again.ip, again.port, again.version) == ("10.7.7.7", 9, "v3")
    cache.of_all([c, d])  # past the limit: the cache starts again
    assert len(cache) <= 3 and cache.of(d).id == d.id


def test_a_known_requester_is_re_seen_and_a_changed_or_banned_one_is_read_again() -> None:
    async def main() -> None:
        n = node()
        a, b = in_bucket(255, 2)
        n.learn(a)
        n.learn(b)
        n.learn_requester(Contact(a.id, a.ip, a.port, a.version))  # known as it is: to the tail
        assert n.contacts() == [b, a]
        n.learn_requester(Contact(b.id, "0.0.0.0", b.port, b.version))  # unusable address
        assert n.contacts() == [b, a]
        n.learn_requester(Contact(b.id, "10.3.3.3", b.port, b.version))  # moved: read again
        assert n.contacts()[-1].ip == "10.3.3.3"
        n.strike(a, n.now())
        n.strike(a, n.now())
        n.strike(a, n.now())
        assert n.is_banned(a.hashed_id) and n.knows(a.hashed_id)
        kept_out = n.snapshot_counters().banned_kept_out
        n.learn_requester(Contact(a.id, a.ip, a.port, a.version))  # known, but banned now
        assert n.snapshot_counters().banned_kept_out == kept_out + 1
        assert n.contacts()[0] == a  # not moved to the tail

    run_virtual(main())
