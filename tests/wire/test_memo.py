"""Memoised nodes in the generated codec: the memo changes no byte, no value and no verdict.

The codec remembers the encoding of the nodes it wrote (by their field values), and a
:class:`GobDecodeCache` the nodes a decoder read (by their bytes). These tests compare a codec
that memoises with one that does not and with the general codec, on arbitrary messages and on
damaged frames read with a memo already holding the undamaged nodes.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lumera_p2p.errors import ProtocolError
from lumera_p2p.wire import (
    REGISTRY,
    BatchFindNodeResponse,
    FindNodeResponse,
    GobDecodeCache,
    Message,
    MessageType,
    Node,
    ResponseStatus,
    decode_body,
    decode_message,
    encode_message,
)
from lumera_p2p.wire.gob import DecodeLimit
from lumera_p2p.wire.gob.codegen import MEMO_MAX_BYTES, Unsupported, uint_bytes
from lumera_p2p.wire.gob.fast import FastCodec
from lumera_p2p.wire.gob.writers import Buffer
from lumera_p2p.wire.messages import FAST_CODEC, GO_MESSAGE, GO_NODE, GO_RESPONSE_STATUS

from .strategies import DATA, NODES, messages_with

PLAIN = FastCodec(GO_MESSAGE, REGISTRY)  # no memo: the reference for the memoised ones
SMALL = FastCodec(GO_MESSAGE, REGISTRY, memo=(GO_NODE,), memo_entries=3)  # forgets often
MESSAGES = messages_with(st.one_of(st.none(), DATA))
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _node(i: int, version: str = "v2.4.0") -> Node:
    return Node(b"lumera1" + bytes([97 + i % 26]) * 38, "127.0.0.1", 4000 + i, version, b"h" * 32)


def _answer(nodes: list[Node]) -> Message:
    return Message(
        _node(90), _node(91), MessageType.FIND_NODE, FindNodeResponse(ResponseStatus(), nodes)
    )


def _encoded(codec: FastCodec, msg: Message) -> bytes | None:
    out = codec.encode(msg)
    return None if out is None else b"".join(out[0])


def _body(msg: Message) -> bytes:
    return encode_message(msg, fast=False)[8:]


def _failure(fn: Callable[[], object]) -> str:
    try:
        fn()
    except Exception as exc:  # the general encoder's own verdict, whatever it is
        return repr(exc)
    return "no failure"


def _general(body: bytes) -> Message | str:
    try:
        return decode_body(body, fast=False)
    except ProtocolError as exc:
        return f"ProtocolError: {exc}"


def _public(body: bytes, cache: GobDecodeCache) -> Message | str:
    try:
        return decode_body(body, cache=cache)
    except ProtocolError as exc:
        return f"ProtocolError: {exc}"


# --- encoding -------------------------------------------------------------------------------


@SETTINGS
@given(st.lists(MESSAGES, min_size=1, max_size=4))
def test_memoised_encoding_is_the_plain_encoding(msgs: list[Message]) -> None:
    """First sight and memo hits (twice each, the small memo forgetting) give the bytes of the
    codec without memo and of the general encoder."""
    for msg in msgs * 2:
        plain = _encoded(PLAIN, msg)
        assert _encoded(SMALL, msg) == plain
        assert _encoded(FAST_CODEC, msg) == plain
        if plain is not None:
            assert plain == _body(msg)


def test_a_hit_needs_the_exact_field_types() -> None:
    """``4001.0 == 4001``, but the generic code cannot write a float: a remembered node does
    not make an equal node of other types encodable, nor change the bytes of one it can."""
    codec = FastCodec(GO_MESSAGE, REGISTRY, memo=(GO_NODE,))
    good = _node(1)
    assert _encoded(codec, Message(good, good)) == _body(Message(good, good))
    port = float(good.port)
    floats = Message(good, Node(good.id, good.ip, port, good.version, good.hashed_id))  # type: ignore[arg-type]
    assert codec.encode(floats) is None and PLAIN.encode(floats) is None
    assert _failure(lambda: encode_message(floats)) == _failure(
        lambda: encode_message(floats, fast=False)
    )
    mutable = Message(good, Node(bytearray(good.id), good.ip, good.port, "", good.hashed_id))
    assert _encoded(codec, mutable) == _encoded(PLAIN, mutable)


def test_encode_memo_is_bounded() -> None:
    codec = FastCodec(GO_MESSAGE, REGISTRY, memo=(GO_NODE,), memo_entries=4)
    for i in range(50):
        msg = _answer([_node(i), _node(i + 1)])
        assert _encoded(codec, msg) == _body(msg)
        assert codec.memoised() <= 4
    big = Node(b"x" * (MEMO_MAX_BYTES + 1))
    codec = FastCodec(GO_MESSAGE, REGISTRY, memo=(GO_NODE,))
    assert _encoded(codec, Message(big)) == _body(Message(big))
    assert codec.memoised() == 0  # too large to keep


def test_only_plain_scalar_structs_are_memoised() -> None:
    with pytest.raises(Unsupported):
        FastCodec(GO_MESSAGE, REGISTRY, memo=(GO_MESSAGE,))  # has a pointer and an interface
    FastCodec(GO_MESSAGE, REGISTRY, memo=(GO_RESPONSE_STATUS,))


# --- decoding -------------------------------------------------------------------------------


@SETTINGS
@given(st.lists(MESSAGES, min_size=1, max_size=4))
def test_memoised_decoding_gives_the_general_values(msgs: list[Message]) -> None:
    cache = GobDecodeCache(max_entries=3)
    for msg in msgs * 2:
        body = _body(msg)
        general = decode_body(body, fast=False)
        assert decode_body(body, cache=cache) == general
        assert FAST_CODEC.decode(body, 0, None, 100, cache) in (None, general)


def test_decoded_nodes_are_fresh_objects() -> None:
    cache = GobDecodeCache()
    body = _body(_answer([_node(1), _node(1)]))
    first = decode_body(body, cache=cache)
    assert isinstance(first.data, FindNodeResponse)
    first.data.closest[0].ip = "changed"
    second = decode_body(body, cache=cache)
    assert isinstance(second.data, FindNodeResponse)
    assert second.data.closest == [_node(1), _node(1)]
    assert second.data.closest[0] is not second.data.closest[1]
    assert len(cache.elements) > 0  # they were hits


@st.composite
def damaged_answers(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """An answer and a copy damaged inside its nodes' bytes."""
    nodes = draw(st.lists(st.one_of(NODES, st.integers(0, 5).map(_node)), min_size=1, max_size=5))
    body = _body(_answer(nodes))
    damaged = bytearray(body)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(len(body) // 3, len(body) - 1))  # the nodes sit in the tail
        kind = draw(st.sampled_from(["set", "flip", "delete", "insert"]))
        if at >= len(damaged):
            continue
        if kind == "set":
            damaged[at] = draw(st.sampled_from([0, 1, 2, 3, 0x7F, 0x80, 0xFD, 0xFE, 0xFF]))
        elif kind == "flip":
            damaged[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "delete":
            del damaged[at]
        else:
            damaged[at:at] = draw(st.binary(min_size=1, max_size=3))
    return body, bytes(damaged)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged_answers())
def test_a_memo_never_lets_a_damaged_node_through(pair: tuple[bytes, bytes]) -> None:
    """With the undamaged nodes remembered, a damaged frame gets the general verdict."""
    body, damaged = pair
    cache = GobDecodeCache()
    assert decode_body(body, cache=cache) == decode_body(body, fast=False)
    general = _general(damaged)
    fast = FAST_CODEC.decode(damaged, 0, None, 100, cache)
    assert fast is None or fast == general
    assert _public(damaged, cache) == general


def _cut_terminators(msg: Message) -> bytes:
    """``msg``'s body (nil Data, a sender and nothing else) with the head message ending right
    after the sender's last field: Go ends both structs at the end of the message."""
    body = _body(msg)
    outer = len(FAST_CODEC._outer)  # the root's definitions, then the head message
    size = body[outer]
    assert size < 0x80 and outer + 1 + size == len(body) and body.endswith(b"\x00\x00")
    head = body[outer + 1 : -2]
    return body[:outer] + uint_bytes(len(head)) + head


def test_a_node_cut_by_the_message_end_is_not_remembered() -> None:
    """Its bytes lack the terminating 0, so the same bytes elsewhere may continue the node."""
    short = Message(Node(b"lumera1abc"))
    body = _cut_terminators(short)
    cache = GobDecodeCache()
    assert decode_body(body, cache=cache) == decode_body(body, fast=False) == short
    assert len(cache.elements) == 0
    longer = Message(Node(b"lumera1abc", "10.0.0.1", 7))
    assert decode_body(_body(longer), cache=cache) == longer


def test_memoised_nodes_are_charged_as_decoded_ones() -> None:
    """A non-ASCII string is charged its size: a hit charges it again, so the least allowance
    the generated decoder accepts is the same cold and warm."""
    body = _body(_answer([_node(i, "vé-" + "ü" * 20) for i in range(6)] * 3))

    def threshold(cache: GobDecodeCache | None) -> int:
        lo, hi = 0, 1 << 30  # declined at lo, taken at hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            taken = FAST_CODEC.decode(body, 0, None, 100, cache, DecodeLimit(mid, 0))
            lo, hi = (mid, hi) if taken is None else (lo, mid)
        return hi

    cold = threshold(None)
    cache = GobDecodeCache()
    decode_body(body, cache=cache)
    assert len(cache.elements) > 0
    assert threshold(cache) == cold
    for allowance in (cold - 1, cold):
        limit = DecodeLimit(allowance, 0)
        assert FAST_CODEC.decode(body, 0, None, 100, cache, limit) == (
            None if allowance < cold else decode_body(body, fast=False)
        )


def test_decode_memo_is_bounded() -> None:
    cache = GobDecodeCache(max_entries=4)
    for i in range(50):
        body = _body(_answer([_node(i), _node(i + 1), _node(i + 2)]))
        assert decode_body(body, cache=cache) == decode_body(body, fast=False)
        assert len(cache.elements) <= 4
    big = Node(b"x" * (MEMO_MAX_BYTES + 1))
    cache = GobDecodeCache()
    body = _body(_answer([big, big]))
    assert decode_body(body, cache=cache) == decode_body(body, fast=False)
    assert len(cache.elements) == 2  # the sender and the receiver only


def test_batch_answers_through_the_memo() -> None:
    nodes = [_node(i) for i in range(20)]
    msg = Message(
        _node(90),
        _node(91),
        MessageType.BATCH_FIND_NODE,
        BatchFindNodeResponse(ResponseStatus(), {"a": nodes, "b": nodes[::-1], "c": []}),
    )
    frame = encode_message(msg)
    assert frame == encode_message(msg, fast=False)
    cache = GobDecodeCache()
    for _ in range(3):
        assert decode_message(frame, cache=cache) == msg


@given(st.one_of(st.integers(0, 0x20000), st.integers(0, (1 << 64) - 1)))
def test_uint_short_cuts_are_the_general_writer(u: int) -> None:
    general = Buffer()
    general.uint(u)
    assert uint_bytes(u) == bytes(general.cur)


def test_values_equal_to_bytes_encode_as_bytes() -> None:
    """A hashable memoryview equal to a remembered ID is written as the ID is."""
    codec = FastCodec(GO_MESSAGE, REGISTRY, memo=(GO_NODE,))
    good = _node(2)
    assert _encoded(codec, Message(good)) == _body(Message(good))
    for view in (memoryview(good.id), memoryview(good.id).cast("b")):
        viewed = Message(Node(view, good.ip, good.port, good.version, good.hashed_id))  # type: ignore[arg-type]
        assert _encoded(codec, viewed) == _encoded(PLAIN, viewed) == _body(Message(good))


class _LoudStr(str):
    """A string whose encode differs from its value's (the generic code calls encode)."""

    __slots__ = ()

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return super().encode(encoding, errors).upper()


def test_a_string_subclass_is_not_taken_for_the_remembered_string() -> None:
    codec = FastCodec(GO_MESSAGE, REGISTRY, memo=(GO_NODE,))
    good = _node(3, "v2.4.0-rc")
    assert _encoded(codec, Message(good)) == _body(Message(good))
    loud = Message(Node(good.id, good.ip, good.port, _LoudStr(good.version), good.hashed_id))
    assert _encoded(codec, loud) == _encoded(PLAIN, loud) != _body(Message(good))
