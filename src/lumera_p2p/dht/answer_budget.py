"""What a large answer may carry: the values that fit the request's memory reservation.

The server reserves each request's bytes in the node's memory budget (``net/budget.py``); a
handler about to build a large answer (BatchGetValues, BatchFindValues, a FindValue of a big
value) first looks up the sizes of the values it would send, then grows the reservation value
by value, ``factor`` bytes per value byte (the values, and the answer they become), and takes
only the values that fit. The first growth may wait for memory (bounded); later ones do not,
so one answer never holds memory while it waits for more. What is left out is answered as
absent (BatchGetValues: Go's client asks another provider) or with ``done = false``
(BatchFindValues: the client asks again), the protocol's own ways of saying "not all here".

Outside a budgeted server (the in-memory transport, the simulator) there is no reservation
and only ``cap`` applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lumera_p2p.dht.valuestore import ValueStore
from lumera_p2p.net.budget import current_reservation


@dataclass(frozen=True)
class Fitted:
    """The keys whose values an answer carries, and whether any stored value was left out."""

    keys: list[bytes]
    trimmed: bool
    #: Value bytes of ``keys``.
    value_bytes: int


async def fit_values(
    store: ValueStore,
    keys: Sequence[bytes],
    *,
    cap: int,
    factor: int,
    wait: float,
) -> Fitted:
    """The stored keys among ``keys`` (in order) whose values fit ``cap`` bytes in all and
    the current reservation (grown by ``factor`` × their size).

    Raises ``OverBudget`` if values are stored but not even the first fits within ``wait``
    seconds: the caller answers Failed ("busy") instead of an empty answer that would read
    as "not stored here".
    """
    sizes = await store.value_sizes(keys)
    reservation = current_reservation()
    chosen: list[bytes] = []
    taken: set[bytes] = set()  # a key asked twice is carried (and charged) once
    total = 0
    trimmed = False
    grown = False
    for key in keys:
        size = sizes.get(key)
        if size is None or key in taken:
            continue
        if total + size > cap:
            trimmed = True
            continue
        if reservation is not None and size:
            if not reservation.could_grow(factor * size):
                trimmed = True  # larger than a peer's share of the budget: never sent
                continue
            if not grown:
                await reservation.grow(factor * size, wait)  # OverBudget: nothing fits
                grown = True
            elif not reservation.try_grow(factor * size):
                trimmed = True
                break
        chosen.append(key)
        taken.add(key)
        total += size
    return Fitted(chosen, trimmed, total)
