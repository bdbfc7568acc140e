"""The lookup's rules one at a time: retries (production's two), stalls and deadlines on the
caller's clock, the ``k``/``alpha`` windows, what counts as done, and answers it must ignore."""

from __future__ import annotations

import pytest

from lumera_p2p.kademlia import Contact, Lookup, PeerState, hash_id

#: What the DHT passes as ``lookup_retries`` (DHTOptions): a peer is asked up to three times.
PRODUCTION_RETRIES = 2

TARGET = hash_id(b"lookup-rules target")


def peers(n: int, tag: str = "p") -> list[Contact]:
    """``n`` contacts, nearest the target first."""
    contacts = [Contact(f"{tag}{i}".encode(), "10.0.0.1", 4445) for i in range(n)]
    t = int.from_bytes(TARGET, "big")
    return sorted(contacts, key=lambda c: c.int_id ^ t)


# --- retries ------------------------------------------------------------------------------


def test_a_peer_that_fails_twice_then_answers_is_kept() -> None:
    (a,) = peers(1)
    lookup = Lookup(TARGET, [a], k=1, alpha=1, timeout=5.0, retries=PRODUCTION_RETRIES)
    for attempt in range(PRODUCTION_RETRIES):
        assert lookup.poll(float(attempt)) == [a]
        lookup.on_failure(a, attempt + 0.5)
        assert lookup.state_of(a) is PeerState.WAITING, attempt
        assert not lookup.done
    assert lookup.poll(10.0) == [a]  # the third request
    lookup.on_response(a, [], 10.5)
    assert lookup.state_of(a) is PeerState.SUCCEEDED
    assert lookup.done
    assert lookup.closest() == [a]
    stats = lookup.stats
    assert (stats.messages, stats.failures, stats.responses) == (3, 2, 1)


def test_a_peer_that_fails_three_times_is_given_up() -> None:
    a, b = peers(2)
    lookup = Lookup(TARGET, [a, b], k=2, alpha=2, timeout=5.0, retries=PRODUCTION_RETRIES)
    assert lookup.poll(0.0) == [a, b]
    lookup.on_response(b, [], 0.1)
    for attempt in range(3):
        lookup.on_failure(a, attempt + 0.2)
        if attempt < 2:
            assert lookup.state_of(a) is PeerState.WAITING
            assert lookup.poll(attempt + 0.3) == [a]
    assert lookup.state_of(a) is PeerState.FAILED
    assert lookup.done
    assert lookup.poll(10.0) == []  # never a fourth time
    assert lookup.closest() == [b]
    stats = lookup.stats
    assert (stats.messages, stats.failures, stats.responses) == (4, 3, 1)


def test_timeouts_use_up_retries_like_failures() -> None:
    (a,) = peers(1)
    lookup = Lookup(
        TARGET, [a], k=1, alpha=1, timeout=4.0, stall_timeout=1.0, retries=PRODUCTION_RETRIES
    )
    sent_at = []
    now = 0.0
    while not lookup.done:
        sent = lookup.poll(now)
        if sent:
            assert sent == [a]
            sent_at.append(now)
        deadline = lookup.next_deadline()
        assert deadline is not None or lookup.done
        now = deadline if deadline is not None else now
    # Each attempt stalls after 1 s and fails after 4 s; the retry goes out at that moment.
    assert sent_at == [0.0, 4.0, 8.0]
    assert lookup.state_of(a) is PeerState.FAILED
    assert lookup.stats.failures == 3
    assert lookup.closest() == []


def test_a_retry_gets_fresh_deadlines() -> None:
    (a,) = peers(1)
    lookup = Lookup(TARGET, [a], k=1, alpha=1, timeout=6.0, stall_timeout=2.0, retries=1)
    lookup.poll(0.0)
    lookup.on_failure(a, 1.0)
    assert lookup.poll(1.5) == [a]
    assert lookup.next_deadline() == 3.5  # stall: 1.5 + 2
    assert lookup.poll(3.4) == []
    assert lookup.state_of(a) is PeerState.IN_FLIGHT
    lookup.poll(3.5)
    assert lookup.state_of(a) is PeerState.STALLED
    assert lookup.next_deadline() == 7.5  # hard deadline: 1.5 + 6
    lookup.poll(7.49)
    assert lookup.state_of(a) is PeerState.STALLED
    lookup.poll(7.5)
    assert lookup.state_of(a) is PeerState.FAILED


def test_no_retries_by_default() -> None:
    (a,) = peers(1)
    lookup = Lookup(TARGET, [a])
    assert lookup.retries == 0
    lookup.poll(0.0)
    lookup.on_failure(a, 0.1)
    assert lookup.state_of(a) is PeerState.FAILED
    assert lookup.done


def test_a_misbehaving_peer_loses_its_retries() -> None:
    a, b = peers(2)
    lookup = Lookup(TARGET, [a, b], k=2, retries=PRODUCTION_RETRIES)
    lookup.poll(0.0)
    lookup.on_failure(a, 0.1, retry=False)
    assert lookup.state_of(a) is PeerState.FAILED
    lookup.on_failure(b, 0.1)  # b keeps its own retries
    assert lookup.state_of(b) is PeerState.WAITING
    assert lookup.poll(0.2) == [b]


# --- stalls, deadlines, the clock ---------------------------------------------------------


def test_stall_timeout_defaults_to_a_third_of_the_timeout() -> None:
    a, b = peers(2)
    lookup = Lookup(TARGET, [a, b], k=2, alpha=1, timeout=9.0)
    assert lookup.stall_timeout == 3.0
    assert lookup.poll(0.0) == [a]
    assert lookup.next_deadline() == 3.0
    assert lookup.poll(2.99) == []
    assert lookup.poll(3.0) == [b]  # a stalled: its slot goes to b
    assert lookup.state_of(a) is PeerState.STALLED
    # The earliest of b's stall (6) and a's hard deadline (9).
    assert lookup.next_deadline() == 6.0


def test_next_deadline_is_the_earliest_pending_event() -> None:
    a, b, c = peers(3)
    lookup = Lookup(TARGET, [a, b, c], k=3, alpha=3, timeout=10.0, stall_timeout=2.0)
    assert lookup.next_deadline() is None  # nothing sent yet
    lookup.poll(0.0)
    assert lookup.next_deadline() == 2.0
    lookup.on_response(a, [], 1.0)
    lookup.on_response(b, [], 1.0)
    assert lookup.next_deadline() == 2.0  # c still in flight
    lookup.poll(2.0)
    assert lookup.state_of(c) is PeerState.STALLED
    assert lookup.next_deadline() == 10.0
    lookup.on_response(c, [], 3.0)
    assert lookup.done
    assert lookup.next_deadline() is None


def test_a_late_answer_after_the_deadline_is_ignored() -> None:
    a, b = peers(2)
    lookup = Lookup(TARGET, [a, b], k=2, alpha=2, timeout=5.0)
    lookup.poll(0.0)
    lookup.on_response(b, [], 0.1)
    lookup.poll(5.0)
    assert lookup.state_of(a) is PeerState.FAILED
    lookup.on_response(a, peers(3, "late"), 6.0)
    assert lookup.state_of(a) is PeerState.FAILED
    assert lookup.stats.responses == 1
    assert all(lookup.state_of(c) is None for c in peers(3, "late"))  # its contacts too
    lookup.on_failure(a, 6.0)  # and a failure report for it changes nothing
    assert lookup.stats.failures == 1


# --- windows: alpha in flight, k closest --------------------------------------------------


def test_nearest_candidates_are_asked_first() -> None:
    seeds = peers(10)
    lookup = Lookup(TARGET, list(reversed(seeds)), alpha=3)
    assert lookup.poll(0.0) == seeds[:3]


def test_only_the_k_closest_live_candidates_are_asked() -> None:
    seeds = peers(6)
    lookup = Lookup(TARGET, seeds, k=2, alpha=6)
    assert lookup.poll(0.0) == seeds[:2]
    lookup.on_failure(seeds[0], 0.1)
    # One of the two failed: the window moves out by one.
    assert lookup.poll(0.1) == [seeds[2]]
    lookup.on_response(seeds[1], [], 0.2)
    assert lookup.poll(0.2) == []  # seeds[1] answered, seeds[2] in flight: the window is full
    lookup.on_response(seeds[2], [], 0.3)
    assert lookup.done
    assert lookup.closest() == [seeds[1], seeds[2]]
    assert lookup.state_of(seeds[3]) is PeerState.WAITING  # never needed


def test_alpha_counts_only_active_requests() -> None:
    seeds = peers(5)
    lookup = Lookup(TARGET, seeds, k=5, alpha=2, timeout=10.0, stall_timeout=1.0)
    assert lookup.poll(0.0) == seeds[:2]
    lookup.on_response(seeds[0], [], 0.5)
    assert lookup.poll(0.5) == [seeds[2]]  # one slot freed, one sent
    assert lookup.poll(0.6) == []
    assert lookup.poll(1.0) == [seeds[3]]  # seeds[1] stalled at 1.0; seeds[2] not before 1.5
    assert lookup.poll(1.5) == [seeds[4]]
    assert sorted(lookup.in_flight, key=seeds.index) == seeds[1:5]


def test_alpha_one_is_strictly_sequential() -> None:
    seeds = peers(3)
    lookup = Lookup(TARGET, seeds, k=3, alpha=1)
    order = []
    while not lookup.done:
        sent = lookup.poll(0.0)
        assert len(sent) == 1
        order += sent
        lookup.on_response(sent[0], [], 0.0)
    assert order == seeds


# --- when it is done ----------------------------------------------------------------------


def test_not_done_while_a_nearer_candidate_is_pending() -> None:
    a, b, c = peers(3)
    lookup = Lookup(TARGET, [a, b, c], k=3, alpha=3)
    assert lookup.poll(0.0) == [a, b, c]
    lookup.on_response(c, [], 0.1)
    lookup.on_response(b, [], 0.1)
    assert not lookup.done  # a is nearer than both and has not answered
    lookup.on_response(a, [], 0.2)
    assert lookup.done
    assert lookup.closest() == [a, b, c]
    assert lookup.closest(2) == [a, b]
    assert lookup.closest(1) == [a]


def test_done_once_the_k_closest_have_answered() -> None:
    seeds = peers(4)
    lookup = Lookup(TARGET, seeds, k=2, alpha=4)
    assert lookup.poll(0.0) == seeds[:2]
    lookup.on_response(seeds[0], [], 0.1)
    assert not lookup.done
    lookup.on_response(seeds[1], [], 0.1)
    assert lookup.done
    assert lookup.poll(0.2) == []
    assert lookup.in_flight == []


def test_a_new_nearer_contact_reopens_the_window() -> None:
    far = peers(2, "far")
    near = [
        c
        for c in peers(200, "n")
        if c.int_id ^ int.from_bytes(TARGET, "big")
        < min(f.int_id ^ int.from_bytes(TARGET, "big") for f in far)
    ][:1]
    assert near, "no nearer contact among 200"
    lookup = Lookup(TARGET, [far[0]], k=1, alpha=1)
    lookup.poll(0.0)
    lookup.on_response(far[0], near, 0.1)
    assert not lookup.done
    assert lookup.poll(0.1) == near
    lookup.on_response(near[0], [], 0.2)
    assert lookup.done
    assert lookup.closest() == near
    assert lookup.stats.rounds == 2


def test_offered_contacts_keep_their_shortest_hop() -> None:
    a, b, c = peers(3)
    lookup = Lookup(TARGET, [a, b], k=3, alpha=1)
    assert lookup.poll(0.0) == [a]
    # a names b (a seed, hop 1) and c (new, hop 2); b keeps hop 1.
    lookup.on_response(a, [b, c, a], 0.1)
    assert lookup.poll(0.1) == [b]
    lookup.on_response(b, [], 0.2)
    assert lookup.stats.rounds == 1
    assert lookup.poll(0.2) == [c]
    lookup.on_response(c, [], 0.3)
    assert lookup.stats.rounds == 2
    assert lookup.stats.messages == 3  # a naming itself did not queue it again


def test_excluded_contacts_from_answers_are_never_added() -> None:
    a, b = peers(2)
    lookup = Lookup(TARGET, [a], exclude={b.hashed_id})
    lookup.poll(0.0)
    lookup.on_response(a, [b], 0.1)
    assert lookup.state_of(b) is None
    assert lookup.done


# --- FIND_VALUE ---------------------------------------------------------------------------


def test_a_value_is_ignored_by_a_find_node_lookup() -> None:
    a, b = peers(2)
    lookup = Lookup(TARGET, [a, b], k=2)
    lookup.poll(0.0)
    lookup.on_response(a, [], 0.1, value=b"ignored")
    assert lookup.value is None and lookup.value_from is None
    assert not lookup.done


def test_the_first_value_wins() -> None:
    a, b = peers(2)
    lookup = Lookup(TARGET, [a, b], k=2, find_value=True)
    lookup.poll(0.0)
    lookup.on_response(a, [], 0.1)  # contacts only
    assert not lookup.done
    lookup.on_response(b, [], 0.2, value=b"first")
    assert lookup.done
    assert (lookup.value, lookup.value_from) == (b"first", b)


def test_find_value_without_a_value_ends_like_find_node() -> None:
    seeds = peers(3)
    lookup = Lookup(TARGET, seeds, k=3, find_value=True)
    for peer in lookup.poll(0.0):
        lookup.on_response(peer, [], 0.1)
    assert lookup.done
    assert lookup.value is None
    assert lookup.closest() == seeds


# --- inputs it must ignore ----------------------------------------------------------------


def test_answers_nobody_asked_for_are_ignored() -> None:
    a, b = peers(2)
    stranger = Contact(b"stranger", "10.0.0.9", 1)
    lookup = Lookup(TARGET, [a, b], k=2, alpha=1)
    lookup.on_response(a, [stranger], 0.0)  # a is known but was never asked
    assert lookup.state_of(a) is PeerState.WAITING
    assert lookup.state_of(stranger) is None
    lookup.on_response(stranger, [], 0.0)
    lookup.on_failure(stranger, 0.0)
    lookup.on_failure(b, 0.0)  # waiting, not asked
    assert lookup.state_of(b) is PeerState.WAITING
    assert lookup.stats.responses == 0 and lookup.stats.failures == 0
    lookup.poll(0.0)
    lookup.on_response(a, [], 0.1)
    lookup.on_response(a, [stranger], 0.2)  # a second answer from the same peer
    assert lookup.stats.responses == 1
    assert lookup.state_of(stranger) is None


def test_the_target_must_have_32_bytes() -> None:
    for bad in (b"", bytes(31), bytes(33)):
        with pytest.raises(ValueError) as info:
            Lookup(bad, [])
        assert str(info.value) == "a lookup target has 32 bytes"
    assert Lookup(bytes(32), []).done


def test_default_timeouts() -> None:
    a, b = peers(2)
    lookup = Lookup(TARGET, [a, b], k=2, alpha=1)
    assert (lookup.timeout, lookup.stall_timeout) == (10.0, 10.0 / 3)
    assert lookup.poll(0.0) == [a]
    assert lookup.poll(10.0 / 3) == [b]  # a stalled
    lookup.on_response(b, [], 4.0)
    lookup.poll(9.99)
    assert lookup.state_of(a) is PeerState.STALLED
    lookup.poll(10.0)
    assert lookup.state_of(a) is PeerState.FAILED
    assert lookup.done
