"""Go's recorded client bytes against one of our real nodes, over TCP on 127.0.0.1.

For every recorded session a full ``P2P`` node starts with the session's server identity (its
mnemonic is in the file) and a registry that knows the recorded client as the mock chain did.
The test then plays the recorded Go client: it sends HS1 exactly as Go wrote it, checks the HS2
our node answers with, derives the session key from the recorded client ephemeral key and our
node's fresh ephemeral key (so the key differs from the recording's), re-seals the recorded
Kademlia requests under that key, cut as Go cuts them, and checks every answer: decoded, from
the node's identity, of the request's type, with what Go's own server answered.

Sessions Go refused are refused by our node the same way: HS2 first, then the connection
closes without a byte more (EOF, or a reset when our bytes were still unread: both read as a
close). The minimum-version gate is exercised on the same bytes: Go's ``v2.6.2-testnet`` client
is served under a minimum it meets and gets no answer under one it does not.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from lumera_p2p.chain.registry import Supernode, SupernodeState
from lumera_p2p.chain.static_registry import StaticRegistry
from lumera_p2p.config import DEFAULT_P2P_VERSION, config_from_mapping
from lumera_p2p.kademlia.node import hash_id
from lumera_p2p.localnet import free_ports
from lumera_p2p.secure.handshake import (
    HandshakeInfo,
    PeerType,
    expand_key,
    hkdf_info,
    read_message,
    shared_secret,
    verify_peer,
)
from lumera_p2p.secure.record import RecordCrypto, RecordReader, Side
from lumera_p2p.service import P2P
from lumera_p2p.wire.messages import HEADER_SIZE, Message, MessageType, decode_message, parse_header
from tests.secure.go_sessions import (
    AppMessage,
    Session,
    assert_data,
    go_writes,
    session_files,
    session_params,
)

HOST = "127.0.0.1"
TIMEOUT = 20.0


@pytest.fixture(params=session_params())
def session(request: pytest.FixtureRequest) -> Session:
    path: Path = request.param
    return Session(path)


@asynccontextmanager
async def running_node(session: Session, tmp_path: Path, **p2p: Any) -> AsyncIterator[P2P]:
    """Our full node, as the session's server, admitting the client as the mock chain did."""
    port = free_ports(1)[0]
    config = config_from_mapping(
        {
            "key_name": "server",
            "p2p": {"listen_address": HOST, "port": port, "data_dir": "data", **p2p},
        },
        tmp_path,
    )
    chain = session.verifier()
    registry = StaticRegistry(
        # The client's advertised port (4445) is never dialled: loopback peers are not
        # bootstrap candidates unless allow_private_peers is set.
        [
            Supernode(address, SupernodeState.ACTIVE, HOST, port, state_height=1)
            for address in sorted(chain.supernodes)
        ],
        accounts=chain.accounts,
    )
    node = await P2P.create(config, registry=registry, key=session.server.key)
    try:
        await node.start()
        yield node
    finally:
        await node.stop()


class GoClient:
    """The recorded Go client, speaking its recorded bytes to our node."""

    def __init__(self, session: Session, reader: asyncio.StreamReader, writer: Any) -> None:
        self.session = session
        self.reader = reader
        self.writer = writer
        self.crypto: RecordCrypto | None = None
        self.records: RecordReader | None = None

    @classmethod
    async def connect(cls, session: Session, port: int) -> GoClient:
        reader, writer = await asyncio.open_connection(HOST, port)
        return cls(session, reader, writer)

    async def handshake(self) -> tuple[HandshakeInfo, bytes]:
        """Send Go's HS1 as recorded; return our node's HS2 (parsed) and its raw info bytes."""
        self.writer.write(self.session.hs1)
        await self.writer.drain()
        info, signature = await read_message(self.reader)
        parsed = HandshakeInfo.decode(info)
        peer = await verify_peer(parsed, info, signature, self.session.verifier())
        assert peer.address == self.session.server.address
        secret = shared_secret(self.session.client.ephemeral, peer.ephemeral_public)
        key = expand_key(secret, hkdf_info(self.session.client.address, peer.address))
        # Our node drew a fresh ephemeral key, so the session key is not the recorded one.
        assert key != self.session.key_material
        self.crypto = RecordCrypto(key, Side.CLIENT)
        self.records = RecordReader(self.crypto)
        return parsed, info

    def send(self, message: AppMessage) -> None:
        """The recorded plaintext, sealed under our session key in Go's 4,072-byte frames."""
        assert self.crypto is not None
        for chunk in go_writes(self.crypto, message.plaintext):
            self.writer.write(chunk)

    async def plaintext(self, n: int) -> bytes:
        """Exactly ``n`` decrypted bytes from our node."""
        records = self.records
        assert records is not None
        out = bytearray()
        while len(out) < n:
            data = records.read(n - len(out))
            if data is not None:
                out += data
                continue
            chunk = await self.reader.read(65536)
            assert chunk, f"the node closed after {len(out)} of {n} bytes"
            records.feed(chunk)
        return bytes(out)

    async def answer(self) -> Message:
        """One Kademlia frame from the node, decoded."""
        header = await self.plaintext(HEADER_SIZE)
        body = await self.plaintext(parse_header(header))
        return decode_message(header + body)

    async def closed(self) -> bool:
        """True once the node closed without sending anything (EOF or reset)."""
        try:
            data = await self.reader.read(65536)
        except ConnectionResetError:
            return True
        assert data == b"", f"the node sent {len(data)} bytes instead of closing"
        return True

    def close(self) -> None:
        self.writer.close()


def kademlia_requests(session: Session) -> list[AppMessage]:
    return [
        m
        for m in session.messages("client_to_server")
        if m.decoded_by_go is not None and not m.kind.endswith("response")
    ]


def go_answer_to(session: Session, request: AppMessage) -> dict[str, Any]:
    """What Go's server answered to ``request`` (the next server-to-client message)."""
    messages = session.messages()
    index = next(i for i, m in enumerate(messages) if m.raw["index"] == request.raw["index"])
    answer = next(m for m in messages[index + 1 :] if m.direction == "server_to_client")
    assert answer.decoded_by_go is not None
    return answer.decoded_by_go


async def wait_for(condition: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(TIMEOUT):
        while not condition():
            await asyncio.sleep(0.01)
    assert condition(), what


async def test_go_client_bytes_against_our_node(session: Session, tmp_path: Path) -> None:
    async with asyncio.timeout(TIMEOUT), running_node(session, tmp_path) as node:
        client = await GoClient.connect(session, node.port)
        try:
            hs2, _ = await client.handshake()
            # Our HS2 is what Go's server sent, but for the ephemeral key.
            recorded = HandshakeInfo.decode(
                bytes.fromhex(session.hello["server_hello"]["handshake_info_hex"])
            )
            assert (hs2.address, hs2.peer_type, hs2.account_public_key, hs2.curve) == (
                recorded.address,
                PeerType.SUPERNODE,
                recorded.account_public_key,
                recorded.curve,
            )
            if session.refused_by == "server":
                # Go's client sends its Ping anyway (it cannot know); nothing comes back.
                client.writer.write(session.chunks("client_to_server")[1])
                assert await client.closed()
                await wait_for(
                    lambda: node.server is not None and node.server.stats.handshake_failures >= 1,
                    "the node counted the refused handshake",
                )
                return
            # Sessions without Kademlia messages (raw fragmentation) end with the handshake.
            for request in kademlia_requests(session):
                client.send(request)
                answer = await client.answer()
                await check_answer(session, node, request, answer)
        finally:
            client.close()


async def check_answer(session: Session, node: P2P, request: AppMessage, answer: Message) -> None:
    go = go_answer_to(session, request)
    asked = decode_message(request.plaintext)
    assert answer.message_type == asked.message_type == go["MessageType"]
    assert (answer.correlation_id, answer.origin) == (go["CorrelationID"], go["Origin"])
    sender, receiver = answer.sender, answer.receiver
    assert sender is not None and receiver is not None
    # From our node's identity, with our advertised version and real port; Go's test server
    # advertised port 4446 and its own build's version.
    assert sender.id == node.address.encode() == session.server.address.encode()
    assert sender.id.decode() == go["Sender"]["ID"] and sender.ip == go["Sender"]["IP"] == HOST
    assert (sender.port, sender.version) == (node.port, DEFAULT_P2P_VERSION)
    assert sender.hashed_id == hash_id(sender.id)
    # To the requester as it described itself, as Go answers (we always add the HashedID).
    assert asked.sender is not None
    want = go["Receiver"]
    assert (receiver.id.decode(), receiver.ip, receiver.port, receiver.version) == (
        want["ID"],
        want["IP"],
        want["Port"],
        want["Version"],
    )
    assert receiver.hashed_id == hash_id(asked.sender.id)
    assert_data(go["Data"], answer.data, f"answer to {request.kind}")


@pytest.mark.parametrize(("minimum", "served"), [("v2.6.2", True), ("v2.7.0", False)])
async def test_minimum_version_against_go_bytes(minimum: str, served: bool, tmp_path: Path) -> None:
    """Go's client advertises v2.6.2-testnet: admitted at v2.6.2, silently dropped at v2.7.0."""
    pings = [
        (one, m)
        for one in map(Session, session_files())
        if one.refused_by is None
        for m in kademlia_requests(one)
        if decode_message(m.plaintext).message_type == MessageType.PING
    ]
    if not pings:
        pytest.skip("no recorded session with a Ping")
    session, ping = pings[0]
    async with (
        asyncio.timeout(TIMEOUT),
        running_node(session, tmp_path, min_peer_version=minimum) as node,
    ):
        client = await GoClient.connect(session, node.port)
        try:
            await client.handshake()
            client.send(ping)
            if served:
                answer = await client.answer()
                assert answer.message_type == MessageType.PING
                assert answer.sender is not None and answer.sender.id == node.address.encode()
            else:
                assert await client.closed()
        finally:
            client.close()
