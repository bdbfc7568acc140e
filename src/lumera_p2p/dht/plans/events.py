"""What a plan tells the node, as facts; the node decides what each means for its state.

Every event but :class:`ValueArrived` is applied by the node at once (routing table, ban list,
eligibility, counters). ``ValueArrived`` goes to the operation's consumer, which accepts or
refuses the value; the driver reports that with ``Plan.on_verdict``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from lumera_p2p.kademlia import Contact


@dataclass(frozen=True)
class Answered:
    """``peer`` answered a request: it is alive (the node adds it to its routing table)."""

    peer: Contact


@dataclass(frozen=True)
class Unanswered:
    """A request to ``peer`` failed; repeated failures evict it from the routing table."""

    peer: Contact


@dataclass(frozen=True)
class Struck:
    """A failure that counts on the ban list (two within the ban window ban the peer)."""

    peer: Contact


@dataclass(frozen=True)
class Cleared:
    """``peer`` answered a ping: its ban-list failures are forgiven."""

    peer: Contact


@dataclass(frozen=True)
class Poisoned:
    """``peer`` served a value that does not hash to ``key``: ban it."""

    peer: Contact
    key: bytes


@dataclass(frozen=True)
class RefusedStore:
    """``peer`` said it is not store-eligible: send it no values until the next allowlist."""

    peer: Contact


@dataclass(frozen=True)
class ProbeAnswered:
    """The head of a full bucket answered its probe: it stays (moved to the tail)."""

    peer: Contact


@dataclass(frozen=True)
class ProbeFailed:
    """The head of a full bucket did not answer its probe: evict it, promote a replacement."""

    peer: Contact


@dataclass(frozen=True)
class LookupStarted:
    """A lookup for ``target`` began: its bucket counts as refreshed."""

    target: bytes


@dataclass(frozen=True)
class ValueArrived:
    """A verified value for the consumer, who accepts or refuses it (``Plan.on_verdict``)."""

    key: bytes
    value: bytes
    peer: Contact


Event: TypeAlias = (
    Answered
    | Unanswered
    | Struck
    | Cleared
    | Poisoned
    | RefusedStore
    | ProbeAnswered
    | ProbeFailed
    | LookupStarted
    | ValueArrived
)
