"""The IP addresses of a set of hosts (IP literals as they are, names through the resolver),
for the server's list of addresses that may connect (``server.registered_addresses_only``)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Iterable

log = logging.getLogger(__name__)


async def resolve_hosts(hosts: Iterable[str], timeout: float = 5.0) -> set[str]:
    """Every address of ``hosts``; a name that does not resolve within ``timeout`` seconds is
    left out (and logged): its node cannot connect until it does."""
    addresses: set[str] = set()
    names: list[str] = []
    for host in hosts:
        text = host.strip("[]")
        try:
            addresses.add(str(ipaddress.ip_address(text)))
        except ValueError:
            names.append(text)
    if not names:
        return addresses
    loop = asyncio.get_running_loop()

    async def one(name: str) -> set[str]:
        try:
            async with asyncio.timeout(timeout):
                infos = await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError) as exc:
            log.warning("registered host %s does not resolve: %s", name, exc)
            return set()
        return {str(info[4][0]) for info in infos}

    for found in await asyncio.gather(*(one(n) for n in set(names))):
        addresses |= found
    return addresses
