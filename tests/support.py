"""Helpers shared by several test packages."""

from __future__ import annotations

import asyncio


async def peer_closed(reader: asyncio.StreamReader, timeout: float = 5.0) -> bool:
    """True once the other end has closed (EOF or reset), reading and discarding until then."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                if not await reader.read(65536):
                    return True
            except ConnectionError:
                return True
