"""What the DHT needs from local storage, and an in-memory implementation for simulation.

:class:`lumera_p2p.store.LocalStore` (SQLite) satisfies :class:`ValueStore` and
:class:`ReplicationStore`; the simulator uses :class:`MemoryStore` so that a thousand nodes fit
in one process without a thousand databases. Both check every value against its key on the way
in, with the same :func:`~lumera_p2p.store.local.pair_with_keys`, and both keep the replication
tables (``replication_info``, ``replication_keys``, ``del_keys``) with the same rules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from lumera_p2p.store.local import (
    DEFAULT_DISABLED_KEY_TTL,
    MAX_VALUE_SIZE,
    ReplicationInfo,
    ReplicationKey,
    pair_with_keys,
)
from lumera_p2p.store.timefmt import utcnow


class ValueStore(Protocol):
    """The local storage operations the DHT uses (keys are 32 raw bytes)."""

    async def store_batch(
        self,
        items: Sequence[bytes] | Sequence[tuple[bytes, bytes]],
        *,
        datatype: int = 0,
        is_original: bool = False,
    ) -> list[bytes]: ...

    async def store_if_absent(self, value: bytes, *, datatype: int = 0) -> bool: ...

    async def retrieve(self, key: bytes) -> bytes | None: ...

    async def sized_value(self, key: bytes, limit: int) -> tuple[int, bytes | None]: ...

    async def retrieve_many(self, keys: Sequence[bytes]) -> dict[bytes, bytes]: ...

    async def value_sizes(self, keys: Sequence[bytes]) -> dict[bytes, int]: ...

    async def missing(self, keys: Sequence[bytes]) -> list[bytes]: ...

    async def delete(self, key: bytes) -> bool: ...

    async def is_disabled(self, key: bytes) -> bool: ...

    async def disable_key(self, key: bytes) -> None: ...

    async def enable_key(self, key: bytes) -> None: ...

    async def get_local_keys(self, start: datetime | None, end: datetime) -> list[bytes]: ...

    async def add_replication_keys(self, keys: Sequence[ReplicationKey]) -> None: ...

    async def count(self) -> int: ...


class ReplicationStore(ValueStore, Protocol):
    """What replication and repair read and write between their plans (Go's replication
    store methods, with the differences :class:`~lumera_p2p.store.LocalStore` documents)."""

    async def delete_many(self, keys: Sequence[bytes]) -> int: ...

    async def keys_for_replication(
        self, start: datetime | None, end: datetime, max_keys: int = 200_000
    ) -> list[tuple[bytes, datetime]]: ...

    async def register_replication_peers(self, peers: Sequence[tuple[str, str, int]]) -> None: ...

    async def replication_infos(self) -> list[ReplicationInfo]: ...

    async def set_active(self, peer_id: str, active: bool, adjusted: bool = False) -> bool: ...

    async def set_adjusted(self, peer_id: str, adjusted: bool) -> bool: ...

    async def update_last_seen(self, peer_id: str, when: datetime | None = None) -> bool: ...

    async def update_last_replicated(self, peer_id: str, when: datetime) -> bool: ...

    async def replication_keys(
        self, min_attempts: int = 0, max_attempts: int = 1, limit: int = 10_000
    ) -> list[ReplicationKey]: ...

    async def delete_replication_keys(self, keys: Sequence[bytes]) -> int: ...

    async def increment_attempts(self, keys: Sequence[bytes]) -> None: ...

    async def expire_replication_keys(self, updated_before: datetime, max_attempts: int) -> int: ...

    async def replication_key_count(self) -> int: ...

    async def purge_expired_disabled_keys(self) -> int: ...

    async def track_redundant_keys(self, keys: Sequence[bytes]) -> None: ...

    async def forget_redundant_keys(self, keys: Sequence[bytes]) -> int: ...

    async def redundant_keys(self, min_count: int, limit: int = 100_000) -> list[bytes]: ...


@dataclasses.dataclass
class _PendingKey:
    row: ReplicationKey
    updated_at: datetime


class MemoryStore:
    """A dictionary-backed :class:`ReplicationStore` (simulation and tests).

    ``clock`` gives "now" for ``createdAt`` and the replication timestamps; the simulator
    passes one that follows the virtual-time loop, so a run is the same from its seed.
    """

    def __init__(
        self,
        clock: Callable[[], datetime] = utcnow,
        *,
        disabled_key_ttl: timedelta = DEFAULT_DISABLED_KEY_TTL,
    ) -> None:
        self.clock = clock
        self.disabled_key_ttl = disabled_key_ttl
        self.values: dict[bytes, bytes] = {}
        self.created: dict[bytes, datetime] = {}
        self.disabled: dict[bytes, datetime] = {}
        self.pending: dict[bytes, _PendingKey] = {}
        self.peers: dict[str, ReplicationInfo] = {}
        self.del_keys: dict[bytes, int] = {}

    @property
    def replication_rows(self) -> dict[bytes, ReplicationKey]:
        """The pending announced keys, by key."""
        return {k: p.row for k, p in self.pending.items()}

    # --- values --------------------------------------------------------------------------

    async def store_batch(
        self,
        items: Sequence[bytes] | Sequence[tuple[bytes, bytes]],
        *,
        datatype: int = 0,
        is_original: bool = False,
    ) -> list[bytes]:
        pairs = pair_with_keys(items, MAX_VALUE_SIZE)
        now = self.clock()
        for key, value in pairs:
            self.values[key] = bytes(value)
            self.created.setdefault(key, now)
        return [k for k, _ in pairs]

    async def store_if_absent(self, value: bytes, *, datatype: int = 0) -> bool:
        ((key, value),) = pair_with_keys([value], MAX_VALUE_SIZE)
        if key in self.values:
            return False
        await self.store_batch([(key, value)], datatype=datatype)
        return True

    async def retrieve(self, key: bytes) -> bytes | None:
        return self.values.get(key)

    async def sized_value(self, key: bytes, limit: int) -> tuple[int, bytes | None]:
        value = self.values.get(key)
        if value is None:
            return 0, None
        return len(value), value if len(value) <= limit else None

    async def retrieve_many(self, keys: Sequence[bytes]) -> dict[bytes, bytes]:
        return {k: self.values[k] for k in keys if k in self.values}

    async def value_sizes(self, keys: Sequence[bytes]) -> dict[bytes, int]:
        return {k: len(self.values[k]) for k in keys if k in self.values}

    async def missing(self, keys: Sequence[bytes]) -> list[bytes]:
        return [k for k in keys if k not in self.values]

    async def delete(self, key: bytes) -> bool:
        return await self.delete_many([key]) == 1

    async def delete_many(self, keys: Sequence[bytes]) -> int:
        removed = 0
        for key in dict.fromkeys(keys):
            self.created.pop(key, None)
            removed += self.values.pop(key, None) is not None
        return removed

    async def count(self) -> int:
        return len(self.values)

    async def get_local_keys(self, start: datetime | None, end: datetime) -> list[bytes]:
        return [
            k
            for k, t in sorted(self.created.items(), key=lambda kv: (kv[1], kv[0]))
            if (start is None or t > start) and t < end
        ]

    async def keys_for_replication(
        self, start: datetime | None, end: datetime, max_keys: int = 200_000
    ) -> list[tuple[bytes, datetime]]:
        rows = sorted(
            ((t, k) for k, t in self.created.items() if (start is None or t > start) and t < end)
        )
        if len(rows) > max_keys:
            last = rows[max_keys - 1][0]
            cut = max_keys
            while cut < len(rows) and rows[cut][0] == last:
                cut += 1  # the whole run sharing the last timestamp, as LocalStore does
            rows = rows[:cut]
        return [(k, t) for t, k in rows]

    # --- disabled keys -------------------------------------------------------------------

    async def is_disabled(self, key: bytes) -> bool:
        when = self.disabled.get(key)
        return when is not None and when > self.clock() - self.disabled_key_ttl

    async def disable_key(self, key: bytes) -> None:
        self.disabled[key] = self.clock()

    async def enable_key(self, key: bytes) -> None:
        self.disabled.pop(key, None)

    async def purge_expired_disabled_keys(self) -> int:
        cutoff = self.clock() - self.disabled_key_ttl
        expired = [k for k, t in self.disabled.items() if t <= cutoff]
        for key in expired:
            del self.disabled[key]
        return len(expired)

    # --- replication_info ----------------------------------------------------------------

    async def register_replication_peers(self, peers: Sequence[tuple[str, str, int]]) -> None:
        now = self.clock()
        for peer_id, ip, port in peers:
            known = self.peers.get(peer_id)
            if known is None:
                self.peers[peer_id] = ReplicationInfo(
                    peer_id, ip, port, created_at=now, updated_at=now
                )
            elif (known.ip, known.port) != (ip, port):
                self.peers[peer_id] = dataclasses.replace(known, ip=ip, port=port, updated_at=now)

    async def replication_infos(self) -> list[ReplicationInfo]:
        return sorted(
            self.peers.values(),
            key=lambda i: (
                i.last_replicated_at is not None,
                i.last_replicated_at or datetime.min.replace(tzinfo=self.clock().tzinfo),
                i.id,
            ),
        )

    def _update(self, peer_id: str, **changes: object) -> bool:
        known = self.peers.get(peer_id)
        if known is None:
            return False
        self.peers[peer_id] = dataclasses.replace(known, updated_at=self.clock(), **changes)  # type: ignore[arg-type]
        return True

    async def set_active(self, peer_id: str, active: bool, adjusted: bool = False) -> bool:
        return self._update(peer_id, is_active=active, is_adjusted=adjusted)

    async def set_adjusted(self, peer_id: str, adjusted: bool) -> bool:
        return self._update(peer_id, is_adjusted=adjusted)

    async def update_last_seen(self, peer_id: str, when: datetime | None = None) -> bool:
        return self._update(peer_id, last_seen=when or self.clock())

    async def update_last_replicated(self, peer_id: str, when: datetime) -> bool:
        return self._update(peer_id, last_replicated_at=when)

    # --- replication_keys ----------------------------------------------------------------

    async def add_replication_keys(self, keys: Sequence[ReplicationKey]) -> None:
        now = self.clock()
        for k in keys:
            self.pending[k.key] = _PendingKey(dataclasses.replace(k, attempts=0), now)

    async def replication_keys(
        self, min_attempts: int = 0, max_attempts: int = 1, limit: int = 10_000
    ) -> list[ReplicationKey]:
        rows = sorted(
            (p.updated_at, k, p.row)
            for k, p in self.pending.items()
            if min_attempts <= p.row.attempts <= max_attempts
        )
        return [row for _, _, row in rows[:limit]]

    async def delete_replication_keys(self, keys: Sequence[bytes]) -> int:
        return sum(self.pending.pop(k, None) is not None for k in dict.fromkeys(keys))

    async def increment_attempts(self, keys: Sequence[bytes]) -> None:
        now = self.clock()
        for key in keys:
            pending = self.pending.get(key)
            if pending is not None:
                row = dataclasses.replace(pending.row, attempts=pending.row.attempts + 1)
                self.pending[key] = _PendingKey(row, now)

    async def expire_replication_keys(self, updated_before: datetime, max_attempts: int) -> int:
        stale = [
            k
            for k, p in self.pending.items()
            if p.updated_at < updated_before or p.row.attempts > max_attempts
        ]
        for key in stale:
            del self.pending[key]
        return len(stale)

    async def replication_key_count(self) -> int:
        return len(self.pending)

    # --- del_keys ------------------------------------------------------------------------

    async def track_redundant_keys(self, keys: Sequence[bytes]) -> None:
        for key in dict.fromkeys(keys):
            self.del_keys[key] = self.del_keys.get(key, 0) + 1

    async def forget_redundant_keys(self, keys: Sequence[bytes]) -> int:
        return sum(self.del_keys.pop(k, None) is not None for k in dict.fromkeys(keys))

    async def redundant_keys(self, min_count: int, limit: int = 100_000) -> list[bytes]:
        ranked = sorted((-c, k) for k, c in self.del_keys.items() if c >= min_count)
        return [k for _, k in ranked[:limit]]
