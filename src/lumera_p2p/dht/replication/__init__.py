"""Replication and repair: every value stays on the nodes nearest it as nodes come and go.

:class:`Replicator` runs the rounds (activity, push, fetch, repair, upkeep) for one node; the
decisions are pure (:mod:`.assignment`, :mod:`.activity`) and the network work is plans
(``dht.plans.announce``, ``dht.plans.fetch``, the ping plans).
"""

from lumera_p2p.dht.replication.assignment import PageAssignment, Ranking, assign_page, redundant
from lumera_p2p.dht.replication.coordinator import (
    CycleReport,
    FetchReport,
    Replicator,
    verify_payload,
)
from lumera_p2p.dht.replication.counters import ReplicationCounters
from lumera_p2p.dht.replication.options import ReplicationOptions

__all__ = [
    "CycleReport",
    "FetchReport",
    "PageAssignment",
    "Ranking",
    "ReplicationCounters",
    "ReplicationOptions",
    "Replicator",
    "assign_page",
    "redundant",
    "verify_payload",
]
