"""Many nodes: one process per node (``localnet --processes``), 64 in one process, and a small
network on uvloop. Every node on its own 127.0.0.x address; values go in through one random
node and come back through another."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from lumera_p2p.content import content_key, key_from_bytes
from lumera_p2p.eventloop import run_event_loop
from lumera_p2p.localnet import create_localnet, load_configs, start_nodes
from lumera_p2p.localnet_processes import spawn_nodes, stop_nodes
from lumera_p2p.service import P2P
from tests.support import eventually

pytestmark = pytest.mark.timeout(300)

#: Packages a node process must not import (issue 12: a node process stays <= 40 MiB RSS).
#: Each was measured at 1-8 MiB of RSS per process: the config loader's pydantic (the parent
#: validates and hands over a plain config), OpenSSL through cryptography (the handshake
#: uses pycryptodome; the record layer loads it only for frames of 16 KiB and more), and
#: the CLI, API and chain-client stacks a localnet node does not run.
HEAVY_FOR_A_NODE = {
    "pydantic",
    "pydantic_core",
    "cryptography",
    "typer",
    "rich",
    "click",
    "fastapi",
    "starlette",
    "aiohttp",
    "prometheus_client",
    "grpc",
    "google",
    "mnemonic",
    "email",
    "zoneinfo",
    "uvloop",  # asyncio's loop by default (localnet_processes.CHILD_LOOP)
    "ssl",  # and no OpenSSL (localnet_processes.NO_OPENSSL)
    "_ssl",
    "_hashlib",
}


async def _store_and_read_through_random_nodes(nodes: list[P2P], count: int, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(count):
        writer, reader = rng.sample(nodes, 2)
        value = os.urandom(1024)
        report = await writer.store_with_report(value)
        assert report.replicas == min(report.wanted, len(nodes) - 1), report
        assert await reader.retrieve(report.key) == value


async def test_node_processes_join_through_seeds_and_serve(tmp_path: Path) -> None:
    local = create_localnet(tmp_path, 6, seeds=2)
    assert len({n.host for n in local}) == 6
    assert all(len(n.seeds) == min(2, i) for i, n in enumerate(local[:2]))
    children = await spawn_nodes(local, parallel=3)
    try:
        assert len({c.pid for c in children}) == 6
        assert [c.local for c in children] == local
        rng = random.Random(3)
        for _ in range(8):
            writer, reader = rng.sample(children, 2)
            value = os.urandom(1024)
            key, replicas = await writer.store(value)
            assert replicas >= 1  # of five peers: every one that is store-eligible and known
            assert await reader.retrieve(key) == value
        missing = content_key(b"nobody stored this")
        assert await children[0].retrieve(missing) is None
        assert (await children[1].command("nonsense")).startswith("error ")
        for child in children:
            memory = child.memory()
            assert memory["Rss"] > 0 and memory["Pss"] > 0
        loaded = await children[2].modules()
        assert {"lumera_p2p", "asyncio", "sqlite3"} <= loaded  # the reply lists real imports
        assert not loaded & HEAVY_FOR_A_NODE, loaded & HEAVY_FOR_A_NODE
    finally:
        await stop_nodes(children)
    assert all(c.proc.returncode == 0 for c in children)  # each stopped cleanly on "quit"


@pytest.mark.slow
async def test_sixty_four_nodes_in_one_process_bootstrap_and_serve(tmp_path: Path) -> None:
    local = create_localnet(tmp_path, 64, fast_intervals=False)
    nodes = await start_nodes(load_configs(local))
    try:
        # All bootstrapped: every table holds peers beyond its one bucket of twenty.
        await eventually(
            lambda: all(n.node.peer_count > 20 for n in nodes),
            timeout=120.0,
            what="every routing table holding more than 20 peers",
        )
        assert len({n.me.ip for n in nodes}) == 64
        await _store_and_read_through_random_nodes(nodes, 64, seed=64)
    finally:
        await asyncio.gather(*(n.stop() for n in nodes), return_exceptions=True)


def test_a_network_on_uvloop_stores_and_reads(tmp_path: Path) -> None:
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> None:
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        nodes = await start_nodes(load_configs(create_localnet(tmp_path, 5)))
        try:
            await eventually(lambda: all(n.node.peer_count == 4 for n in nodes), what="full tables")
            await _store_and_read_through_random_nodes(nodes, 6, seed=5)
            values = [os.urandom(300) for _ in range(40)]
            report = await nodes[0].store_batch(values)
            assert min(report.replicas) >= 1
            found = await nodes[3].batch_retrieve([key_from_bytes(k) for k in report.keys])
            assert sorted(found.values()) == sorted(values)
        finally:
            await asyncio.gather(*(n.stop() for n in nodes), return_exceptions=True)

    run_event_loop(scenario(), "uvloop")


@pytest.mark.slow
async def test_node_processes_on_uvloop_keep_openssl_and_serve(tmp_path: Path) -> None:
    local = create_localnet(tmp_path, 3, seeds=1)
    children = await spawn_nodes(local, loop="uvloop")
    try:
        key, replicas = await children[0].store(b"on uvloop")
        assert replicas >= 1
        assert await children[2].retrieve(key) == b"on uvloop"
        assert {"uvloop", "ssl"} <= await children[1].modules()
    finally:
        await stop_nodes(children)
    assert all(c.proc.returncode == 0 for c in children)


def test_node_process_refuses_a_bad_loop_name(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lumera_p2p.localnet_child", str(tmp_path / "c.json"), "tokio"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "usage" in out.stderr and "asyncio" in out.stderr
