"""Decoding from a memoryview with ``views_from``: the same messages and the same errors as from
bytes, large byte fields as read-only views into the buffer, everything else as before."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lumera_p2p.errors import ProtocolError
from lumera_p2p.wire import (
    BatchStoreDataRequest,
    GobDecodeCache,
    Message,
    MessageType,
    Node,
    StoreDataRequest,
    decode_body,
    encode_message,
)

from .strategies import MESSAGES

NODE = Node(
    b"lumera1jcus5g9v6r080rg7dljvvpr4cm8k7psqwg7tj8", "127.0.0.1", 4445, "v2.6.2", b"h" * 32
)


def _outcome(body: bytes | memoryview, **kwargs: object) -> Message | str:
    try:
        return decode_body(body, **kwargs)  # type: ignore[arg-type]
    except ProtocolError as exc:
        return f"ProtocolError: {exc}"


@settings(max_examples=150, deadline=None)
@given(MESSAGES, st.sampled_from([1, 16, 64, 4096]))
def test_views_decode_to_equal_messages(msg: Message, views_from: int) -> None:
    body = encode_message(msg)[8:]
    view = memoryview(bytearray(body))
    assert decode_body(view, views_from=views_from) == decode_body(body) == msg


@settings(max_examples=300, deadline=None)
@given(MESSAGES, st.data())
def test_damaged_bodies_fail_the_same_way(msg: Message, data: st.DataObject) -> None:
    body = bytearray(encode_message(msg)[8:])
    for _ in range(data.draw(st.integers(1, 4))):
        if body:
            body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(body)))
    damaged = bytes(body[:cut])
    assert _outcome(memoryview(bytearray(damaged)), views_from=1) == _outcome(damaged)


def test_large_fields_are_read_only_views_into_the_buffer() -> None:
    values = [bytes([i]) * (100_000 + i) for i in range(3)] + [b"small"]
    msg = Message(NODE, NODE, MessageType.BATCH_STORE_DATA, BatchStoreDataRequest(values, 1))
    buf = bytearray(encode_message(msg)[8:])
    decoded = decode_body(memoryview(buf), views_from=4096)
    assert isinstance(decoded.data, BatchStoreDataRequest)
    got = decoded.data.data
    assert [type(v) for v in got] == [memoryview, memoryview, memoryview, bytes]
    assert got == values
    view = got[0]
    assert isinstance(view, memoryview) and view.readonly and view.obj is buf
    # The small fields every handler hashes and compares stay bytes.
    assert decoded.sender is not None
    assert type(decoded.sender.id) is bytes and type(decoded.sender.hashed_id) is bytes
    assert decoded.sender.ip == "127.0.0.1"


def test_without_views_nothing_changes() -> None:
    msg = Message(NODE, NODE, MessageType.STORE_DATA, StoreDataRequest(b"x" * 100_000, 0))
    body = encode_message(msg)[8:]
    assert type(decode_body(memoryview(bytearray(body))).data.data) is bytes  # type: ignore[union-attr]
    assert type(decode_body(body, views_from=1).data.data) is bytes  # type: ignore[union-attr]


def test_views_and_the_cache_work_together() -> None:
    cache = GobDecodeCache()
    msg = Message(NODE, NODE, MessageType.STORE_DATA, StoreDataRequest(b"y" * 70_000, 0))
    body = encode_message(msg)[8:]
    for _ in range(3):  # the second and third decode hit the cached type definitions
        decoded = decode_body(memoryview(bytearray(body)), cache=cache, views_from=4096)
        assert decoded == msg
        assert isinstance(decoded.data, StoreDataRequest)
        assert type(decoded.data.data) is memoryview
    # The cache kept no view (which would pin a frame's buffer).
    assert all(type(k) is bytes for k in cache.defs._entries)
