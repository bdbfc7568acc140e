"""SQLite persistence: the node's values, disabled keys and replication bookkeeping."""

from lumera_p2p.store.limits import StoreLimits
from lumera_p2p.store.local import (
    DEFAULT_DISABLED_KEY_TTL,
    MAX_VALUE_SIZE,
    LocalStore,
    ReplicationInfo,
    ReplicationKey,
    StoredKey,
    StoreStats,
)

__all__ = [
    "DEFAULT_DISABLED_KEY_TTL",
    "MAX_VALUE_SIZE",
    "LocalStore",
    "ReplicationInfo",
    "ReplicationKey",
    "StoreLimits",
    "StoreStats",
    "StoredKey",
]
