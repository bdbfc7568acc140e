"""The largest value fits one frame with its envelope, whatever the message carrying it."""

from __future__ import annotations

import pytest

from lumera_p2p.dht.contacts import ContactReader, endpoint_kind
from lumera_p2p.dht.eligibility import Eligibility
from lumera_p2p.kademlia import hash_id
from lumera_p2p.wire import envelope
from lumera_p2p.wire.envelope import (
    ENVELOPE_RESERVE,
    MAX_HOST,
    MAX_NODE_ID,
    MAX_VALUE_SIZE,
    MAX_VERSION,
)
from lumera_p2p.wire.messages import (
    HEADER_SIZE,
    MAX_PAYLOAD_SIZE,
    BatchGetValuesResponse,
    BatchStoreDataRequest,
    FindValueResponse,
    KeyValWithClosest,
    Message,
    MessageData,
    MessageType,
    Node,
    StoreDataRequest,
    encode_message,
)

# gob writes a length in 1 byte below 128, then 1 + n bytes: these cover every width up to
# the 5 bytes of a 400 MiB length (2**24 and more), 16 MiB being the dearest to allocate.
SIZES = [0, 127, 128, 255, 256, 65535, 65536, 2**24]


def widest() -> Node:
    return Node(
        id=b"i" * MAX_NODE_ID,
        ip="h" * MAX_HOST,
        port=65535,
        version="v" * MAX_VERSION,
        hashed_id=bytes(32),
    )


def carrying(value: bytes) -> list[MessageData]:
    return [
        StoreDataRequest(data=value, type=1),
        FindValueResponse(closest=[], value=value),
        BatchStoreDataRequest(data=[value], type=1),
        BatchGetValuesResponse(data={"f" * 64: KeyValWithClosest(value=value, closest=[])}),
    ]


def test_the_limit_is_the_frame_limit_minus_the_reserve() -> None:
    assert MAX_VALUE_SIZE + ENVELOPE_RESERVE == MAX_PAYLOAD_SIZE
    assert max(envelope.envelope_sizes().values()) <= ENVELOPE_RESERVE
    assert ENVELOPE_RESERVE % 1024 == 0 and ENVELOPE_RESERVE <= 4096  # not wasteful either


@pytest.mark.parametrize("size", SIZES)
def test_no_envelope_is_larger_than_the_reserve(size: int) -> None:
    """The real encodings, with every field at its largest: body minus value never exceeds
    the reserve, so a MAX_VALUE_SIZE value always fits MAX_PAYLOAD_SIZE."""
    value = bytes(size)
    for data in carrying(value):
        msg = Message(
            sender=widest(),
            receiver=widest(),
            message_type=int(MessageType.STORE_DATA),
            data=data,
            correlation_id="c" * envelope.MAX_CORRELATION_ID,
        )
        body = len(encode_message(msg)) - HEADER_SIZE
        assert body - size <= ENVELOPE_RESERVE, (type(data).__name__, size, body - size)


def test_contacts_past_the_envelope_bounds_are_refused() -> None:
    """A peer advertising a longer version, host or ID than the envelope allows for never
    becomes a contact we would put in a Receiver field."""
    reader = ContactReader(hash_id(b"me"), Eligibility(), allow_private=True)

    def node(**fields: object) -> Node:
        base: dict[str, object] = {"id": b"lumera1peer", "ip": "10.0.0.2", "port": 4445}
        return Node(**{**base, **fields})  # type: ignore[arg-type]

    assert reader.contact(node(version="v" * MAX_VERSION)) is not None
    assert reader.contact(node(version="v" * (MAX_VERSION + 1))) is None
    assert reader.contact(node(id=b"i" * (MAX_NODE_ID + 1))) is None
    host = ("a" * 60 + ".") * 4 + "com"
    assert len(host) <= MAX_HOST and reader.contact(node(ip=host)) is not None
    assert endpoint_kind("a." + "b" * MAX_HOST).value == "unusable"
