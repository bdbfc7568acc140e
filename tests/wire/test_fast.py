"""The generated codec (``FAST_CODEC``) against the general one: same bytes, same values, same
verdicts, on arbitrary messages of every type, Go's vectors, long-running peers' numbering and
damaged frames."""

from __future__ import annotations

import json
import time
import tracemalloc
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lumera_p2p.errors import ProtocolError
from lumera_p2p.wire import (
    REGISTRY,
    BatchFindNodeRequest,
    BatchFindNodeResponse,
    BatchFindValuesRequest,
    BatchFindValuesResponse,
    BatchGetValuesRequest,
    BatchGetValuesResponse,
    BatchStoreDataRequest,
    FindNodeRequest,
    FindNodeResponse,
    FindValueRequest,
    FindValueResponse,
    GobDecodeCache,
    GobEncodeError,
    KeyValWithClosest,
    Message,
    MessageData,
    MessageType,
    Node,
    ReplicateDataRequest,
    ReplicateDataResponse,
    ResponseStatus,
    StoreDataRequest,
    StoreDataResponse,
    TypeTable,
    decode_body,
    decode_message,
    encode_message,
    frame_header,
    parse_header,
)
from lumera_p2p.wire.gob import (
    GobDecoder,
    GoField,
    GoInterface,
    GoPtr,
    GoString,
    GoStruct,
    InterfaceRegistry,
    WireType,
)
from lumera_p2p.wire.gob.codegen import Unsupported, uint_bytes
from lumera_p2p.wire.gob.fast import FastCodec
from lumera_p2p.wire.gob.wiretypes import WIRE_T, CommonType, FieldType, SliceType, StructType
from lumera_p2p.wire.gob.writers import Buffer, encode_struct
from lumera_p2p.wire.messages import FAST_CODEC, GO_MESSAGE

from .conftest import GOB_VECTORS, load_vectors
from .gojson import from_go_json
from .strategies import DATA, DATA_BY_TYPE, NODES, messages_with

MESSAGE = GoPtr(GO_MESSAGE)
TYPES = [None, *DATA_BY_TYPE]
HISTORY_A_2 = "history_a_2_store_data_response_ok"
NODE = Node(
    b"lumera1jcus5g9v6r080rg7dljvvpr4cm8k7psqwg7tj8", "127.0.0.1", 4445, "v2.4.0", b"h" * 32
)
SAMPLES: list[MessageData] = [
    ResponseStatus(1, "x"),
    FindNodeRequest(b"t" * 32),
    FindNodeResponse(ResponseStatus(), [NODE, NODE]),
    FindValueRequest(b"k" * 32),
    FindValueResponse(ResponseStatus(1, "e"), [NODE], b"v" * 40),
    StoreDataRequest(b"d" * 200, 1),
    StoreDataResponse(ResponseStatus()),
    ReplicateDataRequest(["a" * 64, "b"]),
    ReplicateDataResponse(ResponseStatus(1, "no")),
    BatchFindValuesRequest(["k1", "k2"]),
    BatchFindValuesResponse(ResponseStatus(), b"z" * 30, True),
    BatchStoreDataRequest([b"a" * 130, b""], 1),
    BatchFindNodeRequest([b"h" * 32]),
    BatchFindNodeResponse(ResponseStatus(), {"key": [NODE, NODE]}),
    BatchGetValuesRequest({"k": KeyValWithClosest()}),
    BatchGetValuesResponse({"k": KeyValWithClosest(b"v", [NODE])}, ResponseStatus()),
]
"""One value of each registered type (the seeds of the damaged-frame tests)."""


def _type_name(cls: type | None) -> str:
    return "nil" if cls is None else cls.__name__


def _strategy(cls: type | None) -> st.SearchStrategy[Message]:
    return messages_with(st.none() if cls is None else DATA_BY_TYPE[cls])


def _fast(frame: bytes, cache: GobDecodeCache | None = None) -> Any:
    """What the generated decoder alone makes of a frame's body (None: not its kind of frame)."""
    return FAST_CODEC.decode(frame, 8, None, 100, cache)


def _framed(frame: bytes) -> bool:
    """Whether the header states the body's real length (else decoding fails before gob)."""
    try:
        return len(frame) == 8 + parse_header(frame[:8])
    except ProtocolError:
        return False


def _general(frame: bytes) -> Message | str:
    try:
        return decode_message(frame, fast=False)
    except ProtocolError as exc:
        return f"ProtocolError: {exc}"


def _verdict(frame: bytes, cache: GobDecodeCache | None = None) -> Message | str:
    try:
        return decode_message(frame, cache=cache)
    except ProtocolError as exc:
        return f"ProtocolError: {exc}"


# --- arbitrary messages of every type -------------------------------------------------------


@pytest.mark.parametrize("cls", TYPES, ids=_type_name)
def test_same_bytes_and_values_for_every_type(cls: type | None) -> None:
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_strategy(cls))
    def check(msg: Message) -> None:
        fast = FAST_CODEC.encode(msg)
        assert fast is not None, "the generated encoder declined a valid message"
        frame = encode_message(msg)
        assert frame == encode_message(msg, fast=False)
        assert frame[8:] == b"".join(fast[0]) and len(frame) - 8 == fast[1]
        decoded = _fast(frame)
        assert decoded is not None, "the generated decoder declined a fresh frame"
        assert decoded == decode_message(frame, fast=False)
        assert decoded == msg

    check()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(min_size=2048, max_size=20_000), max_size=3), st.integers(0, 3))
def test_large_values_are_kept_by_reference(values: list[bytes], kind: int) -> None:
    """Values of 2 KiB (BIG_CHUNK) and more go into the frame with one copy (the final join)."""
    data: MessageData = (
        BatchStoreDataRequest(values, 1),
        StoreDataRequest(values[0] if values else b"", 0),
        FindValueResponse(ResponseStatus(), [], values[-1] if values else b""),
        BatchGetValuesResponse({str(i): KeyValWithClosest(v, []) for i, v in enumerate(values)}),
    )[kind]
    msg = Message(Node(b"a"), Node(b"b"), 6, data)
    fast = FAST_CODEC.encode(msg)
    assert fast is not None
    parts, _ = fast
    for value in values[:1] if kind == 1 else values[-1:] if kind == 2 else values:
        assert any(part is value for part in parts)
    frame = encode_message(msg)
    assert frame == encode_message(msg, fast=False)
    assert _fast(frame) == msg


def test_mutable_buffers_encode_like_bytes() -> None:
    value = bytearray(b"x" * 5000)
    msg = Message(data=StoreDataRequest(memoryview(value)))  # type: ignore[arg-type]
    assert encode_message(msg) == encode_message(msg, fast=False)
    assert encode_message(msg) == encode_message(Message(data=StoreDataRequest(bytes(value))))


@pytest.mark.parametrize(
    "msg",
    [
        Message(sender=Node(port=70000)),
        Message(sender=Node(port=-1)),
        Message(message_type=1 << 63),
        Message(data=FindNodeResponse(closest=[None])),  # type: ignore[list-item]
        Message(data=StoreDataRequest(type=-(1 << 63) - 1)),
        Message(data=Node()),  # type: ignore[arg-type]
        Message(data=BatchGetValuesResponse({"k": None})),  # type: ignore[dict-item]
        Message(sender=Node(id="text")),  # type: ignore[arg-type]
        Message(correlation_id=b"bytes"),  # type: ignore[arg-type]
        None,
    ],
    ids=repr,
)
def test_what_the_general_encoder_refuses_the_fast_one_leaves_to_it(msg: Message) -> None:
    assert FAST_CODEC.encode(msg) is None
    errors: list[str] = []
    for fast in (True, False):
        with pytest.raises((GobEncodeError, TypeError, AttributeError)) as info:
            encode_message(msg, fast=fast)
        errors.append(f"{type(info.value).__name__}: {info.value}")
    assert errors[0] == errors[1]


def test_explicit_type_tables_use_the_general_encoder() -> None:
    msg = Message(data=FindNodeResponse(ResponseStatus(), [Node(b"n")]))
    assert encode_message(msg, types=TypeTable(65)) != encode_message(msg)
    assert decode_message(encode_message(msg, types=TypeTable(65))) == msg


# --- Go's frames ---------------------------------------------------------------------------


def _vectors() -> list[dict[str, Any]]:
    return load_vectors("gob-vectors.json")


def test_every_go_vector_through_the_generated_codec() -> None:
    """Go's own frames: the generated decoder reads every fresh-process one as it is, learns the
    numbering of the one from a process with history, and agrees with the general decoder."""
    cache = GobDecodeCache()
    for vec in _vectors():
        frame = bytes.fromhex(vec["frame_hex"])
        general = decode_message(frame, fast=False)
        if vec["name"] == HISTORY_A_2:
            assert _fast(frame) is None  # StoreDataResponse is 67, not a fresh process's 66
        else:
            assert _fast(frame) == general, vec["name"]
        assert decode_message(frame, cache=cache) == general  # learns what it has not seen
        assert _fast(frame, cache) == general, vec["name"]
        go_19 = bytes.fromhex(vec["other_go_version"]["frame_hex"])
        assert _fast(go_19) is None  # ids from 65: not this codec's prefix
        assert decode_message(go_19) == decode_message(go_19, fast=False) == general


def test_fresh_go_vectors_are_our_bytes() -> None:
    for vec in _vectors():
        if vec["name"] == HISTORY_A_2:
            continue
        msg = from_go_json(vec["go_value"], MESSAGE, REGISTRY)
        fast = FAST_CODEC.encode(msg)
        assert fast is not None
        assert (frame_header(fast[1]) + b"".join(fast[0])).hex() == vec["frame_hex"]


def test_bad_vectors_get_the_same_verdict() -> None:
    cache = GobDecodeCache()
    for vec in load_vectors("gob-bad.json"):
        if vec["frame_hex"] is None:
            continue  # the 16 MB crash frame: see test_gob_bad
        frame = bytes.fromhex(vec["frame_hex"])
        general = _general(frame)
        assert _verdict(frame) == general == _verdict(frame, cache), vec["name"]
        if isinstance(general, str) and _framed(frame):
            # Go's gob decoder refuses it: the generated decoder must not accept it.
            for c in (None, cache):
                assert _fast(frame, c) is None, vec["name"]


# --- long-running peers --------------------------------------------------------------------


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(DATA, min_size=1, max_size=6), st.sampled_from([64, 65]))
def test_history_numbering_is_learnt(history: list[MessageData], first_id: int) -> None:
    """A peer that sent other messages first numbers types by its history: the generated
    decoder learns each numbering once (in the cache) and then decodes as the general one."""
    table = TypeTable(first_id)
    cache = GobDecodeCache()
    for data in history:
        msg = Message(Node(b"s"), Node(b"r"), 3, data, "c", "o")
        frame = encode_message(msg, types=table)
        general = decode_message(frame, fast=False)
        assert general == msg
        assert decode_message(frame, cache=cache) == general
        if first_id == 64:
            assert _fast(frame, cache) == general  # learnt by the decode above
        else:
            assert _fast(frame, cache) is None  # Message is not 64: not this codec's prefix


def test_learnt_shapes_are_bounded() -> None:
    cache = GobDecodeCache(max_entries=4)
    msg = Message(data=FindNodeResponse(ResponseStatus(), [Node(b"n")]))
    for shift in range(12):
        table = TypeTable()
        table.prepare(GO_MESSAGE)
        for i in range(shift):  # types this peer sent before: FindNodeResponse comes later
            table.prepare(GoStruct(f"U{i}", "x", [], dict))
        frame = encode_message(msg, types=table)
        assert decode_message(frame, cache=cache) == msg
        assert (_fast(frame) is None) == (shift > 0)
        assert _fast(frame, cache) == msg
        assert len(cache.shapes) <= 4


def _gob_messages(body: bytes) -> list[bytes]:
    """A gob stream split into its messages (contents, without their lengths)."""
    out, pos = [], 0
    while pos < len(body):
        decoder = GobDecoder(body, start=pos)
        decoder.end = decoder.pos = pos  # read one uint: the message's length
        decoder.end = len(body)
        length = decoder.read_uint()
        out.append(body[decoder.pos : decoder.pos + length])
        pos = decoder.pos + length
    return out


def _definition(tid: int, wire: WireType) -> bytes:
    out = Buffer()
    out.int(-tid)
    encode_struct(None, out, wire, WIRE_T)
    return out.getvalue()


def _with_extra_definitions(msg: Message, extra: list[bytes]) -> bytes:
    """The frame of ``msg`` with unused definition messages before the value's message."""
    messages = _gob_messages(encode_message(msg)[8:])
    messages[-1:-1] = extra
    body = b"".join(uint_bytes(len(m)) + m for m in messages)
    return frame_header(len(body)) + body


@pytest.mark.parametrize("kind", ["many", "large"])
def test_oversized_definition_sequences_are_not_learnt(kind: str) -> None:
    """Unused definitions are legal (the general decoder skips them), but a sequence longer
    than any Go peer sends is not learnt: a peer cannot fill the cache with big entries."""
    msg = Message(data=FindNodeResponse(ResponseStatus(), [Node(b"n")]))
    if kind == "many":
        extra = [
            _definition(100 + i, WireType(slice_t=SliceType(CommonType("s", 100 + i), 6)))
            for i in range(20)
        ]
    else:
        fields = [FieldType(f"F{i:04}", 6) for i in range(400)]
        extra = [_definition(100, WireType(struct_t=StructType(CommonType("big", 100), fields)))]
    frame = _with_extra_definitions(msg, extra)
    cache = GobDecodeCache()
    assert decode_message(frame, fast=False) == msg
    assert decode_message(frame, cache=cache) == msg
    assert _fast(frame, cache) is None
    assert len(cache.shapes) == 0
    # A few unused definitions are learnt like any other numbering.
    small = _with_extra_definitions(msg, extra[:1] if kind == "many" else [])
    assert decode_message(small, cache=cache) == msg
    assert _fast(small, cache) == msg


# --- damaged frames ------------------------------------------------------------------------


def _seed_frames() -> list[bytes]:
    assert {type(d) for d in SAMPLES} == set(DATA_BY_TYPE)
    frames = [encode_message(Message(NODE, NODE, MessageType.PING))]
    history = TypeTable()
    for data in SAMPLES:
        msg = Message(NODE, NODE, 2, data, "corr", "origin")
        frames.append(encode_message(msg))
        frames.append(encode_message(msg, types=history))  # a long-running numbering
    path = GOB_VECTORS / "gob-vectors.json"
    if path.is_file():
        frames += [
            bytes.fromhex(v["frame_hex"])
            for v in json.loads(path.read_text())
            if v["frame_len"] < 4000
        ]
    return frames


SEEDS = _seed_frames()
SHARED = GobDecodeCache(max_entries=64)


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    frame = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        at = draw(st.integers(8, max(8, len(frame) - 1)))
        if kind == "flip" and at < len(frame):
            frame[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and at < len(frame):
            frame[at] = draw(st.sampled_from([0, 1, 2, 0x7F, 0x80, 0xF8, 0xFE, 0xFF]))
        elif kind == "insert":
            frame[at:at] = draw(st.binary(min_size=1, max_size=9))
        elif kind == "delete":
            del frame[at : at + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del frame[at:]
    body = bytes(frame[8:])
    return frame_header(len(body)) + body  # the damage reaches the gob decoder


@pytest.mark.timeout(120)
@settings(max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged())
def test_damaged_frames_same_verdict(frame: bytes) -> None:
    """The generated decoder never raises, never accepts what the general one refuses, and
    agrees with it on everything it accepts; the public decoder's verdict is the general one's,
    with and without a (learning) cache."""
    general = _general(frame)
    for cache in (None, SHARED):
        fast = _fast(frame, cache)
        if fast is not None:
            assert fast == general
        assert _verdict(frame, cache) == general


@pytest.mark.timeout(60)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages_with(st.one_of(st.none(), DATA)), st.data())
def test_damaged_arbitrary_messages(msg: Message, data: st.DataObject) -> None:
    frame = bytearray(encode_message(msg))
    at = data.draw(st.integers(8, len(frame) - 1))
    frame[at] = data.draw(st.integers(0, 255))
    for cut in (len(frame), data.draw(st.integers(9, len(frame)))):
        body = bytes(frame[8:cut])
        whole = frame_header(len(body)) + body
        general = _general(whole)
        fast = _fast(whole, SHARED)
        assert fast is None or fast == general
        assert _verdict(whole, SHARED) == general


@st.composite
def reshuffled(draw: st.DrawFn) -> bytes:
    """A frame whose gob messages are moved, repeated, dropped or borrowed from another frame:
    definitions out of order, twice, missing or foreign, which the learning must see through."""
    messages = _gob_messages(draw(st.sampled_from(SEEDS))[8:])
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(messages) - 1))
        j = draw(st.integers(0, len(messages)))
        kind = draw(st.sampled_from(["move", "repeat", "drop", "borrow"]))
        if kind == "move":
            messages.insert(j, messages.pop(i))
        elif kind == "repeat":
            messages.insert(j, messages[i])
        elif kind == "drop" and len(messages) > 1:
            del messages[i]
        elif kind == "borrow":
            other = _gob_messages(draw(st.sampled_from(SEEDS))[8:])
            messages.insert(j, other[draw(st.integers(0, len(other) - 1))])
    body = b"".join(uint_bytes(len(m)) + m for m in messages)
    return frame_header(len(body)) + body


@pytest.mark.timeout(120)
@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reshuffled())
def test_reshuffled_definitions_same_verdict(frame: bytes) -> None:
    general = _general(frame)
    for cache in (None, SHARED):
        fast = _fast(frame, cache)
        if fast is not None:
            assert fast == general
        assert _verdict(frame, cache) == general


def test_huge_counts_are_refused_before_allocating() -> None:
    """A count of 2**40 elements or bytes in a fresh frame: the generated decoder checks it
    against the bytes left, declines at once, and so does the general one after it."""
    node = Node(b"n" * 40, "1.2.3.4", 4445, "v", b"h" * 32)
    batch = encode_message(Message(node, node, 6, BatchStoreDataRequest([b"\xaa" * 3], 1)))
    body = batch[8:]
    huge = b"\xfb\x01\x00\x00\x00\x00"
    for old, new in ((b"\x01\x01\x03", b"\x01" + huge), (b"\x01\x03\xaa", b"\x01" + huge)):
        assert body.count(old) == 1
        patched = body.replace(old, new)
        tracemalloc.start()
        started = time.perf_counter()
        assert FAST_CODEC.decode(patched, 0, None, 100, None) is None
        with pytest.raises(ProtocolError):
            decode_body(patched)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert time.perf_counter() - started < 0.5
        assert peak < 1 << 20


def test_shallow_depth_limits_use_the_general_decoder() -> None:
    msg = Message(data=BatchGetValuesResponse({"k": KeyValWithClosest(b"v", [Node(b"n")])}))
    frame = encode_message(msg)
    assert FAST_CODEC.depth == 7  # the README's 7 levels of a Lumera message
    assert FAST_CODEC.decode(frame, 8, None, 6, None) is None
    with pytest.raises(ProtocolError, match="nesting too deep"):
        decode_message(frame, max_depth=6)
    assert decode_message(frame, max_depth=7) == msg


def test_body_slices_and_buffers() -> None:
    msg = Message(Node(b"a"), None, 2, FindNodeResponse(ResponseStatus(), [Node(b"n")]))
    frame = encode_message(msg)
    padded = b"junk" + frame[8:] + b"more"
    assert decode_body(padded, start=4, stop=len(padded) - 4) == msg
    assert FAST_CODEC.decode(padded, 4, len(padded) - 4, 100, None) == msg
    assert decode_body(bytearray(frame[8:])) == msg
    assert decode_body(memoryview(frame)[8:]) == msg
    # A stop inside the frame: both decoders see a truncated stream.
    for cut in range(len(frame) - 8):
        assert FAST_CODEC.decode(frame, 8, 8 + cut, 100, None) is None


# --- the generator itself -----------------------------------------------------------------


def test_fast_codec_needs_one_interface_field() -> None:
    plain = GoStruct("P", "x", [GoField("A", GoString(), "a")], dict)
    with pytest.raises(Unsupported):
        FastCodec(plain, REGISTRY)


@dataclass
class Root:
    x: object = None


@dataclass
class Good:
    s: str = ""


class Opaque:
    """Not a dataclass: the generator cannot construct it."""

    def __init__(self, s: str = "") -> None:
        self.s = s


def test_unsupported_registered_types_are_left_to_the_general_codec() -> None:
    good = GoStruct("Good", "t", [GoField("S", GoString(), "s")], Good)
    opaque = GoStruct("Opaque", "t", [GoField("S", GoString(), "s")], Opaque)
    root = GoStruct("Root", "t", [GoField("X", GoInterface(), "x")], Root)
    registry = InterfaceRegistry([("*t.Good", GoPtr(good)), ("*t.Opaque", GoPtr(opaque))])
    codec = FastCodec(root, registry)
    assert codec.encode(Root(Good("v"))) is not None
    assert codec.encode(Root(Opaque("v"))) is None
    encoded = codec.encode(Root(Good("v")))
    assert encoded is not None
    assert codec.decode(b"".join(encoded[0]), 0, None, 100, None) == Root(Good("v"))


def test_nodes_strategy_is_valid() -> None:
    """The strategies only draw encodable values (the fast encoder's coverage relies on it)."""

    @settings(max_examples=30, deadline=None)
    @given(NODES)
    def check(node: Node) -> None:
        assert FAST_CODEC.encode(Message(sender=node)) is not None

    check()
