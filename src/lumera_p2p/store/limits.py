"""The data database's limits: stored value bytes, and announced keys per peer and in all.

Each function runs inside a writer job, on the writer's connection, against the running totals
of a :class:`~.tally.Tally` (loaded once at open by :func:`load_totals`), so a limit costs an
indexed lookup of the keys being written, never a ``SUM`` or ``COUNT`` over the table.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from lumera_p2p.errors import StorageFull
from lumera_p2p.store import schema
from lumera_p2p.store.tally import Tally

DATA_BYTES = "data_bytes"
REPLICATION_KEYS = "replication_keys"
_PEER_PREFIX = "replication_keys:"

#: ``replication_keys`` rows one announcing peer may have pending, by default.
DEFAULT_MAX_REPLICATION_KEYS_PER_PEER = 100_000
#: ``replication_keys`` rows in all, by default.
DEFAULT_MAX_REPLICATION_KEYS = 1_000_000

#: A row for ``replication_keys``: (hex key, announcer id, ip, port, updatedAt).
ReplicationRow = tuple[str, str, str, int, str]


@dataclass(frozen=True)
class StoreLimits:
    """Caps on the data database; ``0`` means no limit."""

    #: Bytes of stored values (the sum of ``length(data)``) past which new values are refused.
    max_storage_bytes: int = 0
    #: ``replication_keys`` rows one announcing peer may have pending.
    max_replication_keys_per_peer: int = DEFAULT_MAX_REPLICATION_KEYS_PER_PEER
    #: ``replication_keys`` rows in all.
    max_replication_keys: int = DEFAULT_MAX_REPLICATION_KEYS

    def __post_init__(self) -> None:
        for name in ("max_storage_bytes", "max_replication_keys_per_peer", "max_replication_keys"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer ≥ 0 (0: no limit), got {value!r}")

    @property
    def counts_bytes(self) -> bool:
        """Whether the stored bytes are counted (only when they are limited)."""
        return self.max_storage_bytes > 0


def peer_counter(peer_id: str) -> str:
    """The tally counter of one announcer's pending keys."""
    return _PEER_PREFIX + peer_id


def _marks(chunk: Sequence[str]) -> str:
    return ",".join("?" * len(chunk))


def load_totals(conn: sqlite3.Connection, limits: StoreLimits) -> dict[str, int]:
    """The running totals as stored now (once, at open, before the writer starts)."""
    initial: dict[str, int] = {}
    if limits.counts_bytes:
        row = conn.execute("SELECT COALESCE(SUM(length(data)), 0) FROM data").fetchone()
        initial[DATA_BYTES] = int(row[0])
    total = 0
    for peer_id, count in conn.execute("SELECT id, COUNT(*) FROM replication_keys GROUP BY id"):
        initial[peer_counter(str(peer_id))] = int(count)
        total += int(count)
    initial[REPLICATION_KEYS] = total
    return initial


def admit_values(
    conn: sqlite3.Connection, tally: Tally, limits: StoreLimits, sizes: dict[str, int]
) -> int:
    """The bytes that storing ``sizes`` (hex key → value length) adds; raise ``StorageFull``.

    A key already stored adds nothing (values are content-addressed), so re-storing held
    values always succeeds, even on a full node. Refuses the whole batch when it does not fit:
    a peer is answered Failed for all of it, and tries another node.
    """
    if not limits.counts_bytes:
        return 0
    keys = list(sizes)
    held: dict[str, int] = {}
    for chunk in schema.chunks(keys):
        held.update(
            conn.execute(
                f"SELECT key, length(data) FROM data WHERE key IN ({_marks(chunk)})", chunk
            ).fetchall()
        )
    growth = sum(size - held.get(key, 0) for key, size in sizes.items())
    stored = tally.current(DATA_BYTES)
    if growth > 0 and stored + growth > limits.max_storage_bytes:
        raise StorageFull(
            f"node is full: {growth:,} more bytes would pass max_storage_bytes "
            f"({limits.max_storage_bytes:,}; {stored:,} stored)"
        )
    return growth


def stored_bytes(conn: sqlite3.Connection, hex_keys: Sequence[str]) -> int:
    """The value bytes stored under ``hex_keys`` (what deleting them frees)."""
    total = 0
    for chunk in schema.chunks(hex_keys):
        row = conn.execute(
            f"SELECT COALESCE(SUM(length(data)), 0) FROM data WHERE key IN ({_marks(chunk)})",
            chunk,
        ).fetchone()
        total += int(row[0])
    return total


def admit_replication_keys(
    conn: sqlite3.Connection, tally: Tally, limits: StoreLimits, rows: Sequence[ReplicationRow]
) -> tuple[list[ReplicationRow], dict[str, int]]:
    """The rows within the caps, and the change to each counter if they are written.

    A key its announcer already has pending is always taken (the re-announcement resets its
    attempts). A new key, or one moving to this announcer from another, is taken while the
    announcer is under ``max_replication_keys_per_peer`` and (for a new key) the table under
    ``max_replication_keys``; past that it is dropped.
    """
    holders: dict[str, str] = {}
    keys = [row[0] for row in rows]
    for chunk in schema.chunks(keys):
        holders.update(
            conn.execute(
                f"SELECT key, id FROM replication_keys WHERE key IN ({_marks(chunk)})", chunk
            ).fetchall()
        )
    per_peer = limits.max_replication_keys_per_peer
    in_all = limits.max_replication_keys
    changes: dict[str, int] = {}
    accepted: list[ReplicationRow] = []
    for row in rows:
        key, peer_id = row[0], row[1]
        holder = holders.get(key)
        if holder != peer_id:
            counter = peer_counter(peer_id)
            pending = tally.current(counter) + changes.get(counter, 0)
            if per_peer and pending >= per_peer:
                continue
            if holder is None:
                total = tally.current(REPLICATION_KEYS) + changes.get(REPLICATION_KEYS, 0)
                if in_all and total >= in_all:
                    continue
                changes[REPLICATION_KEYS] = changes.get(REPLICATION_KEYS, 0) + 1
            else:
                old = peer_counter(holder)
                changes[old] = changes.get(old, 0) - 1
            changes[counter] = changes.get(counter, 0) + 1
            holders[key] = peer_id
        accepted.append(row)
    return accepted, changes


def forget_replication_keys(conn: sqlite3.Connection, hex_keys: Sequence[str]) -> dict[str, int]:
    """The change to each counter if the ``replication_keys`` rows of ``hex_keys`` go."""
    changes: dict[str, int] = {}
    for chunk in schema.chunks(hex_keys):
        for peer_id, count in conn.execute(
            f"SELECT id, COUNT(*) FROM replication_keys WHERE key IN ({_marks(chunk)}) GROUP BY id",
            chunk,
        ):
            counter = peer_counter(str(peer_id))
            changes[counter] = changes.get(counter, 0) - int(count)
            changes[REPLICATION_KEYS] = changes.get(REPLICATION_KEYS, 0) - int(count)
    return changes


def apply(tally: Tally, changes: dict[str, int]) -> None:
    """Count ``changes`` in the open transaction (a job's last step)."""
    for name, delta in changes.items():
        tally.add(name, delta)
