"""Kademlia messages of the Lumera supernode (``p2p/kademlia/message.go``, ``node.go``) and framing.

A frame is an 8-byte header holding ``binary.PutUvarint(len(body))`` zero-padded, then ``body``:
one gob stream from a fresh encoder carrying one ``*Message``. The Python classes below mirror the
Go structs field for field (same order; snake_case names, the Go name is in each descriptor), and
:data:`REGISTRY` holds the 16 concrete types that travel in ``Message.Data`` under the names Go's
``gob.Register(&T{})`` gives them (``"*kademlia.FindNodeRequest"``...).

Go decodes a frame with these limits, checked here before anything is allocated: a body over
500 MiB is "message size exceeds absolute maximum", one over 400 MiB is "payload too big".
Reading frames from a stream is ``net.frames``'s job; this module is bytes in, values out.

Frames are encoded and decoded by a codec generated for these types (:data:`FAST_CODEC`), which
hands anything unusual to the general gob codec; both give the same bytes and the same values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from types import MappingProxyType
from typing import Final, TypeAlias

from lumera_p2p.errors import ProtocolError
from lumera_p2p.wire.gob import (
    DEFAULT_DECODE_LIMIT,
    DEFAULT_MAX_DEPTH,
    DecodeLimit,
    GobDecodeCache,
    GobDecoder,
    GobEncodeError,
    GobEncoder,
    GoBool,
    GoBytes,
    GoField,
    GoInt,
    GoInterface,
    GoMap,
    GoPtr,
    GoSlice,
    GoString,
    GoStruct,
    GoType,
    GoUint,
    InterfaceRegistry,
    TypeTable,
)
from lumera_p2p.wire.gob.fast import FastCodec

__all__ = [
    "HEADER_SIZE",
    "MAX_MESSAGE_SIZE",
    "MAX_PAYLOAD_SIZE",
    "REGISTRY",
    "BatchFindNodeRequest",
    "BatchFindNodeResponse",
    "BatchFindValuesRequest",
    "BatchFindValuesResponse",
    "BatchGetValuesRequest",
    "BatchGetValuesResponse",
    "BatchStoreDataRequest",
    "FindNodeRequest",
    "FindNodeResponse",
    "FindValueRequest",
    "FindValueResponse",
    "KeyValWithClosest",
    "Message",
    "MessageData",
    "MessageType",
    "Node",
    "ReplicateDataRequest",
    "ReplicateDataResponse",
    "ResponseStatus",
    "ResultType",
    "StoreDataRequest",
    "StoreDataResponse",
    "decode_body",
    "decode_message",
    "encode_message",
    "encode_message_parts",
    "frame_header",
    "go_type_of",
    "parse_header",
]

HEADER_SIZE: Final = 8
MAX_MESSAGE_SIZE: Final = 500 * 1024 * 1024
"""Go's absolute maximum body length (``message.go``)."""
MAX_PAYLOAD_SIZE: Final = 400 * 1024 * 1024
"""``defaultMaxPayloadSize`` (400 MB of 1,048,576 bytes): the largest body Go accepts."""


class MessageType(IntEnum):
    """``Message.MessageType`` values; a response carries its request's type."""

    PING = 0
    STORE_DATA = 1
    FIND_NODE = 2
    FIND_VALUE = 3
    REPLICATE = 4
    BATCH_FIND_VALUES = 5
    BATCH_STORE_DATA = 6
    BATCH_FIND_NODE = 7
    BATCH_GET_VALUES = 8


class ResultType(IntEnum):
    """``ResponseStatus.Result``."""

    OK = 0
    FAILED = 1


@dataclass(slots=True)
class Node:
    """A peer: ``ID`` is the bech32 account address as ASCII bytes, ``HashedID`` its BLAKE3-256."""

    id: bytes = b""
    ip: str = ""
    port: int = 0  # uint16
    version: str = ""
    hashed_id: bytes = b""


@dataclass(slots=True)
class ResponseStatus:
    """Outcome of a request: ``result`` is a :class:`ResultType`, ``err_msg`` says why."""

    result: int = ResultType.OK
    err_msg: str = ""


@dataclass(slots=True)
class FindNodeRequest:
    """FIND_NODE: the server looks up BLAKE3(``target``)."""

    target: bytes = b""


@dataclass(slots=True)
class FindNodeResponse:
    """The closest nodes the server knows."""

    status: ResponseStatus = field(default_factory=ResponseStatus)
    closest: list[Node] = field(default_factory=list)


@dataclass(slots=True)
class FindValueRequest:
    """FIND_VALUE: ``target`` is the raw 32-byte key."""

    target: bytes = b""


@dataclass(slots=True)
class FindValueResponse:
    """Either the value, or the closest nodes."""

    status: ResponseStatus = field(default_factory=ResponseStatus)
    closest: list[Node] = field(default_factory=list)
    value: bytes = b""


@dataclass(slots=True)
class StoreDataRequest:
    """STORE_DATA: the key is BLAKE3(``data``); ``type`` is 0 (default) or 1 (RaptorQ symbol)."""

    data: bytes = b""
    type: int = 0


@dataclass(slots=True)
class StoreDataResponse:
    """Answer to STORE_DATA and to BATCH_STORE_DATA."""

    status: ResponseStatus = field(default_factory=ResponseStatus)


@dataclass(slots=True)
class ReplicateDataRequest:
    """REPLICATE: hex keys the sender holds."""

    keys: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ReplicateDataResponse:
    """Answer to REPLICATE."""

    status: ResponseStatus = field(default_factory=ResponseStatus)


@dataclass(slots=True)
class BatchFindValuesRequest:
    """BATCH_FIND_VALUES: keys to look up."""

    keys: list[str] = field(default_factory=list)


@dataclass(slots=True)
class BatchFindValuesResponse:
    """``response`` is zstd(JSON map of key to base64 value); ``done`` means nothing was cut."""

    status: ResponseStatus = field(default_factory=ResponseStatus)
    response: bytes = b""
    done: bool = False


@dataclass(slots=True)
class KeyValWithClosest:
    """A value, or the nodes closest to its key (only ever a map element)."""

    value: bytes = b""
    closest: list[Node] = field(default_factory=list)


@dataclass(slots=True)
class BatchGetValuesRequest:
    """BATCH_GET_VALUES: hex key to (empty) entry. ``None`` is Go's nil map, ``{}`` an empty one."""

    data: dict[str, KeyValWithClosest] | None = None


@dataclass(slots=True)
class BatchGetValuesResponse:
    """The request's map with values (or closest nodes) filled in."""

    data: dict[str, KeyValWithClosest] | None = None
    status: ResponseStatus = field(default_factory=ResponseStatus)


@dataclass(slots=True)
class BatchStoreDataRequest:
    """BATCH_STORE_DATA: values whose keys are their BLAKE3; answered with StoreDataResponse."""

    data: list[bytes] = field(default_factory=list)
    type: int = 0


@dataclass(slots=True)
class BatchFindNodeRequest:
    """BATCH_FIND_NODE: hashed targets."""

    hashed_target: list[bytes] = field(default_factory=list)


@dataclass(slots=True)
class BatchFindNodeResponse:
    """Closest nodes per base58 hashed target (``None`` is Go's nil map)."""

    status: ResponseStatus = field(default_factory=ResponseStatus)
    closest_nodes: dict[str, list[Node]] | None = None


MessageData: TypeAlias = (
    ResponseStatus
    | FindNodeRequest
    | FindNodeResponse
    | FindValueRequest
    | FindValueResponse
    | StoreDataRequest
    | StoreDataResponse
    | ReplicateDataRequest
    | ReplicateDataResponse
    | BatchFindValuesRequest
    | BatchFindValuesResponse
    | BatchStoreDataRequest
    | BatchFindNodeRequest
    | BatchFindNodeResponse
    | BatchGetValuesRequest
    | BatchGetValuesResponse
)


@dataclass(slots=True)
class Message:
    """One Kademlia RPC message. Go peers always send ``sender`` and ``receiver``."""

    sender: Node | None = None
    receiver: Node | None = None
    message_type: int = MessageType.PING
    data: MessageData | None = None
    correlation_id: str = ""
    origin: str = ""


# ---- Go types -------------------------------------------------------------------------------

_PKG: Final = "kademlia"


def _go_struct(cls: type, name: str, *go_fields: tuple[str, GoType]) -> GoStruct:
    """Describe ``cls`` as the Go struct ``name``; Go fields pair with the dataclass fields."""
    attrs = [f.name for f in dataclasses.fields(cls)]
    if len(attrs) != len(go_fields):
        raise TypeError(f"{name}: {len(attrs)} Python fields for {len(go_fields)} Go fields")
    fields = [GoField(go, t, attr) for (go, t), attr in zip(go_fields, attrs, strict=True)]
    return GoStruct(name, _PKG, fields, cls)


_BYTES: Final = GoBytes()
_STRING: Final = GoString()
_INT: Final = GoInt()

GO_NODE: Final = _go_struct(
    Node,
    "Node",
    ("ID", _BYTES),
    ("IP", _STRING),
    ("Port", GoUint(16, "uint16")),
    ("Version", _STRING),
    ("HashedID", _BYTES),
)
_NODES: Final = GoSlice(GoPtr(GO_NODE))  # []*Node
_RESULT: Final = GoInt(64, "ResultType", _PKG)
GO_RESPONSE_STATUS: Final = _go_struct(
    ResponseStatus, "ResponseStatus", ("Result", _RESULT), ("ErrMsg", _STRING)
)
_STATUS: Final = ("Status", GO_RESPONSE_STATUS)
GO_KEY_VAL_WITH_CLOSEST: Final = _go_struct(
    KeyValWithClosest, "KeyValWithClosest", ("Value", _BYTES), ("Closest", _NODES)
)
_KV_MAP: Final = GoMap(_STRING, GO_KEY_VAL_WITH_CLOSEST)

GO_MESSAGE: Final = _go_struct(
    Message,
    "Message",
    ("Sender", GoPtr(GO_NODE)),
    ("Receiver", GoPtr(GO_NODE)),
    ("MessageType", _INT),
    ("Data", GoInterface()),
    ("CorrelationID", _STRING),
    ("Origin", _STRING),
)

# Registration order of message.go's init; names are what gob.Register(&T{}) produces.
_DATA_TYPES: Final[tuple[GoStruct, ...]] = (
    GO_RESPONSE_STATUS,
    _go_struct(FindNodeRequest, "FindNodeRequest", ("Target", _BYTES)),
    _go_struct(FindNodeResponse, "FindNodeResponse", _STATUS, ("Closest", _NODES)),
    _go_struct(FindValueRequest, "FindValueRequest", ("Target", _BYTES)),
    _go_struct(
        FindValueResponse, "FindValueResponse", _STATUS, ("Closest", _NODES), ("Value", _BYTES)
    ),
    _go_struct(StoreDataRequest, "StoreDataRequest", ("Data", _BYTES), ("Type", _INT)),
    _go_struct(StoreDataResponse, "StoreDataResponse", _STATUS),
    _go_struct(ReplicateDataRequest, "ReplicateDataRequest", ("Keys", GoSlice(_STRING))),
    _go_struct(ReplicateDataResponse, "ReplicateDataResponse", _STATUS),
    _go_struct(BatchFindValuesRequest, "BatchFindValuesRequest", ("Keys", GoSlice(_STRING))),
    _go_struct(
        BatchFindValuesResponse,
        "BatchFindValuesResponse",
        _STATUS,
        ("Response", _BYTES),
        ("Done", GoBool()),
    ),
    _go_struct(
        BatchStoreDataRequest, "BatchStoreDataRequest", ("Data", GoSlice(_BYTES)), ("Type", _INT)
    ),
    _go_struct(BatchFindNodeRequest, "BatchFindNodeRequest", ("HashedTarget", GoSlice(_BYTES))),
    _go_struct(
        BatchFindNodeResponse,
        "BatchFindNodeResponse",
        _STATUS,
        ("ClosestNodes", GoMap(_STRING, _NODES)),
    ),
    _go_struct(BatchGetValuesRequest, "BatchGetValuesRequest", ("Data", _KV_MAP)),
    _go_struct(BatchGetValuesResponse, "BatchGetValuesResponse", ("Data", _KV_MAP), _STATUS),
)

REGISTRY: Final = InterfaceRegistry((f"*{_PKG}.{t.name}", GoPtr(t)) for t in _DATA_TYPES)
"""The 16 types Go registers for ``Message.Data``."""

_DATA_CLASSES: Final[tuple[type, ...]] = tuple(t.factory for t in _DATA_TYPES)  # type: ignore[misc]
_GO_TYPES: Final[Mapping[type, GoStruct]] = MappingProxyType(
    {
        Message: GO_MESSAGE,
        Node: GO_NODE,
        KeyValWithClosest: GO_KEY_VAL_WITH_CLOSEST,
        **dict(zip(_DATA_CLASSES, _DATA_TYPES, strict=True)),
    }
)
_MESSAGE_PTR: Final = GoPtr(GO_MESSAGE)


def go_type_of(cls: type) -> GoStruct:
    """The Go struct descriptor of a message class."""
    return _GO_TYPES[cls]


def _fresh_tables() -> Mapping[type | None, TypeTable]:
    """Type tables as a fresh Go process leaves them after encoding its first message.

    Go numbers Message and Node first (64, 65), then the Data type and its parts when the
    interface is encoded, so the fresh ids depend only on Data's class. Building these once keeps
    the encoded type definitions cached; every use works on a copy.
    """
    tables: dict[type | None, TypeTable] = {}
    for cls in (None, *_DATA_CLASSES):
        table = TypeTable()
        table.prepare(GO_MESSAGE)
        if cls is not None:
            table.prepare(_GO_TYPES[cls])
        tables[cls] = table
    return MappingProxyType(tables)


_FRESH: Final = _fresh_tables()


# ---- framing --------------------------------------------------------------------------------


def frame_header(length: int) -> bytes:
    """``binary.PutUvarint(length)`` in an 8-byte, zero-padded array."""
    # Every frame has a header: bodies below 2 MiB (one to three uvarint bytes) are one
    # integer conversion instead of a loop.
    if 0 <= length < 0x80:
        return length.to_bytes(HEADER_SIZE, "little")
    if 0 <= length < 0x4000:
        return (0x80 | (length & 0x7F) | (length >> 7) << 8).to_bytes(HEADER_SIZE, "little")
    if 0 <= length < 0x200000:
        low = 0x8080 | (length & 0x7F) | ((length >> 7) & 0x7F) << 8
        return (low | (length >> 14) << 16).to_bytes(HEADER_SIZE, "little")
    out = bytearray()
    while length >= 0x80:
        out.append((length & 0x7F) | 0x80)
        length >>= 7
    out.append(length)
    if len(out) > HEADER_SIZE:
        raise GobEncodeError("frame length does not fit the 8-byte header")
    return bytes(out.ljust(HEADER_SIZE, b"\0"))


def parse_header(header: bytes) -> int:
    """The body length in an 8-byte header, refused as Go refuses it if over the limits.

    Go reads the uvarint and ignores the padding bytes after it, whatever they hold.
    """
    if len(header) < HEADER_SIZE:
        raise ProtocolError("EOF" if not header else "unexpected EOF")
    first = header[0]
    if first < 0x80:  # a body below 128 bytes
        return first
    if header[1] < 0x80:  # below 16 KiB: the limits are far
        return (first & 0x7F) | header[1] << 7
    length = 0
    for i in range(HEADER_SIZE):
        b = header[i]
        length |= (b & 0x7F) << (7 * i)
        if b < 0x80:
            break
    else:
        raise ProtocolError("parse header length: unexpected EOF")
    if length > MAX_MESSAGE_SIZE:
        raise ProtocolError("message size exceeds absolute maximum")
    if length > MAX_PAYLOAD_SIZE:
        raise ProtocolError("payload too big")
    return length


FAST_CODEC: Final = FastCodec(GO_MESSAGE, REGISTRY, memo=(GO_NODE,))
"""Generated encoders and decoders for ``*Message`` frames of every registered Data type.

Nodes are memoised (``wire.gob.codegen``): every message carries two, a lookup answer twenty
per target, and they name the same peers again and again. The codec keeps the encoding of
the last few thousand distinct nodes it wrote; a decoder's :class:`GobDecodeCache` the nodes
it read."""


def _check_size(length: int) -> None:
    if length > MAX_MESSAGE_SIZE:
        raise GobEncodeError("message size exceeds absolute maximum")
    if length > MAX_PAYLOAD_SIZE:
        raise GobEncodeError("payload too big")


def encode_message_parts(
    msg: Message, *, types: TypeTable | None = None, fast: bool = True
) -> tuple[list[bytes | bytearray | memoryview], int]:
    """The frame for ``msg`` as buffers to send in order (the header first), and their total
    size; see :func:`encode_message`. Large byte fields (``bytes`` or read-only views) are
    among the buffers by reference, not copied: a 256 MiB value is sent to six peers without
    six copies of it. The caller must not change them until the frame is sent."""
    if types is None and fast:
        encoded = FAST_CODEC.encode(msg)
        if encoded is not None:
            chunks, size = encoded
            _check_size(size)
            return [frame_header(size), *chunks], HEADER_SIZE + size
    if types is None:
        fresh = _FRESH.get(type(msg.data) if msg.data is not None else None)
        types = fresh.copy() if fresh is not None else TypeTable()
    parts = GobEncoder(types, REGISTRY).encode_parts(msg, _MESSAGE_PTR)
    length = sum(len(p) for p in parts)
    _check_size(length)
    return [frame_header(length), *parts], HEADER_SIZE + length


def encode_frame_joined(
    msg: Message, join_below: int
) -> bytes | tuple[list[bytes | bytearray | memoryview], int]:
    """:func:`encode_message_parts`, but a frame of at most ``join_below`` bytes that the
    generated codec writes comes back whole, as one ``bytes`` (the same bytes joined): for
    the many small messages, no list of parts to build and join again."""
    encoded = FAST_CODEC.encode(msg)
    if encoded is None:
        return encode_message_parts(msg, fast=False)
    chunks, size = encoded
    _check_size(size)
    if size + HEADER_SIZE <= join_below:
        try:
            return b"".join((frame_header(size), *chunks))
        except TypeError:  # a part that is no buffer (``net.frames.LazyBytes``)
            pass
    return [frame_header(size), *chunks], HEADER_SIZE + size


def encode_message(msg: Message, *, types: TypeTable | None = None, fast: bool = True) -> bytes:
    """The full frame (header and gob body) for ``msg``, byte-identical to Go's ``encode``.

    Without ``types`` the type ids are those of a fresh Go process (go1.26: Message = 64); pass a
    :class:`TypeTable` kept across calls to number types like a long-running process does.
    The generated codec (:data:`FAST_CODEC`) writes fresh-process frames; ``fast=False`` forces
    the general encoder (the reference, for tests and benchmarks), which also writes every
    frame the generated one does not.
    """
    parts, _ = encode_message_parts(msg, types=types, fast=fast)
    return b"".join(parts)


def decode_body(
    body: bytes | bytearray | memoryview,
    *,
    start: int = 0,
    stop: int | None = None,
    max_depth: int = DEFAULT_MAX_DEPTH,
    cache: GobDecodeCache | None = None,
    fast: bool = True,
    views_from: int = 0,
    limit: DecodeLimit = DEFAULT_DECODE_LIMIT,
) -> Message:
    """Decode the gob body of one frame (``body[start:stop]``) as Go does: one value; anything
    after it is ignored.

    Frames whose type definitions the generated codec recognises are decoded by it; every other
    frame, and every frame it finds anything unusual in, by the general decoder, whose verdict
    is Go's (``fast=False`` uses only that one). Pass one long-lived ``cache`` to skip
    re-parsing the type definitions every frame repeats, and to let the generated codec learn
    the type numbering of long-running peers.

    With ``views_from`` and a ``memoryview`` body, byte fields of at least that size are
    read-only views into the body, not copies (``GobDecoder``); such a body goes to the general
    decoder, which is the one that can hand out views (it is also the one whose cost does not
    matter beside a large payload).

    Either way, what the message may take once decoded is bounded by ``limit`` (by default
    2 MiB plus 4 times the body's size in objects, besides the contents of its strings and
    byte strings: ``wire.gob.costs``); a message over it is refused (``ProtocolError``).
    """
    if views_from > 0 and isinstance(body, memoryview):
        decoder = GobDecoder(
            body,
            REGISTRY,
            start=start,
            stop=stop,
            max_depth=max_depth,
            cache=cache,
            views_from=views_from,
            limit=limit,
        )
        viewed = decoder.decode(_MESSAGE_PTR)
        assert isinstance(viewed, Message)
        return viewed
    if not isinstance(body, bytes):
        body = bytes(body)
    if fast:
        msg = FAST_CODEC.decode(body, start, stop, max_depth, cache, limit)
        if msg is not None:
            assert isinstance(msg, Message)
            return msg
    decoder = GobDecoder(
        body, REGISTRY, start=start, stop=stop, max_depth=max_depth, cache=cache, limit=limit
    )
    msg = decoder.decode(_MESSAGE_PTR)
    assert isinstance(msg, Message)
    return msg


def decode_message(
    frame: bytes,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    cache: GobDecodeCache | None = None,
    fast: bool = True,
    limit: DecodeLimit = DEFAULT_DECODE_LIMIT,
) -> Message:
    """Decode exactly one frame (header and body); raises :class:`ProtocolError`."""
    length = parse_header(frame[:HEADER_SIZE])
    available = len(frame) - HEADER_SIZE
    if available < length:
        raise ProtocolError("EOF" if available == 0 else "unexpected EOF")
    if available > length:
        raise ProtocolError(f"{available - length} bytes after the frame")
    return decode_body(
        frame,
        start=HEADER_SIZE,
        stop=HEADER_SIZE + length,
        max_depth=max_depth,
        cache=cache,
        fast=fast,
        limit=limit,
    )
