"""What the RPC handlers (``dht/server.py``) accept and answer: the ``server`` section's
request limits, as a typed value the node is built with."""

from __future__ import annotations

from dataclasses import dataclass, field

from lumera_p2p.dht.quotas import QuotaLimits


@dataclass(frozen=True)
class ServingLimits:
    """What the RPC handlers (``dht/server.py``) accept and answer."""

    #: Most keys one Replicate, BatchGetValues, BatchFindValues or BatchFindNode may carry
    #: (Go has no cap).
    max_keys_per_request: int = 20_000
    #: Concurrent BatchFindValues served (Go: 25), and how long one waits for a slot (Go: 60 s).
    batch_find_values_slots: int = 25
    batch_find_values_wait: float = 60.0
    #: BatchFindValues answers are trimmed below this compressed size (Go: under 400 MiB).
    batch_find_values_max_bytes: int = 399 * 1024 * 1024
    #: Value bytes one BatchGetValues answer may carry: Go fills every requested value and
    #: fails to encode past the 400 MB frame limit; we leave the excess out (asked again).
    max_response_value_bytes: int = 256 * 1024 * 1024
    #: BatchFindValues one peer may have served at once (Go: no per-peer cap).
    batch_find_values_per_peer: int = 2
    #: Concurrent BatchGetValues served in all and per peer (Go: no cap), and how long one
    #: waits for a slot before the answer is Failed "busy".
    batch_get_values_slots: int = 8
    batch_get_values_per_peer: int = 2
    batch_get_values_wait: float = 10.0
    #: How long a handler waits for memory for a large answer (the server's ``memory_wait``).
    memory_wait: float = 10.0
    #: What one peer may make us store and announce (``dht/quotas.py``).
    quotas: QuotaLimits = field(default_factory=QuotaLimits)

    def __post_init__(self) -> None:
        _at_least_one(
            self,
            "max_keys_per_request",
            "batch_find_values_slots",
            "batch_find_values_max_bytes",
            "max_response_value_bytes",
            "batch_find_values_per_peer",
            "batch_get_values_slots",
            "batch_get_values_per_peer",
        )
        for name in ("batch_find_values_wait", "batch_get_values_wait", "memory_wait"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")


def _at_least_one(options: object, *names: str) -> None:
    for name in names:
        value = getattr(options, name)
        if value < 1:
            raise ValueError(f"{name} must be at least 1, not {value}")
