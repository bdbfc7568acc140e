"""Running several plans as one: the bucket refresh's lookups, a bootstrap's pings, and the
many plans the replication loops will run side by side."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from lumera_p2p.dht.plans.base import Plan, Request, Routes
from lumera_p2p.errors import TransportError
from lumera_p2p.wire.messages import Message

T = TypeVar("T")


class AllOf(Plan[list[T]]):
    """Run ``plans`` side by side, at most ``limit`` at once (all when None); the result is
    theirs, in the order given.

    ``plans`` is consumed lazily, so a generator builds each plan only when a slot opens (from
    the state of that moment). Embedded plans may not stream values (``ValueArrived``).

    A sub-plan is polled only when it has news (an input, or its deadline has come), so a
    refresh of 250 buckets costs per answer what one lookup does, not 250 polls.
    """

    def __init__(self, plans: Iterable[Plan[T]], *, limit: int | None = None) -> None:
        super().__init__()
        if limit is not None and limit < 1:
            raise ValueError("limit must be at least 1")
        self._source: Iterator[Plan[T]] = iter(plans)
        self._exhausted = False
        self._limit = limit
        self._routes = Routes(self)
        self._active: dict[int, Plan[T]] = {}
        self._index: dict[int, int] = {}  # id(plan) -> its position in the input
        self._deadline: dict[int, float | None] = {}
        self._dirty: set[int] = set()
        self._results: dict[int, T] = {}
        self._started = 0
        self._fill()

    def poll(self, now: float) -> list[Request]:
        out: list[Request] = []
        while True:  # again for plans that take the slots of those that finished
            due = [
                i
                for i in self._active
                if i in self._dirty or ((d := self._deadline[i]) is not None and d <= now)
            ]
            if not due:
                return out
            for index in due:
                plan = self._active[index]
                self._dirty.discard(index)
                out += self._routes.pump(plan, now)
                self._deadline[index] = plan.next_deadline()
                self._reap(index)
            self._fill()

    def next_deadline(self) -> float | None:
        times = [d for d in self._deadline.values() if d is not None]
        return min(times) if times else None

    @property
    def done(self) -> bool:
        return self._exhausted and not self._active

    def result(self) -> list[T]:
        return [self._results[i] for i in sorted(self._results)]

    def on_response(self, token: int, message: Message, now: float) -> None:
        route = self._routes.take(token)
        if route is not None:
            plan, inner = route
            plan.on_response(inner, message, now)
            self._after_input(plan)

    def on_failure(self, token: int, error: TransportError, now: float) -> None:
        route = self._routes.take(token)
        if route is not None:
            plan, inner = route
            plan.on_failure(inner, error, now)
            self._after_input(plan)

    def _after_input(self, plan: Plan[object]) -> None:
        self._routes.settle(plan)
        index = self._index.get(id(plan))
        if index is not None:
            self._dirty.add(index)
            self._deadline[index] = plan.next_deadline()
            self._reap(index)
        self._fill()

    def _fill(self) -> None:
        while not self._exhausted and (self._limit is None or len(self._active) < self._limit):
            plan = next(self._source, None)
            if plan is None:
                self._exhausted = True
                break
            index = self._started
            self._started += 1
            self._active[index] = plan
            self._index[id(plan)] = index
            self._deadline[index] = plan.next_deadline()
            self._dirty.add(index)
            self._routes.settle(plan)  # events it raised when built
            self._reap(index)

    def _reap(self, index: int) -> None:
        """Collect plan ``index``'s result if it is done, and free its slot."""
        plan = self._active[index]
        if not plan.done:
            return
        del self._active[index]
        del self._index[id(plan)]
        del self._deadline[index]
        self._dirty.discard(index)
        self._results[index] = plan.result()
        self._routes.drop(plan)
