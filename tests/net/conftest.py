"""Keys, a tiny request handler and server helpers for the transport tests (no DHT needed)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from lumera_p2p.errors import ProtocolError
from lumera_p2p.identity.keys import PrivateKey
from lumera_p2p.kademlia import Contact
from lumera_p2p.net.limits import ServerLimits
from lumera_p2p.net.tcp import TcpServer
from lumera_p2p.secure import StaticPeerVerifier
from lumera_p2p.wire.messages import (
    FindValueRequest,
    FindValueResponse,
    Message,
    MessageType,
    Node,
    ResponseStatus,
    StoreDataRequest,
    StoreDataResponse,
)
from tests.support import settle


def make_key(label: str) -> PrivateKey:
    """A deterministic test key."""
    return PrivateKey(hashlib.sha256(label.encode()).digest())


SERVER_KEY = make_key("net-test server")
CLIENT_KEY = make_key("net-test client")
ROGUE_KEY = make_key("net-test rogue")  # registered, but misbehaves at the frame level


@pytest.fixture
def verifier() -> StaticPeerVerifier:
    return StaticPeerVerifier([SERVER_KEY.address, CLIENT_KEY.address, ROGUE_KEY.address])


def ping(sender: PrivateKey = CLIENT_KEY) -> Message:
    return Message(sender=Node(id=sender.address.encode()), message_type=MessageType.PING)


def command(cmd: str, sender: PrivateKey = CLIENT_KEY) -> Message:
    """A FindValue whose target tells :class:`EchoHandler` what to do."""
    return Message(
        sender=Node(id=sender.address.encode()),
        message_type=MessageType.FIND_VALUE,
        data=FindValueRequest(target=cmd.encode()),
    )


@dataclass
class EchoHandler:
    """Answers Ping; a FindValue target is a command: ``wait:<gate>`` (answer once the test
    opens that gate: ``handler.gate(name).set()``), ``size:<n>`` (a value of ``n`` bytes),
    ``protocol-error``, ``crash``; StoreData answers with the data's length. ``drop_next``
    makes the next that many requests raise ``ProtocolError`` (connection closed).
    ``log`` records ``begin <command>`` and ``end <command>`` in the order they happen.
    """

    key: PrivateKey = SERVER_KEY
    seen: list[tuple[int, bytes]] = field(default_factory=list)
    drop_next: int = 0
    log: list[str] = field(default_factory=list)
    gates: dict[str, asyncio.Event] = field(default_factory=dict)

    def gate(self, name: str) -> asyncio.Event:
        """The event a ``wait:<name>`` request waits for (never set unless a test sets it)."""
        return self.gates.setdefault(name, asyncio.Event())

    def began(self, command: str) -> bool:
        return f"begin {command}" in self.log

    async def __call__(self, request: Message, peer_id: bytes) -> Message:
        self.seen.append((request.message_type, peer_id))
        if self.drop_next:
            self.drop_next -= 1
            raise ProtocolError("told to drop this one")
        data: Any = None
        if isinstance(request.data, FindValueRequest):
            text = request.data.target.decode()
            cmd, _, arg = text.partition(":")
            self.log.append(f"begin {text}")
            if cmd == "wait":
                try:
                    await self.gate(arg).wait()
                finally:
                    self.log.append(f"end {text}")
            elif cmd == "protocol-error":
                raise ProtocolError("the test says this request breaks the protocol")
            elif cmd == "crash":
                raise RuntimeError("handler bug")
            data = FindValueResponse(value=b"v" * int(arg) if cmd == "size" else b"")
        elif isinstance(request.data, StoreDataRequest):
            data = StoreDataResponse(ResponseStatus(err_msg=str(len(request.data.data))))
        return Message(
            sender=Node(id=self.key.address.encode(), ip="127.0.0.1"),
            receiver=request.sender,
            message_type=request.message_type,
            data=data,
        )


def contact(server: TcpServer, key: PrivateKey = SERVER_KEY) -> Contact:
    return Contact(key.address.encode(), "127.0.0.1", server.port)


#: Small limits so that every abuse is detected within a second.
FAST_LIMITS = ServerLimits(handshake_timeout=0.5, idle_timeout=2.0, frame_grace=0.5)


@pytest.fixture
def handler() -> EchoHandler:
    return EchoHandler()


@pytest.fixture
async def server(handler: EchoHandler, verifier: StaticPeerVerifier) -> AsyncIterator[TcpServer]:
    srv = TcpServer(handler, "127.0.0.1", 0, SERVER_KEY, verifier, limits=FAST_LIMITS)
    await srv.start()
    yield srv
    await srv.close()


@pytest.fixture(autouse=True)
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """Anything the event loop would log as an unhandled error fails the test."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    yield errors
    await settle()  # callbacks scheduled by the test's last steps run (and may log) first
    loop.set_exception_handler(None)
    assert not errors, errors
