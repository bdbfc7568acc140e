"""The largest value that fits one frame with its envelope, computed from the real encodings.

A value travels alone in four messages: StoreData (the origin sends it), FindValue's answer,
a BatchStoreData of one value and a BatchGetValues answer of one key. Each wraps it in an
envelope: the frame's type definitions, ``Sender`` and ``Receiver``, the status, the map key,
and gob's length prefixes. A value the envelope pushes past the frame limit (Go and we refuse
bodies over 400 MiB, wire-protocol.md §5.1) can be stored locally but never sent, so the value
limit is the frame limit minus the largest envelope.

The envelopes are encoded here, once, with every field the node puts in them at its largest:
node IDs of :data:`MAX_NODE_ID` bytes, hosts of :data:`MAX_HOST` characters, versions of
:data:`MAX_VERSION` characters (longer ones are refused from peers, ``dht.contacts``) and a
correlation ID of :data:`MAX_CORRELATION_ID` characters (echoed from requests). An empty
value is encoded and every length prefix that grows with the value is counted at gob's widest
(9 bytes), so the figure is an upper bound for any value size.
"""

from __future__ import annotations

from typing import Final

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
    ResponseStatus,
    StoreDataRequest,
    encode_message,
)

#: Longest node ID accepted from a peer (bech32 addresses are about 45 bytes).
MAX_NODE_ID: Final = 256
#: Longest host a peer may advertise (a DNS name has at most 253 characters).
MAX_HOST: Final = 253
#: Longest version string a peer may advertise (ours: ``v2.4.0``).
MAX_VERSION: Final = 64
#: Longest correlation ID an answer echoes within the bound (Go sends none or a UUID).
MAX_CORRELATION_ID: Final = 64
#: gob's widest unsigned integer (a byte count and 8 bytes).
_WIDEST_UINT: Final = 9
#: Length prefixes that grow with the value: the value's own, the interface value's message
#: and the outer message's (the frame header is fixed at 8 bytes).
_GROWING_PREFIXES: Final = 3
#: The reserve is rounded up to this, so that small changes of the codec keep the limit.
_ROUND: Final = 1024


def _widest_node() -> Node:
    return Node(
        id=b"i" * MAX_NODE_ID,
        ip="h" * MAX_HOST,
        port=65535,
        version="v" * MAX_VERSION,
        hashed_id=b"\xff" * 32,
    )


def _envelopes() -> dict[str, MessageData]:
    failed = ResponseStatus(result=1, err_msg="")
    return {
        "StoreData": StoreDataRequest(data=b"", type=1),
        "FindValue answer": FindValueResponse(status=failed, closest=[], value=b""),
        "BatchStoreData": BatchStoreDataRequest(data=[b""], type=1),
        "BatchGetValues answer": BatchGetValuesResponse(
            data={"f" * 64: KeyValWithClosest(value=b"", closest=[])}, status=failed
        ),
    }


def envelope_sizes() -> dict[str, int]:
    """Bytes each single-value message adds to its value, at most (see the module doc)."""
    out: dict[str, int] = {}
    for name, data in _envelopes().items():
        msg = Message(
            sender=_widest_node(),
            receiver=_widest_node(),
            message_type=int(MessageType.STORE_DATA),
            data=data,
            correlation_id="c" * MAX_CORRELATION_ID,
            origin="",
        )
        body = len(encode_message(msg)) - HEADER_SIZE
        out[name] = body + _GROWING_PREFIXES * _WIDEST_UINT
    return out


def _reserve() -> int:
    widest = max(envelope_sizes().values())
    return -(-widest // _ROUND) * _ROUND


#: Bytes of every frame kept for the envelope of the value it carries.
ENVELOPE_RESERVE: Final = _reserve()
#: The largest value the node stores or accepts: it fits one frame with any envelope.
MAX_VALUE_SIZE: Final = MAX_PAYLOAD_SIZE - ENVELOPE_RESERVE
