"""Hostile input: random and damaged frames raise ProtocolError only, fast, in bounded memory."""

from __future__ import annotations

import contextlib
import json
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lumera_p2p.errors import ProtocolError
from lumera_p2p.wire import (
    BatchGetValuesRequest,
    BatchStoreDataRequest,
    FindNodeResponse,
    GobDecodeCache,
    KeyValWithClosest,
    Message,
    MessageType,
    Node,
    ResponseStatus,
    decode_body,
    decode_message,
    encode_message,
    frame_header,
)
from tests.support import python_calls

from .conftest import GOB_VECTORS
from .strategies import MESSAGES

NODE = Node(
    b"lumera1jcus5g9v6r080rg7dljvvpr4cm8k7psqwg7tj8", "127.0.0.1", 4445, "v2.4.0", b"h" * 32
)
SEEDS = [
    encode_message(Message(NODE, NODE, MessageType.PING)),
    encode_message(Message(NODE, NODE, 2, FindNodeResponse(ResponseStatus(1, "x"), [NODE, NODE]))),
    encode_message(Message(NODE, NODE, 6, BatchStoreDataRequest([b"a" * 200, b""], 1))),
    encode_message(
        Message(NODE, NODE, 8, BatchGetValuesRequest({"k": KeyValWithClosest(b"v", [NODE])}))
    ),
]
CACHE = GobDecodeCache(max_entries=32)


def _vector_frames() -> list[bytes]:
    path = GOB_VECTORS / "gob-vectors.json"
    if not path.is_file():
        return []
    return [
        bytes.fromhex(v["frame_hex"])
        for v in json.loads(Path(path).read_text())
        if v["frame_len"] < 5000
    ]


FRAMES = SEEDS + _vector_frames()


def _decode_all_ways(frame: bytes) -> None:
    """Either a Message or ProtocolError, the same from the general decoder without a cache and
    from the default one (generated, then general) with a shared cache. (tests/wire/test_fast.py
    compares the two decoders on their own.)"""
    outcomes: list[Message | str] = []
    for cache, fast in ((None, False), (CACHE, True)):
        try:
            outcomes.append(decode_message(frame, cache=cache, fast=fast))
        except ProtocolError as exc:
            outcomes.append(str(exc))
    assert outcomes[0] == outcomes[1]


def _refit(frame: bytes) -> bytes:
    """Rewrite the header to the body's real length, so damage reaches the gob decoder."""
    return frame_header(len(frame) - 8) + frame[8:] if len(frame) >= 8 else frame


@pytest.mark.timeout(60)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_random_bytes(data: bytes) -> None:
    _decode_all_ways(data)
    _decode_all_ways(_refit(b"\0" * 8 + data))


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    frame = bytearray(draw(st.sampled_from(FRAMES)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        at = draw(st.integers(8, len(frame))) if len(frame) > 8 else 8
        if kind == "flip" and at < len(frame):
            frame[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and at < len(frame):
            frame[at] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xF8, 0xF7, 0xFF, 0xFE]))
        elif kind == "insert":
            frame[at:at] = draw(st.binary(min_size=1, max_size=9))
        elif kind == "delete":
            del frame[at : at + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del frame[at:]
    return _refit(bytes(frame)) if draw(st.booleans()) else bytes(frame)


@pytest.mark.timeout(120)
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_frames())
def test_mutated_frames(frame: bytes) -> None:
    _decode_all_ways(frame)


@pytest.mark.timeout(60)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(MESSAGES, st.data())
def test_mutated_arbitrary_messages(msg: Message, data: st.DataObject) -> None:
    frame = bytearray(encode_message(msg))
    at = data.draw(st.integers(8, len(frame) - 1))
    frame[at] ^= 1 << data.draw(st.integers(0, 7))
    _decode_all_ways(_refit(bytes(frame)))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("index", range(len(SEEDS)))
def test_truncation_at_every_offset(index: int) -> None:
    frame = SEEDS[index]
    for cut in range(len(frame)):
        with pytest.raises(ProtocolError):
            decode_message(frame[:cut])
        with contextlib.suppress(ProtocolError):  # as a complete frame: refused or accepted
            decode_message(_refit(frame[:cut]))


def _bounded(run: Callable[[], object], max_bytes: int = 4 << 20, match: str | None = None) -> None:
    """``run`` is refused with ``ProtocolError``, cheaply: little memory, and little work
    (counted in Python calls, ~1,000 for these inputs; a count or a depth honoured before it
    is checked would cost millions)."""
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError, match=match):
            run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < max_bytes
    assert python_calls(run) < 10_000


def _with_count(msg: Message, old: bytes, new: bytes) -> bytes:
    """Patch one length in an encoded frame (its gob message lengths become inconsistent only
    where the patch lies, which the decoder must still survive)."""
    body = encode_message(msg)[8:]
    assert body.count(old) == 1, old
    return frame_header(len(body) - len(old) + len(new)) + body.replace(old, new)


def test_huge_counts_fail_before_allocating() -> None:
    # A [][]byte claiming 2 GiB elements, and a []byte claiming 2 GiB: refused up front.
    batch = Message(NODE, NODE, 6, BatchStoreDataRequest([b"\xaa" * 3], 1))
    _bounded(
        lambda: decode_message(_with_count(batch, b"\x01\x01\x03", b"\x01\xfc\x80\x00\x00\x00\x03"))
    )
    _bounded(
        lambda: decode_message(_with_count(batch, b"\x01\x03\xaa", b"\x01\xfc\x80\x00\x00\x00\xaa"))
    )
    # A gob message claiming 2^40 bytes inside a small frame.
    _bounded(lambda: decode_body(b"\xfb\x01\x00\x00\x00\x00" + b"\x00" * 64))
    # A map claiming 2^40 entries with nothing behind it.
    kv = Message(NODE, NODE, 8, BatchGetValuesRequest({}))
    _bounded(
        lambda: decode_message(
            _with_count(kv, b"\x01\x00\x00\x00", b"\x01\xfb\x01\x00\x00\x00\x00\x00\x00\x00")
        )
    )


def test_deep_nesting_is_refused_cheaply() -> None:
    """A self-recursive ignored type (74 = []74) nested a million deep: refused at the cap."""
    path = GOB_VECTORS / "gob-bad.json"
    if not path.is_file():
        pytest.skip(f"gob vectors not found at {path}")
    vec = next(v for v in json.loads(path.read_text()) if v["go_outcome"] == "crash")
    recipe = vec["frame_recipe"]
    prefix = bytes.fromhex(recipe["prefix_hex"])[8:]
    count = recipe["repeat_count"]
    # The last gob message's length counts the repeated bytes: shrink it to the new depth.
    levels = 1_000_000
    old_len = b"\xfd" + (count + 41).to_bytes(3, "big")
    assert prefix.count(old_len) == 1
    body = (
        prefix.replace(old_len, b"\xfd" + (levels + 41).to_bytes(3, "big"))
        + b"\x01" * levels
        + bytes.fromhex(recipe["suffix_hex"])
    )
    _bounded(lambda: decode_body(body), match="nesting too deep")
    # Below the cap the same shape is accepted, as Go accepts the shallow version.
    shallow = prefix.replace(old_len, b"\xfd" + (50 + 41).to_bytes(3, "big"))
    assert (
        decode_body(shallow + b"\x01" * 50 + bytes.fromhex(recipe["suffix_hex"])).message_type == 2
    )
