"""What the DHT needs from local storage, and an in-memory implementation for simulation.

:class:`lumera_p2p.store.LocalStore` (SQLite) satisfies :class:`ValueStore`; the simulator uses
:class:`MemoryStore` so that a thousand nodes fit in one process without a thousand databases.
Both check every value against its key on the way in, with the same
:func:`~lumera_p2p.store.local.pair_with_keys`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from lumera_p2p.store.local import MAX_VALUE_SIZE, ReplicationKey, pair_with_keys
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

    async def retrieve(self, key: bytes) -> bytes | None: ...

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


class MemoryStore:
    """A dictionary-backed :class:`ValueStore` (simulation and tests)."""

    def __init__(self) -> None:
        self.values: dict[bytes, bytes] = {}
        self.created: dict[bytes, datetime] = {}
        self.disabled: set[bytes] = set()
        self.replication_keys: dict[bytes, ReplicationKey] = {}

    async def store_batch(
        self,
        items: Sequence[bytes] | Sequence[tuple[bytes, bytes]],
        *,
        datatype: int = 0,
        is_original: bool = False,
    ) -> list[bytes]:
        pairs = pair_with_keys(items, MAX_VALUE_SIZE)
        now = utcnow()
        for key, value in pairs:
            self.values[key] = bytes(value)
            self.created.setdefault(key, now)
        return [k for k, _ in pairs]

    async def retrieve(self, key: bytes) -> bytes | None:
        return self.values.get(key)

    async def retrieve_many(self, keys: Sequence[bytes]) -> dict[bytes, bytes]:
        return {k: self.values[k] for k in keys if k in self.values}

    async def value_sizes(self, keys: Sequence[bytes]) -> dict[bytes, int]:
        return {k: len(self.values[k]) for k in keys if k in self.values}

    async def missing(self, keys: Sequence[bytes]) -> list[bytes]:
        return [k for k in keys if k not in self.values]

    async def delete(self, key: bytes) -> bool:
        self.created.pop(key, None)
        return self.values.pop(key, None) is not None

    async def is_disabled(self, key: bytes) -> bool:
        return key in self.disabled

    async def disable_key(self, key: bytes) -> None:
        self.disabled.add(key)

    async def enable_key(self, key: bytes) -> None:
        self.disabled.discard(key)

    async def get_local_keys(self, start: datetime | None, end: datetime) -> list[bytes]:
        return [
            k
            for k, t in sorted(self.created.items(), key=lambda kv: (kv[1], kv[0]))
            if (start is None or t > start) and t < end
        ]

    async def add_replication_keys(self, keys: Sequence[ReplicationKey]) -> None:
        for k in keys:
            self.replication_keys[k.key] = k

    async def count(self) -> int:
        return len(self.values)
