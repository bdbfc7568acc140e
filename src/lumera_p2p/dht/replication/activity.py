"""Go's node-activity rules (node_activity.go), as a pure function of what a ping showed.

Every replication peer is pinged periodically. Go skips the whole round unless the public
internet answers (it dials google.com and others first); nothing here depends on the internet
(§11.2 item 12). The outcome for one peer:

* not routing-eligible on the chain: made inactive (if it was active) and not pinged;
* no answer: made inactive once it is banned (its second failure), if it was active;
* an answer: ``last_seen`` is now; made inactive if it is not store-eligible, active if it is
  and was not. (Its ban entry is cleared and it enters the routing table: the ping plan's
  events do that.)

Becoming active or inactive also clears ``is_adjusted`` (Go's ``UpdateIsActive(.., false)``),
so a peer that comes back and goes again is repaired for again.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ActivityChange:
    """What to write for one peer: its new ``is_active`` (None: unchanged), and whether it
    was seen now."""

    active: bool | None = None
    seen: bool = False


def unroutable(was_active: bool) -> ActivityChange:
    """A peer the chain no longer lets route: it is not pinged, and is inactive from now."""
    return ActivityChange(active=False if was_active else None)


def after_ping(
    *, was_active: bool, answered: bool, banned: bool, store_eligible: bool
) -> ActivityChange:
    """The change after one ping of a routing-eligible peer (see the module docstring)."""
    if not answered:
        return ActivityChange(active=False if was_active and banned else None)
    if not store_eligible:
        return ActivityChange(active=False if was_active else None, seen=True)
    return ActivityChange(active=None if was_active else True, seen=True)
