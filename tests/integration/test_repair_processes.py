"""Repair across real processes (issue 11): 24 ``lumera-p2p run`` nodes with a 10-second push
cycle hold 500 values; 8 are killed with SIGKILL; every key must be back on at least 6 live
nodes; then 8 fresh nodes start and must receive their share (each key on its 6 nearest
live nodes). ``slow``: 32 node processes take a while to start on two cores.

Where each value is, is read from each node's own SQLite file (read-only; WAL lets a reader
in beside the node's writer). The values come from a client in the test's process, an
account of the registry but not a supernode, so it never holds a replica the count sees.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path

import pytest

from lumera_p2p.chain.registry import Supernode, SupernodeState
from lumera_p2p.chain.static_registry import StaticRegistry
from lumera_p2p.content import digest
from lumera_p2p.dht import DHTOptions, MemoryStore, Node
from lumera_p2p.identity.keys import PrivateKey
from lumera_p2p.kademlia import Contact, hash_id
from lumera_p2p.localnet import FAST_REPLICATION, HOST, LocalNode, create_localnet, free_ports
from lumera_p2p.net.tcp import TcpTransport
from lumera_p2p.secure import PeerType, StaticPeerVerifier
from tests.support import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

FIRST, KILLED, FRESH, VALUES, REPLICAS = 24, 8, 8, 500, 6
CYCLE = float(FAST_REPLICATION["interval"])


class Processes:
    """Node processes by name, each logging to a file of its own."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, node: LocalNode) -> None:
        log = (self.directory / f"{node.name}.log").open("wb")
        self.running[node.name] = subprocess.Popen(
            [sys.executable, "-m", "lumera_p2p", "run", "--config", str(node.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def listening(self, node: LocalNode) -> bool:
        path = self.directory / f"{node.name}.log"
        return path.exists() and b"listening on" in path.read_bytes()

    def kill(self, name: str) -> None:
        proc = self.running.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    def stop_all(self) -> None:
        for proc in self.running.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.running.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
        self.running.clear()


def held_keys(node: LocalNode) -> set[bytes]:
    path = node.config_path.parent / "data" / "data001.sqlite3"
    if not path.exists():
        return set()
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
            return {bytes.fromhex(k) for (k,) in db.execute("SELECT key FROM data")}
    except sqlite3.OperationalError:  # not created yet
        return set()


def nearest(key: bytes, nodes: list[LocalNode], n: int) -> list[str]:
    t = int.from_bytes(key, "big")
    ranked = sorted(nodes, key=lambda x: int.from_bytes(hash_id(x.address.encode()), "big") ^ t)
    return [x.name for x in ranked[:n]]


async def store_from_client(local: list[LocalNode], key: PrivateKey, values: list[bytes]) -> None:
    verifier = StaticPeerVerifier([n.address for n in local])
    transport = TcpTransport(key, verifier, peer_type=PeerType.SIMPLENODE)
    me = Contact(key.address.encode(), HOST, free_ports(1)[0])
    client = Node(me, MemoryStore(), transport, options=DHTOptions(allow_private=True))
    try:
        seeds = [Contact(n.address.encode(), n.host, n.port) for n in local]
        await client.bootstrap(seeds)
        for first in range(0, len(values), 100):
            report = await client.store_batch(values[first : first + 100])
            assert report.success_rate == 1.0, report
    finally:
        await client.close()
        await transport.close()


def test_sigkill_a_third_then_fresh_nodes(tmp_path: Path) -> None:
    local = create_localnet(tmp_path, FIRST + FRESH)
    client_key = PrivateKey.generate()[0]
    # Every node is registered from the start (a new supernode registers, then starts);
    # the client is an account, so the nodes accept its connections.
    StaticRegistry(
        [
            Supernode(n.address, SupernodeState.ACTIVE, n.host, n.port, state_height=1)
            for n in local
        ],
        accounts=[client_key.address],
    ).write(tmp_path / "registry.yml")
    first, fresh = local[:FIRST], local[FIRST:]
    procs = Processes(tmp_path)
    figures: dict[str, float] = {}
    try:
        for node in first:
            procs.start(node)
        deadline = time.monotonic() + 300
        while not all(procs.listening(n) for n in first):
            assert time.monotonic() < deadline, "nodes did not start"
            assert all(p.poll() is None for p in procs.running.values())
            time.sleep(0.2)

        rng = random.Random(11)
        values = [rng.randbytes(1000 + i) for i in range(VALUES)]
        keys = [digest(v) for v in values]
        asyncio.run(store_from_client(first, client_key, values))

        def replicas(nodes: list[LocalNode]) -> dict[bytes, int]:
            count = dict.fromkeys(keys, 0)
            for node in nodes:
                for key in held_keys(node) & count.keys():
                    count[key] += 1
            return count

        def wait(what: str, condition: Callable[[], Awaitable[bool]], timeout: float) -> float:
            started = time.monotonic()
            asyncio.run(eventually(condition, timeout=timeout, what=what))
            return time.monotonic() - started

        def all_at_least(nodes: list[LocalNode]) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                return min(replicas(nodes).values()) >= REPLICAS

            return check

        wait("every key on 6 nodes", all_at_least(first), 120.0)

        victims = rng.sample(first, KILLED)
        for node in victims:
            procs.kill(node.name)
        live = [n for n in first if n not in victims]
        after_kill = replicas(live)
        figures["keys_below_6_after_kill"] = sum(c < REPLICAS for c in after_kill.values())
        figures["min_replicas_after_kill"] = min(after_kill.values())
        assert figures["keys_below_6_after_kill"] > 0  # the kill took replicas away
        assert figures["min_replicas_after_kill"] > 0  # (seeded: no key lost all six)
        took = wait("every key back on 6 live nodes", all_at_least(live), 600.0)
        figures["repair_seconds"] = round(took, 1)
        figures["repair_cycles"] = round(took / CYCLE, 2)

        for node in fresh:
            procs.start(node)
        spawned_at = time.monotonic()
        while not all(procs.listening(n) for n in fresh):
            assert time.monotonic() < spawned_at + 300, "fresh nodes did not start"
            time.sleep(0.2)
        joined_at = time.monotonic()  # the share is timed from when they all listen
        figures["fresh_start_seconds"] = round(joined_at - spawned_at, 1)
        everyone = live + fresh

        async def shared() -> bool:
            holders = {n.name: held_keys(n) for n in everyone}
            return all(
                all(key in holders[name] for name in nearest(key, everyone, REPLICAS))
                for key in keys
            )

        wait("each key on its 6 nearest nodes, fresh ones included", shared, 600.0)
        figures["fresh_seconds"] = round(time.monotonic() - joined_at, 1)
        figures["fresh_cycles"] = round(figures["fresh_seconds"] / CYCLE, 2)
        figures["fresh_keys_held"] = sum(len(held_keys(n)) for n in fresh)
        assert all(held_keys(n) for n in fresh)
        print(f"\nrepair across processes: {figures}", file=sys.stderr)
    finally:
        procs.stop_all()
