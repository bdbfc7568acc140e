"""The small-message fast path: whole messages taken from the record layer, and its fallback.

``RecordReader.take_whole`` and ``SecureStream.frame_future`` hand out a message only when it
lies whole in the plaintext of one record; anything else (split, larger, broken, the end of
the stream) sends the caller back to ``read``, which must continue from exactly the same byte.
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lumera_p2p.errors import ProtocolError
from lumera_p2p.identity.keys import PrivateKey
from lumera_p2p.secure.channel import SecureStream, secure_connect
from lumera_p2p.secure.handshake import StaticPeerVerifier
from lumera_p2p.secure.record import RecordCrypto, RecordReader, RecordWriter, Side

from .conftest import Server

pytestmark = pytest.mark.usefixtures("loop_errors")

KEY = bytes(range(56))


def framer(view: memoryview) -> int:
    """Test messages: one length byte, then that many bytes."""
    if not view or len(view) < 1 + view[0]:
        return -1
    return 1 + view[0]


def message(body: bytes) -> bytes:
    return bytes([len(body)]) + body


def pair() -> tuple[RecordWriter, RecordReader]:
    return RecordWriter(RecordCrypto(KEY, Side.CLIENT)), RecordReader(
        RecordCrypto(KEY, Side.SERVER)
    )


def test_take_whole_waits_takes_and_declines() -> None:
    writer, reader = pair()
    assert reader.take_whole(framer) is True  # nothing here yet
    reader.feed(writer.seal_all(message(b"one") + message(b"two") + b"\x05ab"))
    assert reader.take_whole(framer) == message(b"one")
    assert reader.take_whole(framer) == message(b"two")
    assert reader.take_whole(framer) is False  # an incomplete message: read it
    assert reader.read(10) == b"\x05ab"
    assert reader.take_whole(framer) is True


def test_a_broken_frame_is_declined_then_raised_by_read() -> None:
    writer, reader = pair()
    sealed = bytearray(writer.seal_all(message(b"x")))
    sealed[-1] ^= 1
    reader.feed(bytes(sealed))
    assert reader.take_whole(framer) is False
    with pytest.raises(ProtocolError):
        reader.read(10)
    assert reader.take_whole(framer) is False


@settings(max_examples=150, deadline=None)
@given(
    bodies=st.lists(st.binary(max_size=40), min_size=1, max_size=12),
    cuts=st.lists(st.integers(min_value=1, max_value=60), max_size=20),
    chunk=st.integers(min_value=1, max_value=200),
)
def test_whole_messages_and_reads_see_the_same_stream(
    bodies: list[bytes], cuts: list[int], chunk: int
) -> None:
    """Records cut anywhere (so some messages span records), fed in any chunk size: each
    message comes out once and intact, whole or through ``read``."""
    writer, reader = pair()
    stream = b"".join(message(b) for b in bodies)
    records = bytearray()
    pos = 0
    for cut in [*cuts, len(stream)]:
        part = stream[pos : pos + cut]
        if part:
            records += writer.seal_all(part)
        pos += len(part)
    assert pos == len(stream)
    fed = 0
    got: list[bytes] = []
    partial = b""  # the message being read the slow way
    for _ in range(10 * len(records) + 100):  # a bound, so a lost byte fails, not hangs
        if len(got) == len(bodies):
            break
        if fed < len(records) and not reader.should_pause:
            reader.feed(bytes(records[fed : fed + chunk]))
            fed += chunk
        if partial:
            more = reader.read(1 + partial[0] - len(partial))
            partial += more or b""
            if len(partial) == 1 + partial[0]:
                got.append(partial)
                partial = b""
            continue
        whole = reader.take_whole(framer)
        if isinstance(whole, bytes):
            got.append(whole)
        elif whole is False:
            partial = reader.read(1) or b""
            if partial and partial[0] == 0:
                got.append(partial)
                partial = b""
    assert got == [message(b) for b in bodies]
    assert reader.take_whole(framer) is True


# --- over loopback ------------------------------------------------------------------------


async def connected(
    server: Server, client_key: PrivateKey, server_key: PrivateKey, verifier: StaticPeerVerifier
) -> tuple[SecureStream, SecureStream]:
    client = await secure_connect(
        "127.0.0.1", server.port, client_key, server_key.address, verifier, timeout=5
    )
    accepted = await server.next()
    assert accepted.stream is not None
    return client, accepted.stream


async def test_frame_future_over_loopback(
    server: Server, client_key: PrivateKey, server_key: PrivateKey, verifier: StaticPeerVerifier
) -> None:
    loop = asyncio.get_running_loop()
    client, peer = await connected(server, client_key, server_key, verifier)
    try:
        waiter = peer.frame_future(framer, loop.time() + 10)
        assert not waiter.done()
        with pytest.raises(RuntimeError):  # one reader at a time
            await peer.read(1)
        client.send_now(message(b"hello"))
        assert await waiter == message(b"hello")

        # Already here: done at once.
        client.send_now(message(b"a") + message(b"b"))
        assert await peer.frame_future(framer, loop.time() + 10) == message(b"a")
        ready = peer.frame_future(framer, loop.time() + 10)
        assert ready.done() and ready.result() == message(b"b")

        # Split across two records: None, and read() gets every byte.
        waiter = peer.frame_future(framer, loop.time() + 10)
        client.write(b"\x06ab")
        await client.drain()
        client.write(b"cdef")
        await client.drain()
        assert await waiter is None
        data = b""
        while len(data) < 7:
            data += await peer.read(7 - len(data))
        assert data == b"\x06abcdef"

        # The end of the stream: None, then read() says so.
        waiter = peer.frame_future(framer, loop.time() + 10)
        client.close()
        assert await waiter is None
        assert await peer.read(10) == b""
    finally:
        client.abort()
        peer.abort()


async def test_frame_future_deadlines(
    server: Server, client_key: PrivateKey, server_key: PrivateKey, verifier: StaticPeerVerifier
) -> None:
    loop = asyncio.get_running_loop()
    client, peer = await connected(server, client_key, server_key, verifier)
    try:
        # A wait with a far deadline leaves the connection's timer there ...
        waiter = peer.frame_future(framer, loop.time() + 30)
        client.send_now(message(b"x"))
        assert await waiter == message(b"x")
        # ... and a shorter one still ends on time (the timer is moved earlier).
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await peer.frame_future(framer, loop.time() + 0.2)
        assert time.monotonic() - started >= 0.15
        # A later deadline than the timer's: the timer fires first, finds the wait still
        # has time and moves on; the wait ends no earlier than its own deadline.
        short = peer.frame_future(framer, loop.time() + 0.1)
        client.send_now(message(b"y"))
        assert await short == message(b"y")
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await peer.frame_future(framer, loop.time() + 0.4)
        assert time.monotonic() - started >= 0.35
        # Nothing was lost to the timeouts: the stream still works.
        waiter = peer.frame_future(framer, loop.time() + 10)
        client.send_now(message(b"z"))
        assert await waiter == message(b"z")
    finally:
        client.abort()
        peer.abort()


async def test_a_cancelled_wait_consumes_nothing(
    server: Server, client_key: PrivateKey, server_key: PrivateKey, verifier: StaticPeerVerifier
) -> None:
    loop = asyncio.get_running_loop()
    client, peer = await connected(server, client_key, server_key, verifier)
    try:
        waiter = peer.frame_future(framer, loop.time() + 10)

        async def wait() -> bytes | None:
            try:
                return await waiter
            except asyncio.CancelledError:
                peer.cancel_frame_wait(waiter)
                raise

        task = asyncio.create_task(wait())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        client.send_now(message(b"kept"))
        assert await peer.read(100) == message(b"kept")
    finally:
        client.abort()
        peer.abort()


async def test_send_now_on_a_closed_stream(
    server: Server, client_key: PrivateKey, server_key: PrivateKey, verifier: StaticPeerVerifier
) -> None:
    client, peer = await connected(server, client_key, server_key, verifier)
    client.write(b"queued ")  # coalesced, not yet sent: send_now sends it first
    client.send_now(b"then this")
    data = b""
    while len(data) < 16:
        data += await peer.read(100)
    assert data == b"queued then this"
    large = os.urandom(100_000)  # over one small frame: sealed the general way
    client.send_now(large)
    got = b""
    while len(got) < len(large):
        got += await peer.read(len(large))
    assert got == large
    client.abort()
    peer.abort()
    with pytest.raises(ConnectionResetError):
        client.send_now(b"late")
