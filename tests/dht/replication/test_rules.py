"""The pure rules of replication: who is responsible, what each peer is told, Go's activity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lumera_p2p.content import digest
from lumera_p2p.dht.replication import Ranking, assign_page, redundant
from lumera_p2p.dht.replication.activity import ActivityChange, after_ping, unroutable
from lumera_p2p.kademlia import Contact

T0 = datetime(2026, 5, 1, tzinfo=UTC)
NODES = [Contact(b"lumera-a-%02d" % i, f"10.4.0.{i + 1}", 4445) for i in range(20)]
ME = NODES[0]


def nearest(key: bytes, pool: list[Contact], n: int) -> list[Contact]:
    t = int.from_bytes(key, "big")
    return sorted(pool, key=lambda c: c.int_id ^ t)[:n]


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.integers(1, 8))
def test_ranking_is_the_true_nearest_including_me(key: bytes, n: int) -> None:
    ranking = Ranking(ME, [*NODES[1:], ME])  # ourselves among the candidates counts once
    assert len(ranking) == len(NODES)
    assert ranking.closest(key, n) == nearest(key, NODES, n)


def page_of(count: int, at: datetime = T0) -> list[tuple[bytes, datetime]]:
    return [(digest(b"p%d" % i), at + timedelta(seconds=i)) for i in range(count)]


def test_each_key_goes_to_its_responsible_active_peers_past_their_cursor() -> None:
    ranking = Ranking(ME, NODES[1:])
    page = page_of(200)
    active = NODES[1:11]
    cursors: dict[bytes, datetime | None] = {c.id: None for c in active}
    cursors[NODES[1].id] = T0 + timedelta(seconds=100)  # has heard of the first 101 keys
    out = assign_page(page, ranking, replicas=6, cursors=cursors, known=set(cursors))
    for key, created in page:
        responsible = {c.id for c in nearest(key, NODES, 6)}
        for peer in active:
            told = key in out.keys.get(peer.id, [])
            cursor = cursors[peer.id]
            should = peer.id in responsible and (cursor is None or created > cursor)
            assert told == should, (key.hex(), peer)
    assert ME.id not in out.keys  # never ourselves
    assert not out.repairs and not out.gone_responsible
    # Responsible nodes that are not replication peers at all are reported.
    inactive_responsible = {
        c.id for k, _ in page for c in nearest(k, NODES, 6) if c not in active and c != ME
    }
    assert out.strangers == inactive_responsible


def test_the_cursor_rule_is_strictly_after() -> None:
    ranking = Ranking(ME, NODES[1:3])
    key, created = page_of(1)[0]
    peer = NODES[1]
    at = assign_page([(key, created)], ranking, replicas=6, cursors={peer.id: created})
    assert at.keys == {}
    after = assign_page(
        [(key, created)],
        ranking,
        replicas=6,
        cursors={peer.id: created - timedelta(microseconds=1)},
    )
    assert after.keys == {peer.id: [key]}


def test_keys_a_gone_peer_was_responsible_for_go_to_those_responsible_now() -> None:
    gone = NODES[5]
    ranking = Ranking(ME, [c for c in NODES[1:] if c != gone])
    page = page_of(300)
    settled: dict[bytes, datetime | None] = {
        c.id: T0 + timedelta(days=1) for c in NODES[1:] if c != gone
    }  # every cursor is past every key: only repairs are sent
    out = assign_page(page, ranking, replicas=6, cursors=settled, gone=[gone])
    expected_keys = [k for k, _ in page if gone in nearest(k, NODES, 6)]
    assert out.gone_responsible == {gone.id: len(expected_keys)}
    for key in expected_keys:
        now_responsible = [c for c in nearest(key, [c for c in NODES if c != gone], 6) if c != ME]
        for peer in now_responsible:
            assert key in out.keys[peer.id]
            assert peer.id in out.gone_targets[gone.id]
    # Nothing else is announced, and Go's shadowed-index bug (the first keys of the scan
    # sent instead) is not here: every key sent is one the gone peer was responsible for.
    sent = {k for keys in out.keys.values() for k in keys}
    assert sent == set(expected_keys)
    assert sum(out.repairs.values()) == sum(len(v) for v in out.keys.values())


def test_with_fewer_than_replicas_nodes_every_gone_peer_was_responsible() -> None:
    ranking = Ranking(ME, NODES[1:3])
    out = assign_page(page_of(5), ranking, replicas=6, cursors={}, gone=[NODES[9]])
    assert out.gone_responsible == {NODES[9].id: 5}


def test_redundant_needs_enough_nodes_and_is_true_when_we_are_not_among_them() -> None:
    few = Ranking(ME, NODES[1:4])
    assert redundant(digest(b"x"), few, 6) is None
    ranking = Ranking(ME, NODES[1:])
    for i in range(50):
        key = digest(b"r%d" % i)
        assert redundant(key, ranking, 6) is (ME not in nearest(key, NODES, 6))


@pytest.mark.parametrize(
    ("was_active", "answered", "banned", "store_ok", "expected"),
    [
        # No answer: an active peer goes inactive once banned (its second failure).
        (True, False, False, True, ActivityChange()),
        (True, False, True, True, ActivityChange(active=False)),
        (False, False, True, True, ActivityChange()),
        # An answer: seen; active if store-eligible, inactive if not.
        (False, True, False, True, ActivityChange(active=True, seen=True)),
        (True, True, False, True, ActivityChange(seen=True)),
        (True, True, False, False, ActivityChange(active=False, seen=True)),
        (False, True, False, False, ActivityChange(seen=True)),
    ],
)
def test_activity_follows_gos_loop(
    was_active: bool, answered: bool, banned: bool, store_ok: bool, expected: ActivityChange
) -> None:
    got = after_ping(
        was_active=was_active, answered=answered, banned=banned, store_eligible=store_ok
    )
    assert got == expected


def test_a_peer_the_chain_no_longer_routes_is_made_inactive_without_a_ping() -> None:
    assert unroutable(True) == ActivityChange(active=False)
    assert unroutable(False) == ActivityChange()
