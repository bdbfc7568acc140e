"""Who should hold a key, and which keys each peer should be told about. Pure logic.

A key's *responsible* nodes are the ``replicas`` (6) nodes nearest it by XOR distance among
this node and the store-eligible, unbanned contacts of its routing table that are not gone
(:class:`Ranking`). Go ranks the whole routing table, store-ineligible peers included, so a key
near a STORAGE_FULL or POSTPONED peer keeps fewer than six replicas (§11.2 item 21).

Per scanned key, :func:`assign_page` decides (Go's ``assignReplicationKeysToPeers`` and
``adjustNodeKeys``, replication.go):

* **push**: each responsible active peer whose cursor is before the key's ``createdAt`` (or
  that has no cursor: a newcomer) is told about it;
* **repair**: if a gone peer would be among the key's responsible nodes were it still here, it
  was responsible: every responsible active peer is told about the key (the one that took the
  gone peer's place fetches it; the others already hold it and ignore the announcement). Go
  means to do this and, through a shadowed loop variable, announces the first keys of its
  scan instead (§11.2 item 2); it also skips every node with the gone peer's IP, which on a
  local network is every node.
"""

from __future__ import annotations

import heapq
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from lumera_p2p.kademlia import Contact


class Ranking:
    """The nodes a key's responsible set is drawn from: ``me`` and ``candidates``."""

    def __init__(self, me: Contact, candidates: Iterable[Contact]) -> None:
        self.me = me
        pool = {c.id: c for c in candidates if c.id != me.id}
        pool[me.id] = me
        self._pool = [(c.int_id, c) for c in pool.values()]

    def __len__(self) -> int:
        return len(self._pool)

    def closest(self, key: bytes, n: int) -> list[Contact]:
        """The ``n`` nodes nearest ``key``, nearest first (``me`` may be among them)."""
        t = int.from_bytes(key, "big")
        return [c for _, c in heapq.nsmallest(n, self._pool, key=lambda p: p[0] ^ t)]


@dataclass
class PageAssignment:
    """What one page of keys gives each peer to announce, by node ID."""

    #: Keys each active peer should hear about: pushed or repaired, without repeats.
    keys: dict[bytes, list[bytes]] = field(default_factory=dict)
    #: Of those, how many are repairs (announced for a gone peer), per peer.
    repairs: dict[bytes, int] = field(default_factory=dict)
    #: Keys each gone peer was responsible for, and the active peers told about them.
    gone_responsible: dict[bytes, int] = field(default_factory=dict)
    gone_targets: dict[bytes, set[bytes]] = field(default_factory=dict)
    #: Responsible nodes that are not replication peers yet (to register and ping).
    strangers: set[bytes] = field(default_factory=set)


def assign_page(
    keys: Sequence[tuple[bytes, datetime]],
    ranking: Ranking,
    *,
    replicas: int,
    cursors: Mapping[bytes, datetime | None],
    gone: Sequence[Contact] = (),
    known: Container[bytes] = frozenset(),
) -> PageAssignment:
    """Assign each of ``keys`` (key, createdAt) as the module docstring says.

    ``cursors`` maps each active peer that may be sent keys to its cursor (None: never
    replicated to). ``gone`` peers must not be in ``ranking``. Responsible nodes neither in
    ``cursors`` nor in ``known`` (every replication peer) are reported as ``strangers``.
    """
    out = PageAssignment()
    me = ranking.me.id
    for key, created in keys:
        responsible = ranking.closest(key, replicas)
        owners: list[bytes] = []
        if gone:
            t = int.from_bytes(key, "big")
            bound = responsible[-1].int_id ^ t if len(responsible) >= replicas else None
            for peer in gone:
                if bound is None or peer.int_id ^ t < bound:
                    out.gone_responsible[peer.id] = out.gone_responsible.get(peer.id, 0) + 1
                    owners.append(peer.id)
        for node in responsible:
            node_id = node.id
            if node_id == me:
                continue
            if node_id not in cursors:
                if node_id not in known:
                    out.strangers.add(node_id)
                continue
            cursor = cursors[node_id]
            if cursor is None or created > cursor:
                out.keys.setdefault(node_id, []).append(key)
            elif owners:
                out.keys.setdefault(node_id, []).append(key)
                out.repairs[node_id] = out.repairs.get(node_id, 0) + 1
            for owner in owners:
                out.gone_targets.setdefault(owner, set()).add(node_id)
    return out


def redundant(key: bytes, ranking: Ranking, replicas: int) -> bool | None:
    """Is this node outside ``key``'s responsible set? None when fewer than ``replicas``
    nodes are known (Go's classifier then decides nothing)."""
    if len(ranking) < replicas:
        return None
    return all(c.id != ranking.me.id for c in ranking.closest(key, replicas))
