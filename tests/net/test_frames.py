"""The one frame reader, on a scripted stream and on an asyncio.StreamReader: ends, limits,
deadlines, and what goes off the loop."""

from __future__ import annotations

import asyncio

import pytest

from lumera_p2p.errors import ProtocolError
from lumera_p2p.net.frames import (
    LazyBytes,
    decode_frame_body,
    encode_frame,
    encode_now,
    joined,
    payload_hint,
    read_body,
    read_frame,
    read_frame_length,
    read_header,
    read_message,
    write_frame,
)
from lumera_p2p.net.virtual_time import run_virtual
from lumera_p2p.wire.gob import GobDecodeCache
from lumera_p2p.wire.gob.writers import BIG_CHUNK
from lumera_p2p.wire.messages import (
    HEADER_SIZE,
    MAX_MESSAGE_SIZE,
    MAX_PAYLOAD_SIZE,
    BatchGetValuesRequest,
    BatchStoreDataRequest,
    FindNodeRequest,
    FindValueResponse,
    KeyValWithClosest,
    Message,
    MessageType,
    Node,
    ReplicateDataRequest,
    StoreDataRequest,
    decode_message,
    encode_message,
    frame_header,
)

pytestmark = pytest.mark.timeout(10)


class ScriptedStream:
    """Returns ``chunks`` one per read, each after ``delay`` s; then EOF (or ``error``)."""

    def __init__(
        self, chunks: list[bytes], delay: float = 0.0, error: Exception | None = None
    ) -> None:
        self.chunks = list(chunks)
        self.delay = delay
        self.error = error
        self.written = bytearray()

    async def read(self, n: int = -1) -> bytes:
        if self.delay:
            await asyncio.sleep(self.delay)
        if not self.chunks:
            if self.error is not None:
                raise self.error
            return b""
        chunk = self.chunks.pop(0)
        if len(chunk) > n:
            self.chunks.insert(0, chunk[n:])
            chunk = chunk[:n]
        return chunk

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    async def drain(self) -> None:
        await asyncio.sleep(self.delay)


async def test_read_header_in_pieces() -> None:
    header = frame_header(300)
    assert await read_header(ScriptedStream([header[:3], header[3:]])) == header


async def test_read_header_end_before_any_byte() -> None:
    assert await read_header(ScriptedStream([])) is None
    assert await read_header(ScriptedStream([], error=ConnectionResetError())) is None


async def test_read_header_end_inside() -> None:
    with pytest.raises(ProtocolError):
        await read_header(ScriptedStream([b"\x01\x02"]))
    with pytest.raises(ConnectionResetError):
        await read_header(ScriptedStream([b"\x01"], error=ConnectionResetError()))


async def test_read_frame_length_checks_the_limits_before_the_body() -> None:
    # The scripted stream holds only the header: a reader that went on to the body would fail
    # with "closed inside a frame body" instead.
    assert await read_frame_length(ScriptedStream([frame_header(300)])) == 300
    assert await read_frame_length(ScriptedStream([])) is None
    with pytest.raises(ProtocolError, match="payload too big"):
        await read_frame_length(ScriptedStream([frame_header(MAX_PAYLOAD_SIZE + 1)]))
    with pytest.raises(ProtocolError, match="absolute maximum"):
        await read_frame_length(ScriptedStream([frame_header(MAX_MESSAGE_SIZE + 1)]))
    with pytest.raises(ProtocolError, match="over our limit of 100 bytes"):
        await read_frame_length(ScriptedStream([frame_header(101)]), max_size=100)
    with pytest.raises(ProtocolError, match="parse header length"):
        await read_frame_length(ScriptedStream([b"\xff" * 8]))


async def test_read_frame_on_a_scripted_stream() -> None:
    frame = encode_message(Message(data=FindNodeRequest(b"t")))
    stream = ScriptedStream([frame[:3], frame[3:11], frame[11:] + frame])
    assert await read_frame(stream) == frame[HEADER_SIZE:]
    assert await read_frame(stream) == frame[HEADER_SIZE:]
    assert await read_frame(stream) is None


async def test_read_body() -> None:
    assert await read_body(ScriptedStream([b"ab", b"cd", b"ef"]), 5) == b"abcde"
    assert await read_body(ScriptedStream([]), 0) == b""
    with pytest.raises(ProtocolError):
        await read_body(ScriptedStream([b"ab"]), 5)


# Deadlines on the virtual clock: the scripted delays and the timeouts are exact, and cost no
# wall time (a busy machine cannot make these tests pass or fail).


def test_read_body_silent_peer_times_out_after_grace() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        stream = ScriptedStream([b"x"] * 100, delay=10)
        with pytest.raises(TimeoutError):
            await read_body(stream, 100, grace=0.1, min_rate=1e6)
        return loop.time()

    assert run_virtual(main()) == pytest.approx(0.1)  # at the grace, not after a chunk


def test_read_body_deadline_moves_with_the_bytes() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        # 20 chunks, one every 20 ms: 0.4 s in all, far beyond the 0.1 s grace, but each
        # byte buys 1/min_rate = 50 ms more, so a peer keeping up that rate is never cut off.
        stream = ScriptedStream([b"x"] * 20, delay=0.02)
        assert await read_body(stream, 20, grace=0.1, min_rate=20.0) == b"x" * 20
        assert loop.time() == pytest.approx(0.4)
        # Slower than min_rate (a byte every 80 ms, 50 ms earned per byte): cut off when the
        # deadline, 0.1 s + 50 ms per byte received, overtakes the bytes: after byte 1 at
        # 0.08 s the deadline is 0.15 s, after byte 2 at 0.16 s... too late, cut at 0.15 s.
        start = loop.time()
        stream = ScriptedStream([b"x"] * 20, delay=0.08)
        with pytest.raises(TimeoutError):
            await read_body(stream, 20, grace=0.1, min_rate=20.0)
        assert loop.time() - start == pytest.approx(0.15)

    run_virtual(main())


def test_write_frame_deadline() -> None:
    async def main() -> float:
        stream = ScriptedStream([], delay=1.0)
        with pytest.raises(TimeoutError):
            await write_frame(stream, b"frame", timeout=0.05)
        assert stream.written == b"frame"
        return asyncio.get_running_loop().time()

    assert run_virtual(main()) == pytest.approx(0.05)


def test_payload_hint() -> None:
    def msg(data: object) -> Message:
        return Message(data=data)  # type: ignore[arg-type]

    assert payload_hint(Message()) == 0
    assert payload_hint(msg(StoreDataRequest(data=b"x" * 10))) == 10
    assert payload_hint(msg(BatchStoreDataRequest(data=[b"x" * 10, b"y" * 5]))) == 15
    assert payload_hint(msg(ReplicateDataRequest(keys=["k"] * 3))) > 3 * 64
    batch = BatchGetValuesRequest(data={"k": KeyValWithClosest(value=b"v" * 100)})
    assert payload_hint(msg(batch)) >= 100
    assert payload_hint(msg(BatchGetValuesRequest())) == 0


async def test_encode_and_decode_on_and_off_the_loop() -> None:
    message = Message(
        sender=Node(id=b"lumera1x"),
        message_type=MessageType.STORE_DATA,
        data=StoreDataRequest(data=b"d" * 5000),
    )
    inline = (await encode_frame(message)).tobytes()
    threaded = await encode_frame(message, off_loop_size=100)
    assert inline == threaded.tobytes() and len(threaded) == len(inline)
    assert decode_message(inline) == message
    body = inline[HEADER_SIZE:]
    assert await decode_frame_body(body) == message
    assert await decode_frame_body(body, off_loop_size=100) == message


def test_encode_now_joins_small_frames_only() -> None:
    small = Message(sender=Node(id=b"lumera1x"), message_type=MessageType.PING)
    whole = encode_now(small)
    assert isinstance(whole, bytes) and whole == encode_message(small)
    big = Message(message_type=MessageType.STORE_DATA, data=StoreDataRequest(data=b"d" * 70000))
    frame = encode_now(big)
    assert not isinstance(frame, bytes) and frame.tobytes() == encode_message(big)
    assert joined(frame) is None  # over JOIN_BELOW: written in parts
    # A lazy value (streamed as it is sent) is never joined, even in a frame that is small.

    async def read(offset: int, length: int) -> bytes:
        return b"v" * length

    lazy = Message(
        message_type=MessageType.FIND_VALUE,
        data=FindValueResponse(value=LazyBytes(BIG_CHUNK, read)),
    )  # type: ignore[arg-type]
    parts = encode_now(lazy)
    assert not isinstance(parts, bytes) and len(parts) < 64 * 1024
    assert any(isinstance(p, LazyBytes) for p in parts.parts)


async def test_decode_garbage_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        await decode_frame_body(b"\xff" * 50)
    with pytest.raises(ProtocolError):
        await decode_frame_body(b"\xff" * 50, off_loop_size=10)


# --- the same reader on an asyncio.StreamReader ------------------------------------------------


def _reader(data: bytes, eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return reader


async def test_read_frames_from_a_stream_reader() -> None:
    one = Message(sender=Node(id=b"a"), data=FindNodeRequest(b"t"))
    two = Message(message_type=MessageType.PING)
    reader = _reader(encode_message(one) + encode_message(two))
    assert await read_message(reader) == one
    assert await read_message(reader, cache=GobDecodeCache()) == two
    assert await read_message(reader) is None  # clean end between frames


async def test_truncated_stream_is_a_protocol_error() -> None:
    frame = encode_message(Message(data=FindNodeRequest(b"t")))
    with pytest.raises(ProtocolError):
        await read_frame(_reader(frame[:5]))
    with pytest.raises(ProtocolError):
        await read_frame(_reader(frame[:-1]))


async def test_oversized_length_is_refused_before_reading_the_body() -> None:
    # No EOF is fed: a reader that waited for the body would hang until the timeout.
    with pytest.raises(ProtocolError, match="payload too big"):
        await read_frame(_reader(frame_header(MAX_PAYLOAD_SIZE + 1), eof=False))
    with pytest.raises(ProtocolError, match="payload too big"):
        await read_frame(_reader(frame_header(1 << 20), eof=False), max_size=1 << 16)
