"""Replication and repair counters, for ``P2P.stats()`` and the metrics exported from it.

Names are stable: add fields, never rename one.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass


@dataclass
class ReplicationCounters:
    """Counters since the node started, and the gauges of the last rounds."""

    #: Push cycles completed, and rounds of any kind that failed with an error (logged).
    cycles: int = 0
    round_failures: int = 0
    #: When the last push cycle ended (Unix seconds; 0: none yet) and how long it took.
    last_cycle_at: float = 0.0
    last_cycle_seconds: float = 0.0
    #: Keys announced and acknowledged (pushed and repaired), Replicate batches acknowledged,
    #: and peers whose announcements failed for good in a cycle (their cursor stayed).
    keys_announced: int = 0
    batches_announced: int = 0
    announce_failures: int = 0
    #: Announcements made for gone peers, and gone peers whose keys were handed on.
    keys_repaired: int = 0
    peers_adjusted: int = 0
    #: Activity checks run, and replication peers active and inactive after the last one.
    activity_checks: int = 0
    peers_active: int = 0
    peers_inactive: int = 0
    #: Fetch rounds run, BatchFindValues exchanges, values fetched and stored, their bytes,
    #: and compressed payload bytes received.
    fetch_rounds: int = 0
    fetch_requests: int = 0
    keys_fetched: int = 0
    bytes_fetched: int = 0
    payload_bytes: int = 0
    #: Keys whose fetch failed (their attempts went up), values refused because they did not
    #: hash to their key (the sender was banned), and announced keys dropped as stale or
    #: failed everywhere.
    fetch_failures: int = 0
    poisoned_values: int = 0
    keys_expired: int = 0
    #: Announced keys waiting to be fetched (the backlog), when the stats were taken.
    pending_keys: int = 0
    #: Disabled keys purged after their time, keys counted redundant by the last scan, and
    #: redundant keys deleted (only when ``delete_redundant`` is on).
    disabled_keys_purged: int = 0
    redundant_keys: int = 0
    redundant_deleted: int = 0

    def snapshot(self) -> ReplicationCounters:
        """An independent copy."""
        return copy.copy(self)
