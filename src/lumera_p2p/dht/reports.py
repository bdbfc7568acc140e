"""What a store tells its caller: how many peers acknowledged, and why not more.

``P2P.store_with_report`` returns a :class:`StoreReport`; ``P2P.store`` returns just its key
(the Go API). Both raise ``StoreFailed`` (``NoStorePeers``, ``TooFewReplicas``) carrying the
report when fewer than ``dht.min_replicas`` peers acknowledged; the value is committed locally
either way.
"""

from __future__ import annotations

from dataclasses import dataclass

from lumera_p2p.dht.plans.store import StoreOutcome


@dataclass(frozen=True)
class StoreReport:
    """One value's store: its base58 ``key`` and who holds it now besides us."""

    key: str
    #: Peers that were to hold it (``dht.replicas``).
    wanted: int
    #: Addresses (``lumera1…``) of the peers that acknowledged, in the order they did.
    stored_on: tuple[str, ...]
    #: Peers that answered "not store-eligible".
    refused: tuple[str, ...]
    #: Peers that failed (no answer in time, an error, a lost connection).
    failed: tuple[str, ...]
    #: How many of ``failed`` timed out.
    timeouts: int
    #: Why fewer than ``wanted`` acknowledged ("" when all did).
    cause: str

    @property
    def replicas(self) -> int:
        """How many peers acknowledged."""
        return len(self.stored_on)

    @classmethod
    def of(cls, key: str, outcome: StoreOutcome, wanted: int) -> StoreReport:
        """The report of ``outcome`` (whose ``cause`` the node filled in)."""
        return cls(
            key=key,
            wanted=wanted,
            stored_on=tuple(c.address for c in outcome.stored_on),
            refused=tuple(c.address for c in outcome.refused),
            failed=tuple(c.address for c in outcome.failed),
            timeouts=outcome.timeouts,
            cause=outcome.cause,
        )


def shortfall_cause(outcome: StoreOutcome, wanted: int, peers: int) -> str:
    """Why a store reached fewer than ``wanted`` peers, in words ("" if it did not)."""
    if outcome.replicas >= wanted:
        return ""
    if peers == 0:
        return "no peers: the routing table is empty"
    if outcome.candidates == 0:
        return "no store-eligible peers among those found"
    parts: list[str] = []
    if outcome.refused:
        parts.append(f"{len(outcome.refused)} refused as not store-eligible")
    if outcome.timeouts:
        parts.append(f"{outcome.timeouts} timed out")
    errors = len(outcome.failed) - outcome.timeouts
    if errors:
        parts.append(f"{errors} failed")
    if outcome.candidates < wanted:
        parts.append(f"only {outcome.candidates} store-eligible peers found")
    return ", ".join(parts)
