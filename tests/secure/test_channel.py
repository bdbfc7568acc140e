"""Secure channel over real loopback TCP: transfer, stream semantics and every rejection.

Each rejection must surface as a ``ProtocolError`` on the rejecting side, with the TCP
connection closed (the other end sees EOF or a reset) and nothing else raised or logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tracemalloc
from typing import Any

import pytest

from lumera_p2p.errors import ProtocolError
from lumera_p2p.identity.keys import PrivateKey
from lumera_p2p.secure.channel import (
    IncomingConnection,
    SecureStream,
    secure_connect,
    start_secure_server,
)
from lumera_p2p.secure.handshake import (
    HandshakeInfo,
    HandshakeTimeoutError,
    PeerType,
    StaticPeerVerifier,
    client_handshake,
    create_request,
    encode_message,
    ephemeral_public_bytes,
    generate_ephemeral,
)
from lumera_p2p.secure.record import GO_PAYLOAD, MAX_BUFFER, RecordCrypto, RecordWriter, Side
from tests.support import peer_closed

from .conftest import Server, make_key, start_server, stop_server

pytestmark = pytest.mark.usefixtures("loop_errors")

MIB = 1024 * 1024


async def connect(server: Server, key: PrivateKey, expected: str, verifier: Any) -> SecureStream:
    return await secure_connect("127.0.0.1", server.port, key, expected, verifier, timeout=5)


async def raw_client(
    server: Server, key: PrivateKey, expected: str, verifier: Any
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, RecordCrypto]:
    """A hand-driven client: real handshake, then raw frames under our control."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    result = await client_handshake(reader, writer, key, expected, verifier)
    return reader, writer, RecordCrypto(result.key_material, Side.CLIENT)


async def pump(stream: SecureStream, data: bytes, chunk: int = MIB) -> None:
    view = memoryview(data)
    for i in range(0, len(view), chunk):
        stream.write(view[i : i + chunk])
        await stream.drain()


async def digest_of(stream: SecureStream, n: int) -> str:
    h = hashlib.sha256()
    got = 0
    while got < n:
        data = await stream.read(MIB)
        assert data, f"stream ended after {got} of {n} bytes"
        h.update(data)
        got += len(data)
    return h.hexdigest()


async def expect_rejected(server: Server, match: str) -> None:
    """The server side failed with a ProtocolError and dropped the connection."""
    accepted = await server.next()
    assert isinstance(accepted.error, ProtocolError), accepted
    assert not isinstance(accepted.error, HandshakeTimeoutError)
    assert accepted.error.args and match in str(accepted.error), accepted.error
    assert accepted.conn is not None and accepted.conn.is_closing()


# --- working channel ------------------------------------------------------------------------


async def test_64_mib_both_ways(
    server: Server, client_key: PrivateKey, server_key: PrivateKey, verifier: StaticPeerVerifier
) -> None:
    client = await connect(server, client_key, server_key.address, verifier)
    accepted = await server.next()
    assert accepted.stream is not None
    srv = accepted.stream
    assert client.peer_address == server_key.address
    assert srv.peer_address == client_key.address
    assert client.peer_type is PeerType.SUPERNODE and srv.peer_type is PeerType.SUPERNODE
    up, down = os.urandom(64 * MIB), os.urandom(64 * MIB)
    async with asyncio.timeout(60):
        results = await asyncio.gather(
            pump(client, up),
            digest_of(srv, len(up)),
            pump(srv, down, chunk=3 * MIB + 17),
            digest_of(client, len(down)),
        )
    assert results[1] == hashlib.sha256(up).hexdigest()
    assert results[3] == hashlib.sha256(down).hexdigest()
    client.close()
    assert await srv.read(1) == b""
    assert srv.at_eof()
    srv.close()
    await client.wait_closed()
    await srv.wait_closed()


async def test_value_sized_writes_are_gathered_into_large_frames(
    server: Server, client_key: PrivateKey, server_key: PrivateKey, verifier: StaticPeerVerifier
) -> None:
    """A batch message's parts (a small field header, a 64 KiB value, ...) go out in frames
    of up to 1 MiB, not two frames per value, and arrive intact and in order."""
    client = await connect(server, client_key, server_key.address, verifier)
    accepted = await server.next()
    assert accepted.stream is not None
    srv = accepted.stream
    parts = [p for _ in range(32) for p in (os.urandom(10), os.urandom(64 * 1024))]
    parts.append(os.urandom(300 * 1024))  # over the gather size: sealed on its own
    parts.append(b"tail")
    sent = b"".join(parts)
    counter = client._proto.writer._crypto.out_counter  # type: ignore[union-attr]
    before = counter.as_int()
    async with asyncio.timeout(30):
        for part in parts:
            client.write(part)
        await client.drain()
        got = await srv.readexactly(len(sent))
    assert got == sent
    # 2 MiB of values in at most 3 frames, the large write in 1, the tail in 1 (was 66).
    assert counter.as_int() - before <= 5
    client.close()
    srv.close()
    await client.wait_closed()
    await srv.wait_closed()


async def test_start_secure_server_and_message_framing(
    client_key: PrivateKey, server_key: PrivateKey, verifier: StaticPeerVerifier
) -> None:
    """8-byte-framed messages (as the gob layer sends them): small writes coalesce fine."""
    tasks: set[asyncio.Task[None]] = set()

    async def echo(conn: IncomingConnection) -> None:
        async with await conn.handshake() as stream:
            while True:
                try:
                    header = await stream.readexactly(8)
                except asyncio.IncompleteReadError:
                    return
                body = await stream.readexactly(int.from_bytes(header, "little"))
                stream.write(header)
                stream.write(body)
                await stream.drain()

    def on_connection(conn: IncomingConnection) -> None:
        task = asyncio.get_running_loop().create_task(echo(conn))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    srv = await start_secure_server(on_connection, "127.0.0.1", 0, server_key, verifier, timeout=5)
    port = srv.sockets[0].getsockname()[1]
    async with asyncio.timeout(30):
        client = await secure_connect(
            "127.0.0.1", port, client_key, server_key.address, verifier, timeout=5
        )
        for size in (0, 1, 100, 4072, 70_000, 2 * MIB + 3):
            body = os.urandom(size)
            client.write(size.to_bytes(8, "little"))
            client.write(body)
            await client.drain()
            header = await client.readexactly(8)
            assert int.from_bytes(header, "little") == size
            assert await client.readexactly(size) == body
        client.close()
        await client.wait_closed()
        await asyncio.gather(*tasks)
    srv.close()
    await srv.wait_closed()


async def test_go_sized_frames_are_accepted(
    server: Server, client_key: PrivateKey, server_key: PrivateKey, verifier: StaticPeerVerifier
) -> None:
    _, writer, crypto = await raw_client(server, client_key, server_key.address, verifier)
    accepted = await server.next()
    assert accepted.stream is not None
    data = os.urandom(512 * 1024 + 100 * 1024)
    go_writer = RecordWriter(crypto, max_payload=GO_PAYLOAD)
    for frame in go_writer.frames(data):
        writer.write(bytes(frame))
    await writer.drain()
    async with asyncio.timeout(10):
        assert await accepted.stream.readexactly(len(data)) == data
    writer.close()
    accepted.stream.close()


async def test_incoming_connection_handshakes_once_and_callback_crashes_close(
    client_key: PrivateKey,
    server_key: PrivateKey,
    verifier: StaticPeerVerifier,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The owner's callback may crash (the socket closes, the server lives); a handshake
    runs at most once per connection."""
    accepted: asyncio.Queue[IncomingConnection] = asyncio.Queue()
    crash = True

    def on_connection(conn: IncomingConnection) -> None:
        nonlocal crash
        if crash:
            crash = False
            raise RuntimeError("owner bug")
        accepted.put_nowait(conn)

    srv = await start_secure_server(on_connection, "127.0.0.1", 0, server_key, verifier, timeout=5)
    port = srv.sockets[0].getsockname()[1]
    try:
        async with asyncio.timeout(10):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert await peer_closed(reader)
            writer.close()
            assert "connection callback failed" in caplog.text
            dial = asyncio.ensure_future(
                secure_connect("127.0.0.1", port, client_key, server_key.address, verifier)
            )
            conn = await accepted.get()
            assert "127.0.0.1" in repr(conn)
            assert conn.deadline > asyncio.get_running_loop().time()
            stream = await conn.handshake()
            with pytest.raises(RuntimeError, match="already run"):
                await conn.handshake()
            client = await dial
            client.write(b"hi")
            assert await stream.readexactly(2) == b"hi"
            client.close()
            stream.close()
    finally:
        srv.close()
        await srv.wait_closed()


async def test_data_sent_with_the_handshake_is_not_lost(
    client_key: PrivateKey, server_key: PrivateKey, verifier: StaticPeerVerifier
) -> None:
    """Bytes that arrive before the server starts its handshake are kept for the stream."""
    server, srv = await start_server(server_key, verifier, delay=0.2)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        eph = generate_ephemeral()
        info, sig = create_request(client_key, PeerType.SUPERNODE, eph)
        writer.write(encode_message(info, sig))
        # Derive the keys ourselves from the reply, then send a frame at once; the server
        # handler is still sleeping, so HS1 and the frame both wait in its receive buffer.
        result = await client_handshake(
            reader, _Null(), client_key, server_key.address, verifier, ephemeral=eph
        )
        crypto = RecordCrypto(result.key_material, Side.CLIENT)
        writer.write(crypto.seal(b"early bird"))
        await writer.drain()
        accepted = await server.next()
        assert accepted.stream is not None
        async with asyncio.timeout(5):
            assert await accepted.stream.readexactly(10) == b"early bird"
        writer.close()
        accepted.stream.close()
    finally:
        await stop_server(server, srv)


class _Null:
    """A writer that drops what it gets (the handshake was already sent by hand)."""

    def write(self, data: bytes) -> None:
        pass


async def test_peer_that_closes_right_after_its_handshake(
    client_key: PrivateKey, server_key: PrivateKey, verifier: StaticPeerVerifier
) -> None:
    """An EOF that arrives before the server starts its handshake still reaches the stream."""
    server, srv = await start_server(server_key, verifier, delay=0.2)
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        info, sig = create_request(client_key, PeerType.SUPERNODE, generate_ephemeral())
        writer.write(encode_message(info, sig))
        writer.write_eof()
        accepted = await server.next()
        assert accepted.stream is not None
        async with asyncio.timeout(5):
            assert await accepted.stream.read(10) == b""
        accepted.stream.close()
        writer.close()
    finally:
        await stop_server(server, srv)


async def test_clean_eof_and_incomplete_read(
    server: Server, client_key: PrivateKey, server_key: PrivateKey, verifier: StaticPeerVerifier
) -> None:
    client = await connect(server, client_key, server_key.address, verifier)
    accepted = await server.next()
    assert accepted.stream is not None
    client.write(b"12345")
    client.close()
    async with asyncio.timeout(5):
        with pytest.raises(asyncio.IncompleteReadError) as info:
            await accepted.stream.readexactly(10)
    assert info.value.partial == b"12345"
    assert await accepted.stream.read(10) == b""
    accepted.stream.close()


async def test_cancelled_readexactly_keeps_its_bytes(
    server: Server, client_key: PrivateKey, server_key: PrivateKey, verifier: StaticPeerVerifier
) -> None:
    client = await connect(server, client_key, server_key.address, verifier)
    accepted = await server.next()
    assert accepted.stream is not None
    stream = accepted.stream
    client.write(b"a" * 50)
    await client.drain()
    await asyncio.sleep(0.05)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await stream.readexactly(100)
    client.write(b"b" * 50)
    await client.drain()
    async with asyncio.timeout(5):
        assert await stream.readexactly(100) == b"a" * 50 + b"b" * 50
    client.close()
    stream.close()


async def test_receiver_that_does_not_read_stays_bounded(
    server: Server, client_key: PrivateKey, server_key: PrivateKey, verifier: StaticPeerVerifier
) -> None:
    client = await connect(server, client_key, server_key.address, verifier)
    accepted = await server.next()
    assert accepted.stream is not None
    data = os.urandom(24 * MIB)
    sender = asyncio.create_task(pump(client, data))
    await asyncio.sleep(0.3)  # the server reads nothing meanwhile
    assert not sender.done()  # back-pressure reached the sender
    assert accepted.stream._proto.reader.capacity <= MAX_BUFFER
    async with asyncio.timeout(20):
        assert await accepted.stream.readexactly(len(data)) == data
        await sender
    client.close()
    accepted.stream.close()


# --- rejections -----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [10, 100_000])
async def test_tampered_frame(
    size: int,
    server: Server,
    client_key: PrivateKey,
    server_key: PrivateKey,
    verifier: StaticPeerVerifier,
) -> None:
    reader, writer, crypto = await raw_client(server, client_key, server_key.address, verifier)
    accepted = await server.next()
    assert accepted.stream is not None
    frame = bytearray(crypto.seal(os.urandom(size)))
    frame[12] ^= 0x80
    writer.write(bytes(frame))
    async with asyncio.timeout(5):
        with pytest.raises(ProtocolError, match="authentication"):
            await accepted.stream.read(size)
    assert await peer_closed(reader)
    with pytest.raises(ProtocolError):  # the stream stays failed
        await accepted.stream.read(1)
    with pytest.raises(ProtocolError):
        accepted.stream.write(b"x")
    writer.close()


async def test_replayed_frame(
    server: Server, client_key: PrivateKey, server_key: PrivateKey, verifier: StaticPeerVerifier
) -> None:
    reader, writer, crypto = await raw_client(server, client_key, server_key.address, verifier)
    accepted = await server.next()
    assert accepted.stream is not None
    frame = crypto.seal(b"pay me once")
    writer.write(frame + frame)
    async with asyncio.timeout(5):
        assert await accepted.stream.readexactly(11) == b"pay me once"
        with pytest.raises(ProtocolError, match="authentication"):
            await accepted.stream.read(11)
    assert await peer_closed(reader)
    writer.close()


async def test_truncated_frame(
    server: Server, client_key: PrivateKey, server_key: PrivateKey, verifier: StaticPeerVerifier
) -> None:
    reader, writer, crypto = await raw_client(server, client_key, server_key.address, verifier)
    accepted = await server.next()
    assert accepted.stream is not None
    writer.write(crypto.seal(b"cut short")[:-5])
    writer.write_eof()
    async with asyncio.timeout(5):
        with pytest.raises(ProtocolError, match="middle of a record frame"):
            await accepted.stream.read(100)
    assert await peer_closed(reader)
    writer.close()


async def test_oversized_frame_length(
    server: Server, client_key: PrivateKey, server_key: PrivateKey, verifier: StaticPeerVerifier
) -> None:
    reader, writer, _ = await raw_client(server, client_key, server_key.address, verifier)
    accepted = await server.next()
    assert accepted.stream is not None
    writer.write((1024 * 1024 + 1).to_bytes(4, "little") + b"\x06\x00\x00\x00")
    async with asyncio.timeout(5):
        with pytest.raises(ProtocolError, match="exceeds the limit"):
            await accepted.stream.read(100)
    assert await peer_closed(reader)
    writer.close()


async def send_raw_handshake(
    server: Server, payload: bytes
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(payload)
    await writer.drain()
    return reader, writer


async def closed_by_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    closed = await peer_closed(reader)
    writer.close()
    return closed


async def test_account_key_not_matching_claimed_address(
    server: Server, client_key: PrivateKey
) -> None:
    impostor = make_key("impostor")  # not registered; claims the registered client's address
    info = HandshakeInfo(
        client_key.address,
        PeerType.SUPERNODE,
        ephemeral_public_bytes(generate_ephemeral()),
        impostor.public_key.to_any(),
    ).encode()
    reader, writer = await send_raw_handshake(server, encode_message(info, impostor.sign(info)))
    await expect_rejected(server, "address mismatch")
    assert await closed_by_server(reader, writer)


async def test_bad_signature(server: Server, client_key: PrivateKey) -> None:
    info, sig = create_request(client_key, PeerType.SUPERNODE, generate_ephemeral())
    bad = sig[:10] + bytes([sig[10] ^ 1]) + sig[11:]
    reader, writer = await send_raw_handshake(server, encode_message(info, bad))
    await expect_rejected(server, "signature")
    assert await closed_by_server(reader, writer)


async def test_unregistered_client(server: Server, server_key: PrivateKey) -> None:
    stranger = make_key("stranger")
    trusting = StaticPeerVerifier([server_key.address, stranger.address])
    stream = await connect(server, stranger, server_key.address, trusting)
    # The server answers before it verifies (as Go does), so the client only sees the close.
    await expect_rejected(server, "not a registered supernode")
    async with asyncio.timeout(5):
        with contextlib.suppress(ConnectionResetError):  # a reset is as good as a FIN
            assert await stream.read(1) == b""
    stream.close()


async def test_unregistered_server(
    server: Server, client_key: PrivateKey, server_key: PrivateKey
) -> None:
    only_client = StaticPeerVerifier([client_key.address])
    with pytest.raises(ProtocolError, match="not a registered supernode"):
        await connect(server, client_key, server_key.address, only_client)
    accepted = await server.next()
    assert accepted.stream is not None  # the server accepted us; we refused it
    async with asyncio.timeout(5):
        assert await accepted.stream.read(1) == b""
    accepted.stream.close()


async def test_server_is_not_the_peer_dialled(
    server: Server, client_key: PrivateKey, verifier: StaticPeerVerifier
) -> None:
    someone_else = make_key("someone else").address
    with pytest.raises(ProtocolError, match="remote address mismatch"):
        await connect(server, client_key, someone_else, verifier)
    accepted = await server.next()
    assert accepted.stream is not None
    async with asyncio.timeout(5):
        assert await accepted.stream.read(1) == b""  # we closed the connection
    accepted.stream.close()


@pytest.mark.parametrize(
    "header",
    [b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", (64 * 1024 + 1).to_bytes(4, "big")],
)
async def test_oversized_handshake_length(server: Server, header: bytes) -> None:
    was_tracing = tracemalloc.is_tracing()
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        reader, writer = await send_raw_handshake(server, header)
        await expect_rejected(server, "exceeds our limit")
        current, peak = tracemalloc.get_traced_memory()
    finally:
        if not was_tracing:
            tracemalloc.stop()
    assert peak - current < 4 * MIB  # nothing near the announced size was allocated
    assert await closed_by_server(reader, writer)


async def test_oversized_signature_length(server: Server, client_key: PrivateKey) -> None:
    info, _ = create_request(client_key, PeerType.SUPERNODE, generate_ephemeral())
    framed = len(info).to_bytes(4, "big") + info + b"\xff\xff\xff\xff"
    reader, writer = await send_raw_handshake(server, framed)
    await expect_rejected(server, "exceeds our limit")
    assert await closed_by_server(reader, writer)


async def test_truncated_handshake_at_every_offset(server: Server, client_key: PrivateKey) -> None:
    info, sig = create_request(client_key, PeerType.SUPERNODE, generate_ephemeral())
    framed = encode_message(info, sig)
    for cut in range(len(framed)):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(framed[:cut])
        writer.write_eof()
        await expect_rejected(server, "truncated handshake")
        assert await peer_closed(reader)
        writer.close()


async def test_handshake_timeout(server_key: PrivateKey, verifier: StaticPeerVerifier) -> None:
    server, srv = await start_server(server_key, verifier, timeout=0.2)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"\x00\x00")  # then silence
        accepted = await server.next()
        assert isinstance(accepted.error, HandshakeTimeoutError)
        assert await peer_closed(reader)
        writer.close()
    finally:
        await stop_server(server, srv)


async def test_client_handshake_timeout(client_key: PrivateKey, verifier: Any) -> None:
    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)  # read nothing, answer nothing

    srv = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        with pytest.raises(HandshakeTimeoutError):
            await secure_connect("127.0.0.1", port, client_key, "lumera1x", verifier, timeout=0.2)
    finally:
        for writer in writers:
            writer.close()
        srv.close()
        await srv.wait_closed()


async def test_empty_handshake(server: Server) -> None:
    reader, writer = await send_raw_handshake(server, b"\x00\x00\x00\x00")
    await expect_rejected(server, "length 0")
    assert await closed_by_server(reader, writer)


async def test_garbage_handshake_is_not_answered(server: Server) -> None:
    """Go parses before answering: an unparseable HS1 gets no HS2, just a close."""
    reader, writer = await send_raw_handshake(server, encode_message(b"invalid-handshake", b"sig"))
    await expect_rejected(server, "malformed handshake info")
    async with asyncio.timeout(5):
        assert await reader.read(1024) == b""
    writer.close()
