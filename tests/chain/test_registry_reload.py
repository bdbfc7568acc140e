"""A registry read from a file follows it: a changed file is read again on the next
``list_supernodes``; a bad new version is warned about once and the old entries kept."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from lumera_p2p.chain import StaticRegistry, Supernode, SupernodeState
from lumera_p2p.identity.keys import address_from_bytes

A = address_from_bytes(b"\x01" * 20)
B = address_from_bytes(b"\x02" * 20)


def write(path: Path, *addresses: str) -> None:
    nodes = [
        Supernode(a, SupernodeState.ACTIVE, "127.0.0.1", 4445 + i, 0)
        for i, a in enumerate(addresses)
    ]
    StaticRegistry(nodes).write(path)
    bump(path)


def bump(path: Path) -> None:
    """A modification time after the last (a file system's clock can be coarse)."""
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))


async def test_a_changed_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "registry.yml"
    write(path, A)
    registry = StaticRegistry.from_file(path)
    assert [n.address for n in await registry.list_supernodes()] == [A]
    assert await registry.get_supernode(B) is None

    write(path, A, B)
    assert [n.address for n in await registry.list_supernodes()] == [A, B]
    assert (await registry.get_supernode(B)) is not None
    assert await registry.is_registered_supernode(B)

    write(path, B)
    assert [n.address for n in await registry.list_supernodes()] == [B]
    assert not await registry.is_registered_supernode(A)
    assert await registry.reload_if_changed() is False  # unchanged since: nothing read


async def test_a_bad_new_version_keeps_the_old_entries_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "registry.yml"
    write(path, A, B)
    registry = StaticRegistry.from_file(path)
    path.write_text("supernodes:\n  - address: nobody\n")
    bump(path)
    with caplog.at_level(logging.WARNING, logger="lumera_p2p.chain.static_registry"):
        for _ in range(3):
            assert [n.address for n in await registry.list_supernodes()] == [A, B]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "keeping the 2 supernodes" in warnings[0].getMessage()
    assert "supernodes[0]" in warnings[0].getMessage()

    path.unlink()  # gone for a moment (an editor's rename): the old entries stay
    assert len(await registry.list_supernodes()) == 2
    write(path, A)
    assert [n.address for n in await registry.list_supernodes()] == [A]


async def test_a_registry_made_in_memory_follows_no_file(tmp_path: Path) -> None:
    registry = StaticRegistry([Supernode(A, SupernodeState.ACTIVE, "127.0.0.1", 4445, 0)])
    assert await registry.reload_if_changed() is False
    assert [n.address for n in await registry.list_supernodes()] == [A]
