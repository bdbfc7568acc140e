"""Failed handshakes are counted by reason and warned about at most once a minute (with how
many were held back), against a real server on 127.0.0.1; the throttle on a virtual clock."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

import pytest

from lumera_p2p.errors import LumeraP2PError
from lumera_p2p.log_throttle import LogThrottle
from lumera_p2p.net.limits import ServerLimits
from lumera_p2p.net.tcp import REFUSAL_WARNING_INTERVAL, TcpServer
from lumera_p2p.net.virtual_time import VirtualClock
from lumera_p2p.secure import StaticPeerVerifier, secure_connect
from tests.support import eventually, peer_closed

from .conftest import SERVER_KEY, EchoHandler, make_key

pytestmark = pytest.mark.timeout(60)

STRANGER = make_key("net-test stranger")  # a valid key the registry does not list


def test_the_throttle_logs_once_per_interval_and_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = VirtualClock()
    throttle = LogThrottle(logging.getLogger("t"), 60.0, clock=lambda: clock.now)
    with caplog.at_level(logging.WARNING, logger="t"):
        assert throttle.log("refused %s", "a")
        for _ in range(4):
            clock.now += 10
            assert not throttle.log("refused %s", "b")
        assert throttle.held == 4
        clock.now += 20.5  # 60.5 s after the first
        assert throttle.log("refused %s", "c")
        assert throttle.held == 0
        clock.now += 61
        assert throttle.log("refused %s", "d")
    assert [r.getMessage() for r in caplog.records] == [
        "refused a",
        "refused c (4 more in the last 60 s)",
        "refused d",
    ]


class Clock:
    """A wall clock the test moves (the server's rate limits and its warning throttle)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_each_reason_is_counted_and_warned_about_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    limits = ServerLimits(handshake_timeout=0.5, first_byte_timeout=0.4)
    server = TcpServer(
        EchoHandler(),
        "127.0.0.1",
        0,
        SERVER_KEY,
        StaticPeerVerifier([SERVER_KEY.address]),
        limits=limits,
        clock=clock,
    )
    await server.start()
    stats = server.stats

    async def raw(payload: bytes, close: bool) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(payload)
        await writer.drain()
        if close:
            writer.close()
        else:
            assert await peer_closed(reader, timeout=20)  # the server gives up on it
            writer.close()

    async def stranger() -> None:
        # The client's side may complete before the server refuses it: either way, closed.
        with contextlib.suppress(LumeraP2PError, OSError):
            stream = await secure_connect(
                "127.0.0.1",
                server.port,
                STRANGER,
                SERVER_KEY.address,
                StaticPeerVerifier([SERVER_KEY.address]),
                timeout=10,
            )
            stream.abort()

    def count(reason: str) -> int:
        return stats.handshake_failures_by_reason.get(reason, 0)

    try:
        with caplog.at_level(logging.WARNING, logger="lumera_p2p.net.tcp"):
            await stranger()
            await eventually(lambda: count("rejected") == 1, what="a rejected handshake")
            await stranger()
            await eventually(lambda: count("rejected") == 2, what="a second one")
            await raw(b"\x01", close=False)  # one byte, then silence: the handshake times out
            await eventually(lambda: count("timeout") == 1, what="a timed-out handshake")
            await raw(b"\x00\x00\x00\x08" + os.urandom(8), close=False)  # garbled
            await eventually(
                lambda: count("malformed") + count("timeout") == 2, what="a garbled handshake"
            )
            garbled_as = count("malformed")
            await raw(b"\x00\x00", close=True)  # hung up inside the length: truncated
            await eventually(
                lambda: count("malformed") == garbled_as + 1, what="a truncated handshake"
            )
            warned = [r.getMessage() for r in caplog.records if r.name == "lumera_p2p.net.tcp"]
            assert len(warned) == 1 and "(rejected)" in warned[0], warned

            clock.now += REFUSAL_WARNING_INTERVAL + 1
            await stranger()
            await eventually(lambda: count("rejected") == 3, what="a third rejection")
            await eventually(
                lambda: len([r for r in caplog.records if r.name == "lumera_p2p.net.tcp"]) == 2,
                what="the second warning",
            )
        second = [r.getMessage() for r in caplog.records if r.name == "lumera_p2p.net.tcp"][1]
        assert "more in the last 60 s" in second, second
        assert stats.handshake_failures == sum(stats.handshake_failures_by_reason.values())
    finally:
        await server.close()
