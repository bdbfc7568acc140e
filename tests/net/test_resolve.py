"""resolve_hosts: the addresses of the registry's hosts (no lookups beyond /etc/hosts here)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lumera_p2p.net.resolve import resolve_hosts


async def test_literals_are_taken_as_they_are() -> None:
    hosts = ["10.0.0.1", "[2001:db8::1]", "2001:db8:0:0::2"]
    assert await resolve_hosts(hosts) == {"10.0.0.1", "2001:db8::1", "2001:db8::2"}
    assert await resolve_hosts([]) == set()


async def test_names_resolve() -> None:
    assert "127.0.0.1" in await resolve_hosts(["localhost", "10.0.0.1"])


async def test_a_name_that_does_not_answer_is_left_out(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    loop = asyncio.get_running_loop()

    async def hang(*args: Any, **kwargs: Any) -> list[Any]:
        await asyncio.sleep(3600)
        return []

    monkeypatch.setattr(loop, "getaddrinfo", hang)
    assert await resolve_hosts(["node.example", "10.0.0.3"], timeout=0.05) == {"10.0.0.3"}
    assert "node.example does not resolve" in caplog.text
