"""ContactReader's memo: a reader that remembers its verdicts judges every node as a fresh one
does, and the allowlist still counts on every call."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lumera_p2p.dht.contacts import ContactReader, wire_node
from lumera_p2p.dht.eligibility import Eligibility
from lumera_p2p.kademlia import Contact
from lumera_p2p.wire import Node
from lumera_p2p.wire.envelope import MAX_HOST, MAX_NODE_ID, MAX_VERSION

ME = Contact(b"lumera1me", "127.0.0.1", 4445)
IDS = st.sampled_from([b"", b"lumera1a", b"lumera1b", ME.id, b"x" * MAX_NODE_ID, b"y" * 300])
LONG_HOST = "h." * (MAX_HOST // 2 + 1)
HOSTS = st.sampled_from(
    [
        "",
        "127.0.0.1",
        "10.1.2.3",
        "203.0.113.7",
        "0.0.0.0",
        "ff02::1",
        "node.example",
        "word",
        LONG_HOST,
    ]
)
VERSIONS = st.sampled_from(["", "v2.4.0", "v" * MAX_VERSION, "v" * (MAX_VERSION + 1)])
WIRE_NODES = st.builds(
    Node,
    id=IDS,
    ip=HOSTS,
    port=st.sampled_from([0, 1, 4445, 65535, 65536]),
    version=VERSIONS,
    hashed_id=st.binary(max_size=32),
)


def _reader(eligibility: Eligibility, *, allow_private: bool, entries: int = 3) -> ContactReader:
    return ContactReader(
        ME.hashed_id, eligibility, allow_private=allow_private, memo_entries=entries
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.none(), WIRE_NODES), max_size=12), st.booleans())
def test_remembered_verdicts_are_fresh_verdicts(nodes: list[Node | None], private: bool) -> None:
    eligibility = Eligibility()
    reader = _reader(eligibility, allow_private=private)  # forgets every few nodes
    for node in nodes * 2:
        fresh = _reader(eligibility, allow_private=private)
        assert reader.contact(node) == fresh.contact(node)
    assert reader.contacts(nodes) == _reader(eligibility, allow_private=private).contacts(nodes)
    # ``each``, the lookup's batch read, is ``contact`` of every node, repeats kept.
    fresh = _reader(eligibility, allow_private=private, entries=1000)
    expected = [c for c in (fresh.contact(n) for n in nodes * 2) if c is not None]
    assert reader.each(nodes * 2) == expected


def test_the_allowlist_is_asked_every_time() -> None:
    eligibility = Eligibility()
    reader = _reader(eligibility, allow_private=True, entries=100)
    peer = Contact(b"lumera1peer", "127.0.0.1", 4446, "v2.4.0")
    assert reader.contact(wire_node(peer)) == peer
    eligibility.update([b"\x01" * 32], [])  # a chain refresh without the peer
    assert reader.contact(wire_node(peer)) is None
    eligibility.update([peer.hashed_id], [])
    assert reader.contact(wire_node(peer)) == peer


def test_the_allowlist_is_asked_for_every_node_of_a_batch() -> None:
    eligibility = Eligibility()
    reader = _reader(eligibility, allow_private=True, entries=100)
    peer = Contact(b"lumera1peer", "127.0.0.1", 4446, "v2.4.0")
    other = Contact(b"lumera1other", "127.0.0.1", 4447, "v2.4.0")
    nodes = [wire_node(peer), wire_node(other)]
    assert reader.each(nodes) == [peer, other]
    eligibility.update([other.hashed_id], [])  # a chain refresh without the peer
    assert reader.each(nodes) == [other]
    eligibility.update([peer.hashed_id, other.hashed_id], [])
    assert reader.each(nodes) == [peer, other]


def test_unhashable_fields_are_judged_afresh() -> None:
    reader = _reader(Eligibility(), allow_private=True)
    node = Node(bytearray(b"lumera1peer"), "127.0.0.1", 4446, "v2.4.0")  # type: ignore[arg-type]
    contact = reader.contact(node)
    assert contact == Contact(b"lumera1peer", "127.0.0.1", 4446, "v2.4.0")
    assert reader.contact(node) == contact
    assert reader.each([node, node]) == [contact, contact]


def test_the_memo_is_bounded_and_keeps_only_small_nodes() -> None:
    reader = _reader(Eligibility(), allow_private=True, entries=5)
    for i in range(40):
        reader.contact(Node(b"lumera1%d" % i, "127.0.0.1", 5000 + i))
        assert len(reader._memo) <= 5
    reader = _reader(Eligibility(), allow_private=True)
    assert reader.contact(Node(b"x" * (MAX_NODE_ID + 1), "127.0.0.1", 1)) is None
    assert reader.contact(Node(b"lumera1a", "h" * (MAX_HOST + 1), 1)) is None
    assert len(reader._memo) == 0  # refused on their lengths, before the memo
