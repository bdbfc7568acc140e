"""The bound on what a message takes once decoded (``wire/gob/costs.py``).

Crafted frames of every shape that turns few wire bytes into many Python objects are refused
by every decoding path, at once and without building anything; the same shapes just under the
allowance are accepted, and what they take (measured with tracemalloc) stays within the
allowance plus the frame's size. The generated decoder charges exactly what the general one
charges (less the definitions it recognises, for which it sets aside its margin), so the two
never disagree on a verdict; legitimate traffic of the sizes Go sends passes untouched.
"""

from __future__ import annotations

import sys
import tracemalloc
from collections.abc import Callable
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
    BatchGetValuesRequest,
    BatchGetValuesResponse,
    BatchStoreDataRequest,
    FindNodeResponse,
    FindValueResponse,
    GobDecodeCache,
    KeyValWithClosest,
    Message,
    MessageData,
    MessageType,
    Node,
    ReplicateDataRequest,
    ResponseStatus,
    TypeTable,
    decode_body,
    encode_message,
)
from lumera_p2p.wire.gob import (
    DEFAULT_DECODE_LIMIT,
    DecodeLimit,
    GobDecoder,
    GobEncoder,
    GoField,
    GoInt,
    GoPtr,
    GoSlice,
    GoString,
    GoStruct,
    gob_decode,
    gob_encode,
)
from lumera_p2p.wire.gob.costs import value_cost
from lumera_p2p.wire.messages import FAST_CODEC, GO_MESSAGE
from tests.support import python_calls

from .strategies import DATA_BY_TYPE, messages_with

MIB = 1024 * 1024
MESSAGE = GoPtr(GO_MESSAGE)
VIEWS = 64 * 1024  # what the server passes as views_from
NODE = Node(
    b"lumera1jcus5g9v6r080rg7dljvvpr4cm8k7psqwg7tj8", "127.0.0.1", 4445, "v2.4.0", b"h" * 32
)
#: What a measured decode may allocate beyond its allowance and the frame's size: compiled
#: engines, type definitions, the interpreter's own bookkeeping.
SLACK = 512 * 1024


def _keys(n: int) -> list[str]:
    return [f"{i:07x}" for i in range(n)]  # unique, of one width: the frame grows linearly


#: Shapes that amplify: few wire bytes a Python object (the issue's and a few more), as
#: functions of the number of elements.
SHAPES: dict[str, Callable[[int], MessageData]] = {
    "one-byte []byte targets": lambda n: BatchFindNodeRequest([b"x"] * n),
    "two-byte []byte values": lambda n: BatchStoreDataRequest([b"xy"] * n, 1),
    "empty *Node list": lambda n: FindNodeResponse(ResponseStatus(), [Node()] * n),
    "two-char string keys": lambda n: ReplicateDataRequest(["ab"] * n),
    "non-ASCII strings": lambda n: ReplicateDataRequest(["\u00e9"] * n),
    "map of empty structs": lambda n: BatchGetValuesRequest(
        {k: KeyValWithClosest() for k in _keys(n)}
    ),
    "map of node lists": lambda n: BatchFindNodeResponse(
        ResponseStatus(), {k: [Node()] for k in _keys(n)}
    ),
    "map of structs with node lists": lambda n: BatchGetValuesResponse(
        {k: KeyValWithClosest(b"", [Node()] * 50) for k in _keys(max(1, n // 50))}
    ),
}


#: Shapes refused only after some of their inner containers were decoded.
NESTED = {"map of structs with node lists"}


def _body(data: MessageData) -> bytes:
    return encode_message(Message(NODE, NODE, MessageType.FIND_NODE, data))[8:]


def _charged(body: bytes, cache: GobDecodeCache | None = None) -> int:
    """What the general decoder charges for ``body`` (with an allowance it cannot spend)."""
    d = GobDecoder(body, REGISTRY, cache=cache, limit=DecodeLimit(floor=1 << 62, ratio=0))
    d.decode(MESSAGE)
    return d.allowance - d.left


def _paths(body: bytes, limit: DecodeLimit = DEFAULT_DECODE_LIMIT) -> dict[str, Callable[[], Any]]:
    """Every way a frame is decoded: the client's (generated, then general), the general
    decoder alone, and the server's for large frames (in place, with views)."""
    return {
        "default": lambda: decode_body(body, limit=limit),
        "general": lambda: decode_body(body, fast=False, limit=limit),
        "views": lambda: decode_body(memoryview(body), views_from=VIEWS, limit=limit),
    }


def _peak(run: Callable[[], Any]) -> tuple[Any, int]:
    """``run()``'s result (or the ProtocolError it raised) and the most it allocated at once."""
    tracemalloc.start()
    try:
        try:
            result: Any = run()
        except ProtocolError as exc:
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --- the shapes -------------------------------------------------------------------


@pytest.mark.parametrize("shape", list(SHAPES))
def test_amplifying_frames_are_refused_at_once(shape: str) -> None:
    """Frames of 0.1-1 MB that would take 10-80 times their size: every path refuses them
    with the same error, in bounded memory; the flat shapes before building anything."""
    body = _body(SHAPES[shape](80_000))
    assert 80_000 <= len(body) < 8 * MIB
    allowance = DEFAULT_DECODE_LIMIT.allowance(len(body))
    assert FAST_CODEC.decode(body, 0, None, 100, None) is None
    for name, run in _paths(body).items():
        outcome, peak = _peak(run)
        assert isinstance(outcome, ProtocolError), (name, type(outcome))
        assert str(outcome) == f"gob: too many elements in message (over {allowance} bytes decoded)"
        assert peak <= allowance + len(body) + SLACK, (name, peak)
        if shape not in NESTED:
            # Refused on the container's count: nothing built, a fixed amount of work.
            assert peak < SLACK, (name, peak)
            assert python_calls(run) < 2000, name


@pytest.mark.parametrize(
    "shape",
    # Each shape decodes about the 2 MiB floor three times under tracemalloc: the node list
    # (the shape) and the nested map run by default, the rest under -m slow.
    [
        s
        if s in ("empty *Node list", "map of structs with node lists")
        else pytest.param(s, marks=pytest.mark.slow)
        for s in SHAPES
    ],
)
def test_the_most_a_shape_can_take_is_its_allowance(shape: str) -> None:
    """Just under the allowance a crafted frame is accepted, and what it decodes to stays
    within the allowance plus the frame's size; just over, it is refused."""
    make = SHAPES[shape]
    # The charge and the frame's size are affine in the element count: solve for the count
    # at which the charge meets the allowance.
    n1, n2 = 1000, 3000
    b1, b2 = _body(make(n1)), _body(make(n2))
    c1, c2 = _charged(b1), _charged(b2)
    per_elem = (c2 - c1) / (n2 - n1)
    per_byte = (len(b2) - len(b1)) / (n2 - n1)
    limit = DEFAULT_DECODE_LIMIT
    base = c1 - per_elem * n1 - limit.ratio * (len(b1) - per_byte * n1)
    n_max = int((limit.floor - base) / (per_elem - limit.ratio * per_byte))
    under, over = _body(make(int(n_max * 0.97))), _body(make(int(n_max * 1.03) + 50))
    msg = decode_body(under, fast=False)
    for name, run in _paths(under).items():
        outcome, peak = _peak(run)
        assert outcome == msg, name
        assert peak <= limit.allowance(len(under)) + len(under) + SLACK, (name, peak)
    for run in _paths(over).values():
        with pytest.raises(ProtocolError, match="too many elements"):
            run()


def test_a_large_frame_buys_room_for_four_times_its_size() -> None:
    """Bulk bytes in a frame raise its allowance; the objects it pays for are then bounded by
    4 times the frame (plus the floor), and what is decoded stays within that plus the bulk."""
    pad = 2 * MIB
    n = (DEFAULT_DECODE_LIMIT.floor + 4 * pad) // 301  # about what an empty node is charged
    fits = FindValueResponse(ResponseStatus(), [Node()] * int(n * 0.9), bytes(pad))
    too_many = FindValueResponse(ResponseStatus(), [Node()] * int(n * 1.1), bytes(pad))
    body = _body(fits)
    for name, run in _paths(body).items():
        outcome, peak = _peak(run)
        assert isinstance(outcome, Message) and outcome.data == fits, name
        assert peak <= DEFAULT_DECODE_LIMIT.allowance(len(body)) + len(body) + SLACK, name
    for run in _paths(_body(too_many)).values():
        with pytest.raises(ProtocolError, match="too many elements"):
            run()


# --- legitimate traffic -------------------------------------------------------------------


def _hex(i: int) -> str:
    return f"{i:064x}"


LEGIT: dict[str, MessageData] = {
    "FindNode answer, 20 nodes": FindNodeResponse(ResponseStatus(), [NODE] * 20),
    "Replicate, 5000 keys": ReplicateDataRequest([_hex(i) for i in range(5000)]),
    "Replicate, 20000 keys (our server's cap)": ReplicateDataRequest(
        [_hex(i) for i in range(20_000)]
    ),
    "BatchGetValues, 20000 keys (our server's cap)": BatchGetValuesRequest(
        {_hex(i): KeyValWithClosest() for i in range(20_000)}
    ),
    "BatchGetValues answer, 1500 values": BatchGetValuesResponse(
        {_hex(i): KeyValWithClosest(b"v" * 2000, []) for i in range(1500)}, ResponseStatus()
    ),
    "BatchStoreData, 5000 small values": BatchStoreDataRequest(
        [b"%d" % i * 20 for i in range(5000)], 1
    ),
    "BatchFindNode answer, 500 targets of 20 nodes": BatchFindNodeResponse(
        ResponseStatus(), {f"{i:044d}": [NODE] * 20 for i in range(500)}
    ),
}


@pytest.mark.parametrize("name", list(LEGIT))
def test_legitimate_traffic_is_untouched(name: str) -> None:
    """What Go sends (p2p-behaviour.md) decodes on every path, and the generated decoder
    still takes it (it is not left to the slower general one for its size)."""
    body = _body(LEGIT[name])
    msg = decode_body(body, fast=False)
    assert msg.data == LEGIT[name]
    assert FAST_CODEC.decode(body, 0, None, 100, None) == msg
    for path, run in _paths(body).items():
        assert run() == msg, path
    # ... with room to spare.
    assert _charged(body) <= 0.8 * DEFAULT_DECODE_LIMIT.allowance(len(body)), name


# --- the generated decoder charges as the general one -------------------------------------


class _CountingDecoder(GobDecoder):
    """A general decoder that also tells what its type definitions were charged."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.definitions = 0

    def _recv_type(self, tid: int) -> None:
        before = self.left
        super()._recv_type(tid)
        self.definitions += before - self.left


def _fast_threshold(body: bytes, cache: GobDecodeCache | None) -> int | None:
    """The least allowance at which the generated decoder takes ``body`` (None: never)."""
    if FAST_CODEC.decode(body, 0, None, 100, cache, DecodeLimit(1 << 40, 0)) is None:
        return None
    lo, hi = 0, 1 << 40  # declined at lo, taken at hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if FAST_CODEC.decode(body, 0, None, 100, cache, DecodeLimit(mid, 0)) is None:
            lo = mid
        else:
            hi = mid
    return hi


def _check_charges(body: bytes, cache: GobDecodeCache | None) -> None:
    d = _CountingDecoder(body, REGISTRY, cache=cache, limit=DecodeLimit(1 << 62, 0))
    msg = d.decode(MESSAGE)
    charged = d.allowance - d.left
    # The general decoder's verdict flips exactly at its charge, with or without a cache.
    for c in (cache, None):
        assert decode_body(body, fast=False, cache=c, limit=DecodeLimit(charged, 0)) == msg
        with pytest.raises(ProtocolError, match="too many elements"):
            decode_body(body, fast=False, cache=c, limit=DecodeLimit(charged - 1, 0))
    threshold = _fast_threshold(body, cache)
    if threshold is not None:
        # Everything but the definitions, plus the margin set aside for them.
        assert threshold == charged - d.definitions + FAST_CODEC.margin
        assert d.definitions <= FAST_CODEC.margin
        # At any allowance the public decoder's verdict is the general one's.
        for allowance in (charged - 1, charged, threshold - 1, threshold):
            limit = DecodeLimit(allowance, 0)
            fast = FAST_CODEC.decode(body, 0, None, 100, cache, limit)
            assert fast is None or fast == msg
            assert _outcome(body, cache, limit) == _outcome(body, None, limit, fast=False)


def _outcome(
    body: bytes, cache: GobDecodeCache | None, limit: DecodeLimit, fast: bool = True
) -> Message | str:
    try:
        return decode_body(body, cache=cache, limit=limit, fast=fast)
    except ProtocolError as exc:
        return f"ProtocolError: {exc}"


@pytest.mark.parametrize("cls", list(DATA_BY_TYPE), ids=lambda c: c.__name__)
def test_generated_and_general_decoders_charge_alike(cls: type) -> None:
    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(messages_with(DATA_BY_TYPE[cls]))
    def check(msg: Message) -> None:
        _check_charges(encode_message(msg)[8:], None)

    check()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.one_of(*DATA_BY_TYPE.values()), min_size=1, max_size=4),
    st.one_of(*DATA_BY_TYPE.values()),
)
def test_learnt_numberings_charge_alike(history: list[MessageData], data: MessageData) -> None:
    """A long-running peer's numbering, learnt in the cache: the same charges."""
    table = TypeTable()
    for old in history:
        encode_message(Message(data=old), types=table)
    body = encode_message(Message(NODE, NODE, 3, data), types=table)[8:]
    cache = GobDecodeCache()
    decode_body(body, cache=cache)  # learns the numbering
    _check_charges(body, cache)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    messages_with(st.one_of(st.none(), *DATA_BY_TYPE.values())),
    st.integers(0, 1 << 16),
    st.integers(0, 4),
    st.data(),
)
def test_small_allowances_give_one_verdict(
    msg: Message, floor: int, ratio: int, data: st.DataObject
) -> None:
    """Fuzz at allowances around what messages cost, with damage: only ProtocolError, and
    the public decoder agrees with the general one, from bytes and from views."""
    frame = bytearray(encode_message(msg))
    if data.draw(st.booleans()):
        at = data.draw(st.integers(8, len(frame) - 1))
        frame[at] = data.draw(st.integers(0, 255))
    body = bytes(frame[8:])
    limit = DecodeLimit(floor, ratio)
    general = _outcome(body, None, limit, fast=False)
    assert _outcome(body, None, limit) == general
    fast = FAST_CODEC.decode(body, 0, None, 100, None, limit)
    assert fast is None or fast == general
    try:
        viewed: Message | str = decode_body(memoryview(body), views_from=VIEWS, limit=limit)
    except ProtocolError as exc:
        viewed = f"ProtocolError: {exc}"
    assert viewed == general


# --- the cost model -----------------------------------------------------------------------


def test_the_model_covers_what_cpython_allocates() -> None:
    """The charge of a decoded Lumera value is at least what its objects take (without the
    contents of strings and byte strings), measured on the objects themselves."""
    msg = Message(
        NODE,
        NODE,
        8,
        BatchGetValuesResponse(
            {_hex(i): KeyValWithClosest(b"v" * 100, [NODE] * 3) for i in range(300)},
            ResponseStatus(1, "x"),
        ),
    )
    body = encode_message(msg)[8:]
    decoded = decode_body(body)
    seen: set[int] = set()

    def size(obj: object) -> int:
        if id(obj) in seen or obj is None or isinstance(obj, bool | type):
            return 0
        seen.add(id(obj))
        if isinstance(obj, str | bytes):
            return sys.getsizeof(obj) - len(obj)  # contents are not charged
        total = sys.getsizeof(obj)
        if isinstance(obj, dict):
            return total + sum(size(k) + size(v) for k, v in obj.items())
        if isinstance(obj, list):
            return total + sum(size(v) for v in obj)
        if hasattr(obj, "__slots__"):
            return total + sum(size(getattr(obj, a)) for a in obj.__slots__)
        return total

    actual = size(decoded)
    assert actual <= _charged(body) <= 2 * actual + 64 * 1024


def test_recursive_structs_are_charged_at_every_level() -> None:
    """A struct that contains itself nests as deep as the peer likes (up to the depth cap):
    each level is charged, so a list of deep chains cannot slip past the list's charge."""

    @dataclass
    class Link:  # a plain class with a __dict__: charged as one
        next: Any = None
        n: int = 0

    link = GoStruct("Link", "t", None, Link)
    link.define([GoField("Next", GoPtr(link), "next"), GoField("N", GoInt(), "n")])
    chains = GoSlice(GoPtr(link))

    def chain(depth: int) -> Link:
        node = Link(None, 1)
        for _ in range(depth):
            node = Link(node, 1)
        return node

    shallow, deep = gob_encode([chain(0)] * 2000, chains), gob_encode([chain(60)] * 2000, chains)
    assert gob_decode(shallow, chains) == [chain(0)] * 2000
    cost = value_cost(link)
    limit = DecodeLimit(floor=2000 * (9 + 2 * cost) + 4096, ratio=0)
    assert gob_decode(shallow, chains, limit=limit) == [chain(0)] * 2000
    with pytest.raises(ProtocolError, match="too many elements"):
        gob_decode(deep, chains, limit=limit)
    # 61 objects for every 3 or so wire bytes: over the default allowance too.
    with pytest.raises(ProtocolError, match="too many elements"):
        gob_decode(deep, chains)
    assert gob_decode(gob_encode([chain(60)] * 20, chains), chains) == [chain(60)] * 20


def test_a_stream_of_values_gets_an_allowance_for_each() -> None:
    """Each decode is charged on its own, against what is left of the stream."""
    t = GoSlice(GoString())
    encoder = GobEncoder()
    stream = b"".join(encoder.encode(["ab"] * 1000, t) for _ in range(3))
    one = gob_encode(["ab"] * 1000, t)
    decoder = GobDecoder(stream, limit=DecodeLimit(floor=0, ratio=40))
    for _ in range(3):
        assert decoder.decode(t) == ["ab"] * 1000
        assert decoder.left >= 0
    with pytest.raises(ProtocolError, match="too many elements"):
        GobDecoder(one, limit=DecodeLimit(floor=0, ratio=4)).decode(t)
