"""The server's frame buffers: a large body read into one buffer and handed out as a view, and
a large answer written a chunk at a time, each after the stream has drained."""

from __future__ import annotations

import asyncio

import pytest

from lumera_p2p.errors import ProtocolError
from lumera_p2p.net.frames import (
    VIEW_MIN,
    WRITE_CHUNK,
    decode_frame_body,
    read_body_view,
    write_frame,
)
from lumera_p2p.net.virtual_time import run_virtual
from lumera_p2p.wire.messages import Message, MessageType, Node, StoreDataRequest, encode_message


class Chunks:
    """Returns ``chunks`` one per read (split to fit ``n``), each after ``delay`` s; then EOF."""

    def __init__(self, chunks: list[bytes], delay: float = 0.0) -> None:
        self.chunks = list(chunks)
        self.delay = delay
        self.reads: list[int] = []

    async def read(self, n: int = -1) -> bytes:
        self.reads.append(n)
        if self.delay:
            await asyncio.sleep(self.delay)
        if not self.chunks:
            return b""
        chunk = self.chunks.pop(0)
        if len(chunk) > n:
            self.chunks.insert(0, chunk[n:])
            chunk = chunk[:n]
        return chunk

    def write(self, data: bytes | bytearray | memoryview) -> None:
        raise AssertionError("not written to")

    async def drain(self) -> None:
        raise AssertionError("not written to")


class Recorder:
    """Records each write's size and whether a drain followed it."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.data = bytearray()

    async def read(self, n: int = -1) -> bytes:
        return b""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.events.append(f"write {len(data)}")
        self.data += data

    async def drain(self) -> None:
        self.events.append("drain")
        await asyncio.sleep(0)


def test_a_small_body_is_bytes() -> None:
    async def main() -> None:
        body = await read_body_view(Chunks([b"ab", b"cd"]), 4)
        assert body == b"abcd" and type(body) is bytes

    run_virtual(main())


def test_a_large_body_is_one_read_only_buffer_of_exactly_its_length() -> None:
    async def main() -> None:
        size = VIEW_MIN + 12_345
        data = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
        parts = [data[i : i + 7000] for i in range(0, size, 7000)]
        body = await read_body_view(Chunks(parts), size)
        assert isinstance(body, memoryview) and body.readonly
        assert isinstance(body.obj, bytearray) and len(body.obj) == size
        assert body == data

    run_virtual(main())


def test_a_large_body_that_ends_early() -> None:
    async def main() -> None:
        with pytest.raises(ProtocolError, match="inside a frame body"):
            await read_body_view(Chunks([b"x" * VIEW_MIN]), 2 * VIEW_MIN)

    run_virtual(main())


def test_a_large_body_must_keep_up_the_minimum_rate() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        stream = Chunks([b"x" * 1000] * 1000, delay=1.0)
        with pytest.raises(TimeoutError):
            # 1000 bytes a second against a minimum of 100 kB/s after a 5 s grace.
            await read_body_view(stream, 10 * VIEW_MIN, grace=5.0, min_rate=100_000)
        assert 5.0 <= loop.time() - started < 7.0

    run_virtual(main())


def test_a_view_body_decodes_with_views() -> None:
    async def main() -> None:
        node = Node(id=b"lumera1x")
        msg = Message(node, None, MessageType.STORE_DATA, StoreDataRequest(b"v" * 3 * VIEW_MIN))
        frame = encode_message(msg)
        body = await read_body_view(Chunks([frame[8:]]), len(frame) - 8)
        for off_loop in (len(frame), 1):  # on the loop, and in a worker thread
            decoded = await decode_frame_body(body, None, off_loop, views_from=VIEW_MIN)
            assert decoded == msg
            assert isinstance(decoded.data, StoreDataRequest)
            assert type(decoded.data.data) is memoryview

    run_virtual(main())


def test_a_large_frame_is_written_in_drained_chunks() -> None:
    async def main() -> None:
        stream = Recorder()
        frame = bytes(range(256)) * ((2 * WRITE_CHUNK + 100) // 256)
        await write_frame(stream, frame, timeout=10.0)
        sizes = [int(e.split()[1]) for e in stream.events if e.startswith("write")]
        assert max(sizes) <= WRITE_CHUNK and sum(sizes) == len(frame)
        assert stream.events == [e for s in sizes for e in (f"write {s}", "drain")]
        assert stream.data == frame

    run_virtual(main())


def test_a_small_frame_is_written_at_once() -> None:
    async def main() -> None:
        stream = Recorder()
        await write_frame(stream, b"abc", timeout=1.0)
        assert stream.events == ["write 3", "drain"]

    run_virtual(main())
