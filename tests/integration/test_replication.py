"""Replication between real nodes: secure channel, gob frames, SQLite, 127.0.0.1 sockets.

The rounds are run by hand where a test needs one step at a time (the loops' intervals are
an hour, so only the rounds the test runs happen); the fetch soon after an announcement and
the fetch at start run by themselves where a test says so.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import yaml

from lumera_p2p.config import Config, load_config
from lumera_p2p.content import digest
from lumera_p2p.dht.plans import Announcement, AnnouncePlan
from lumera_p2p.localnet import create_localnet, start_nodes
from lumera_p2p.service import P2P
from tests.support import eventually, full_tables

pytestmark = [pytest.mark.timeout(240), pytest.mark.asyncio]

HOUR = 3600.0


def _configs(directory: Path, count: int, **replication: Any) -> list[Config]:
    """A local network whose replication rounds all wait an hour unless ``replication`` says
    otherwise."""
    local = create_localnet(directory, count)
    configs = []
    for node in local:
        doc = yaml.safe_load(node.config_path.read_text())
        doc["replication"] = {
            "interval": HOUR,
            "activity_interval": HOUR,
            "fetch_interval": HOUR,
            "fetch_delay": HOUR,
            "failed_fetch_interval": HOUR,
            "disabled_key_cleanup_interval": HOUR,
            "redundant_scan_interval": HOUR,
            **replication,
        }
        node.config_path.write_text(yaml.safe_dump(doc, sort_keys=False))
        configs.append(load_config(node.config_path))
    return configs


async def _network(configs: list[Config]) -> list[P2P]:
    nodes = await start_nodes(configs)
    await full_tables(nodes)
    return nodes


@pytest.fixture
async def stopper() -> AsyncIterator[Callable[[list[P2P]], None]]:
    """Register nodes to stop at the end, whatever the test did with them."""
    started: list[P2P] = []
    yield started.extend
    await asyncio.gather(*(n.stop() for n in started), return_exceptions=True)


def _values(count: int, size: int = 2000) -> dict[bytes, bytes]:
    values = [os.urandom(size) for _ in range(count)]
    return {digest(v): v for v in values}


async def _held(node: P2P, keys: list[bytes]) -> int:
    return len(keys) - len(await node.db.missing(keys))


async def test_announced_keys_are_fetched_hash_checked_and_stored(
    tmp_path: Path, stopper: Callable[[list[P2P]], None]
) -> None:
    """A's push cycle announces its keys to B; B fetches them soon after, by itself."""
    a, b = await _network(_configs(tmp_path, 2, fetch_delay=0.2))
    stopper([a, b])
    values = _values(60)
    keys = sorted(values)
    await a.db.store_batch(list(values.items()))
    assert await _held(b, keys) == 0
    report = await a.replicator.replicate()
    assert report.keys_announced == len(keys)
    assert report.failed_peers == []

    async def all_fetched() -> bool:
        return await _held(b, keys) == len(keys) and await b.db.replication_key_count() == 0

    await eventually(all_fetched, timeout=60.0, what="B holding every key, nothing pending")
    for key in keys[:5]:
        assert await b.node.retrieve(key, local_only=True) == values[key]
    stats = await b.replicator.stats()
    assert stats.keys_fetched == len(keys)
    assert stats.poisoned_values == 0
    # A second cycle announces nothing again: B's cursor moved past every key.
    again = await a.replicator.replicate()
    assert again.keys_announced == 0


async def test_a_wrong_value_is_refused_its_sender_banned_and_an_alternate_asked(
    tmp_path: Path, stopper: Callable[[list[P2P]], None]
) -> None:
    """R serves a value that does not hash to its key: B refuses it, bans R and gets the
    right value from A, a node nearest the key."""
    a, b, r = await _network(_configs(tmp_path, 3))
    stopper([a, b, r])
    values = _values(1)
    [(key, value)] = values.items()
    await a.db.store_batch([(key, value)])
    await r.db.store_batch([(key, value)])
    # R's copy goes bad under the store (a corrupt disk or a lying peer: the same to B).
    with closing(sqlite3.connect(r.db.data_path)) as raw, raw:
        raw.execute("UPDATE data SET data = ? WHERE key = ?", (b"not the value", key.hex()))
    assert await r.node.retrieve(key, local_only=True) == b"not the value"

    outcome = await r.node.run(AnnouncePlan([Announcement(b.me, [key])], rng=random.Random(1)))
    assert outcome.keys_acknowledged == 1
    assert await b.db.replication_key_count() == 1

    first = await b.replicator.fetch_pending()
    assert (first.fetched, first.failed) == (0, 1)
    assert b.node.is_banned(r.me.hashed_id)
    assert not b.node.knows(r.me.hashed_id)
    assert await b.db.missing([key]) == [key]  # nothing stored
    assert (await b.replicator.stats()).poisoned_values == 1
    # The banned announcer is never asked again: the key moves on to the alternates.
    second = await b.replicator.fetch_pending()
    assert (second.fetched, second.failed) == (0, 1)
    retried = await b.replicator.fetch_failed()
    assert retried.fetched == 1
    assert await b.node.retrieve(key, local_only=True) == value
    assert await b.db.replication_key_count() == 0
    # A ping from R does not lift the ban, and R's announcements no longer reach B's table.
    assert await r.node.ping(b.me)
    assert b.node.is_banned(r.me.hashed_id)


async def test_a_restart_mid_repair_loses_nothing_and_resumes(
    tmp_path: Path, stopper: Callable[[list[P2P]], None]
) -> None:
    """B has fetched a tenth of an announced backlog when it stops; after the restart its
    first fetch round takes up the rest, and every value committed before is still there."""
    configs = _configs(tmp_path, 2, fetch_rows=50, fetch_batch_keys=25)
    a, b = await _network(configs)
    stopper([a])
    values = _values(500, size=1000)
    keys = sorted(values)
    await a.db.store_batch(list(values.items()))
    report = await a.replicator.replicate()
    assert report.keys_announced == len(keys)
    first = await b.replicator.fetch_pending()
    assert first.fetched == 50
    # Another round is under way when the node stops.
    round_two = asyncio.ensure_future(b.replicator.fetch_pending())
    await asyncio.sleep(0)
    await b.stop()
    round_two.cancel()
    await asyncio.gather(round_two, return_exceptions=True)

    # Read the files themselves: what was committed is there, the rest is still pending.
    with closing(sqlite3.connect(f"file:{b.db.data_path}?mode=ro", uri=True)) as raw:
        stored = {bytes.fromhex(k) for (k,) in raw.execute("SELECT key FROM data")}
        pending = {bytes.fromhex(k) for (k,) in raw.execute("SELECT key FROM replication_keys")}
    assert len(stored) >= 50
    assert stored | pending == set(keys)
    assert len(pending) == len(keys) - len(stored) > 0

    again = await P2P.create(configs[1])
    stopper([again])
    await again.start()  # its first fetch round runs at once and goes on while rounds fill

    async def resumed() -> bool:
        return await _held(again, keys) == len(keys) and await again.db.replication_key_count() == 0

    await eventually(resumed, timeout=120.0, what="the backlog fetched after the restart")
    for key in keys[::50]:
        assert await again.node.retrieve(key, local_only=True) == values[key]
