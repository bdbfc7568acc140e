"""Tunables of replication and repair, as typed values (the ``replication:`` config section).

Defaults are the Go node's constants (p2p-behaviour.md §6 and §9) unless a comment says why
not. Frozen: decided once, when the node is built.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class ReplicationOptions:
    """How often each replication round runs and how much it moves at once."""

    #: Push cycle: announce keys to the peers that should hold them (Go: 10 min).
    interval: float = 600.0
    #: Activity check: ping every replication peer (Go: 5 min), this many at once (Go: 32).
    activity_interval: float = 300.0
    activity_concurrency: int = 32
    #: Besides the chain's supernodes, the routing-table contacts nearest us become
    #: replication peers (the nodes that share our keys are among them; a newcomer near us
    #: is found the cycle after it joins), as do contacts found responsible for a key we
    #: hold. (Go replicates with the chain's supernodes only.)
    neighbours: int = 12
    #: A peer inactive this long past its last answer is gone: the keys it was responsible for
    #: are announced to the nodes now responsible (Go's ``nodeShowUpDeadline``: 35 min).
    offline_deadline: float = 2100.0
    #: Keys per Replicate request (Go: 5,000), peers announced to at once (Go: one at a time),
    #: and keys read from the store per scan page (Go: 200,000 per cycle; we page on).
    announce_batch_keys: int = 5000
    announce_concurrency: int = 16
    scan_keys: int = 200_000
    #: Fetch of announced keys (Go: every 5 min, rows with 0-1 attempts, 10,000 at a time),
    #: soon after an announcement arrives (Go waits for the next run), and of keys that failed
    #: from alternate nodes (Go: every 10 min).
    fetch_interval: float = 300.0
    fetch_delay: float = 5.0
    failed_fetch_interval: float = 600.0
    fetch_rows: int = 10_000
    #: Keys per BatchFindValues (Go: 400), calls per chunk while the server leaves values out
    #: (Go: 10), sources fetched from at once (Go: one at a time).
    fetch_batch_keys: int = 400
    fetch_iterations: int = 10
    fetch_concurrency: int = 4
    #: Failed keys are asked of the ``fetch_alternates`` nodes nearest them, one per attempt
    #: (Go: 12); a key that failed with all of them is dropped, as is one not announced again
    #: within ``pending_key_ttl`` (Go keeps both forever).
    fetch_alternates: int = 12
    pending_key_ttl: float = 86400.0
    #: Expired disabled keys are purged this often (Go: 2 min).
    disabled_key_cleanup_interval: float = 120.0
    #: Keys held here that this node is no longer among the closest for are counted in
    #: ``del_keys`` this often (Go: 12 h; its worker is switched off).
    redundant_scan_interval: float = 43200.0
    #: Delete keys counted redundant ``delete_min_count`` times (Go: 10), every
    #: ``delete_interval`` (Go: 11 h), while the data directory's disk has less than
    #: ``delete_below_free_bytes`` free (Go: 50 GB). Off by default, as in Go.
    delete_redundant: bool = False
    delete_interval: float = 39600.0
    delete_min_count: int = 10
    delete_below_free_bytes: int = 50 * 1000**3

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool):
                continue
            if isinstance(value, int) and value < 1:
                raise ValueError(f"{f.name} must be at least 1, not {value}")
            if isinstance(value, float) and value <= 0:
                raise ValueError(f"{f.name} must be positive, not {value}")
