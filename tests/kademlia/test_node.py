"""Contacts, routing IDs and XOR distance."""

from __future__ import annotations

import blake3
from hypothesis import given
from hypothesis import strategies as st

from lumera_p2p.kademlia import Contact, bucket_index, distance, hash_id
from lumera_p2p.kademlia.node import ID_BITS, ID_BYTES

ids = st.binary(min_size=32, max_size=32)


def test_id_size() -> None:
    assert (ID_BITS, ID_BYTES) == (256, 32)


def test_hash_id_is_blake3_256() -> None:
    assert hash_id(b"lumera1abc") == blake3.blake3(b"lumera1abc").digest()
    assert len(hash_id(b"")) == 32


@given(ids, ids, ids)
def test_distance_is_a_metric_by_xor(a: bytes, b: bytes, c: bytes) -> None:
    assert distance(a, a) == 0
    assert distance(a, b) == distance(b, a)
    assert distance(a, b) ^ distance(b, c) == distance(a, c)
    assert distance(a, b) == int.from_bytes(bytes(x ^ y for x, y in zip(a, b, strict=True)), "big")


def test_distance_is_big_endian() -> None:
    zero = bytes(32)
    assert distance(zero, b"\x01" + bytes(31)) == 1 << 248
    assert distance(zero, bytes(31) + b"\x01") == 1
    assert distance(b"\xff" * 32, zero) == (1 << 256) - 1


def test_bucket_index_of_each_bit() -> None:
    zero = bytes(32)
    for bit in range(256):
        other = (1 << bit).to_bytes(32, "big")
        assert bucket_index(zero, other) == bit
        assert bucket_index(other, zero) == bit


def test_contact_derives_its_routing_id_from_its_id() -> None:
    c = Contact(b"lumera1xyz", "10.1.2.3", 4445, "v1")
    assert c.hashed_id == hash_id(b"lumera1xyz")
    assert c.int_id == int.from_bytes(hash_id(b"lumera1xyz"), "big")
    # A hashed ID handed in (from a peer) is ignored: it is always recomputed.
    forged = Contact(b"lumera1xyz", "10.1.2.3", 4445, hashed_id=bytes(32))
    assert forged.hashed_id == c.hashed_id


def test_contact_text_forms() -> None:
    c = Contact(b"lumera1xyz", "10.1.2.3", 4445)
    assert c.address == "lumera1xyz"
    assert c.endpoint == "10.1.2.3:4445"
    assert c.pool_key == "lumera1xyz@10.1.2.3:4445"
    assert str(c) == c.pool_key
    v6 = Contact(b"lumera1xyz", "fd00::1", 9)
    assert v6.endpoint == "[fd00::1]:9"
    assert v6.pool_key == "lumera1xyz@[fd00::1]:9"
    # Not ASCII (a peer can send anything): shown with replacement characters, no error.
    assert Contact(b"bad\xffid", "10.0.0.1", 1).address == "bad\ufffdid"


def test_with_endpoint_keeps_identity_and_version() -> None:
    c = Contact(b"lumera1xyz", "10.1.2.3", 4445, "v2")
    moved = c.with_endpoint("10.9.9.9", 1234)
    assert (moved.id, moved.ip, moved.port, moved.version) == (
        b"lumera1xyz",
        "10.9.9.9",
        1234,
        "v2",
    )
    assert moved.hashed_id == c.hashed_id
    assert moved != c  # the endpoint is part of equality
    assert Contact(b"lumera1xyz", "10.1.2.3", 4445, "v2") == c
