"""What every plan is: a sans-I/O state machine that says what to send and when it needs the clock.

The shape is aioquic's connection and rust-libp2p's ``ClosestPeersIter``. A driver (the asyncio
one in :mod:`lumera_p2p.dht.driver`, or a test's loop with a fake clock) repeats:

1. ``poll(now)``: the :class:`Request` s to send now (each with a fresh ``token``);
2. ``next_event()`` until ``None``: what the node should record (a peer answered, failed, served
   a poisoned value, ...); a :class:`~lumera_p2p.dht.plans.events.ValueArrived` is handed to the
   consumer, whose answer goes back through ``on_verdict``;
3. ``abandoned()``: tokens whose answers the plan no longer wants; cancel those requests;
4. if ``done``: stop, cancel whatever is still outstanding, and read ``result()``;
5. otherwise wait until a response arrives (``on_response(token, message, now)``), a request
   fails (``on_failure(token, error, now)``), or ``next_deadline()`` passes, and go to 1.

A plan never awaits, sleeps, reads a clock or touches a socket or a database: every input comes
with ``now``. Answers for tokens a plan no longer tracks (a superseded attempt, a request it gave
up on) are ignored, so a driver may deliver anything late. A request that names an earlier token
in ``supersedes`` replaces it; the driver cancels the earlier one and reports nothing for it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from lumera_p2p.dht.plans.events import Event
from lumera_p2p.errors import TransportError
from lumera_p2p.kademlia import Contact
from lumera_p2p.wire.messages import Message, MessageData, MessageType

R_co = TypeVar("R_co", covariant=True)  # a plan of a subtype is a plan of its base


@dataclass(frozen=True)
class Request:
    """One RPC a plan wants sent; the driver wraps ``data`` in a message from us."""

    token: int
    peer: Contact
    mtype: MessageType
    data: MessageData | None
    #: Seconds to wait for the answer; ``None``: the node's per-type timeout.
    timeout: float | None = None
    #: The token of an earlier attempt this one replaces (a retry): cancel that one.
    supersedes: int | None = None
    #: Tell the plan when a large answer starts to arrive (``on_progress``).
    watch: bool = False


class Plan(ABC, Generic[R_co]):
    """Base of every plan: a token counter and an event queue (see the module docstring)."""

    def __init__(self) -> None:
        self._events: deque[Event] = deque()
        self._next_token = 0
        self._abandoned: list[int] = []

    # --- what the driver asks ---------------------------------------------------------

    @abstractmethod
    def poll(self, now: float) -> list[Request]:
        """Apply timeouts at ``now``; return the requests to send now."""

    def next_deadline(self) -> float | None:
        """When ``poll`` must be called again even if nothing arrives (None: not needed)."""
        return None

    def next_event(self) -> Event | None:
        """The oldest event not yet taken, or None."""
        return self._events.popleft() if self._events else None

    def abandoned(self) -> list[int]:
        """Tokens of requests whose answers are no longer wanted (each reported once)."""
        out, self._abandoned = self._abandoned, []
        return out

    @property
    @abstractmethod
    def done(self) -> bool:
        """True once the plan needs nothing more; ``result()`` is then final."""

    @abstractmethod
    def result(self) -> R_co:
        """What the plan achieved (meaningful once ``done``)."""

    # --- what the driver tells --------------------------------------------------------

    @abstractmethod
    def on_response(self, token: int, message: Message, now: float) -> None:
        """The request ``token`` was answered with ``message`` (of the type asked)."""

    @abstractmethod
    def on_failure(self, token: int, error: TransportError, now: float) -> None:
        """The request ``token`` got no usable answer."""

    def on_progress(self, token: int, extra: float, now: float) -> None:
        """The answer to request ``token`` (sent with ``watch``) has started to arrive and
        may take ``extra`` seconds more (its size at the transport's rate). Plans that
        enforce their own deadlines extend them; by default nothing changes."""

    def on_verdict(self, key: bytes, accepted: bool, now: float) -> None:
        """The consumer's answer to a ``ValueArrived`` event (plans that stream values)."""
        raise TypeError(f"{type(self).__name__} does not deliver values")

    # --- for subclasses ---------------------------------------------------------------

    def _token(self) -> int:
        self._next_token += 1
        return self._next_token

    def _emit(self, event: Event) -> None:
        self._events.append(event)

    def _abandon(self, tokens: Iterable[int]) -> None:
        self._abandoned.extend(tokens)

    def _adopt_events(self, inner: Plan[object]) -> None:
        """Move every event of an embedded plan into ours, in order."""
        while (event := inner.next_event()) is not None:
            self._events.append(event)


class Routes:
    """Outer tokens for the requests of embedded plans, so a plan can run others inside it.

    ``pump`` polls an inner plan and gives each of its requests a token of the owner
    (translating ``supersedes`` too); ``take`` finds which inner plan and token an answer
    belongs to; ``settle`` passes an inner plan's events and abandoned tokens on to the owner.
    """

    def __init__(self, owner: Plan[object]) -> None:
        self._owner = owner
        self._inner: dict[int, tuple[Plan[object], int]] = {}
        self._outer: dict[tuple[int, int], int] = {}
        self._by_plan: dict[int, set[int]] = {}  # id(plan) -> its outer tokens outstanding

    def pump(self, plan: Plan[object], now: float) -> list[Request]:
        """Poll ``plan`` and pass on what it asks: its requests (re-tokened, returned), its
        events and its abandoned tokens (given to the owner)."""
        out: list[Request] = []
        for request in plan.poll(now):
            token = self._owner._token()
            self._inner[token] = (plan, request.token)
            self._outer[(id(plan), request.token)] = token
            self._by_plan.setdefault(id(plan), set()).add(token)
            supersedes = None
            if request.supersedes is not None:
                supersedes = self._forget(plan, request.supersedes)
            # Built directly: ``dataclasses.replace`` looks up the fields every call.
            out.append(
                Request(
                    token,
                    request.peer,
                    request.mtype,
                    request.data,
                    request.timeout,
                    supersedes,
                    request.watch,
                )
            )
        self.settle(plan)
        return out

    def settle(self, plan: Plan[object]) -> None:
        """After an input to ``plan``: pass on its events and abandoned tokens."""
        self._owner._adopt_events(plan)
        self.abandon(plan, plan.abandoned())

    def abandon(self, plan: Plan[object], inner: Iterable[int]) -> None:
        """Forget ``plan``'s requests ``inner`` and have the owner abandon their outer tokens."""
        dropped = [t for t in (self._forget(plan, token) for token in inner) if t is not None]
        self._owner._abandon(dropped)

    def drop(self, plan: Plan[object]) -> None:
        """Abandon every request of ``plan`` still outstanding (the owner is done with it)."""
        outer = self._by_plan.pop(id(plan), set())
        for token in outer:
            _, inner = self._inner.pop(token)
            del self._outer[(id(plan), inner)]
        self._owner._abandon(sorted(outer))

    def take(self, token: int) -> tuple[Plan[object], int] | None:
        """The inner plan and token of outer ``token`` (None if not one of ours)."""
        route = self._inner.get(token)
        if route is not None:
            self._forget(route[0], route[1])
        return route

    def _forget(self, plan: Plan[object], inner: int) -> int | None:
        """Drop the route of ``plan``'s request ``inner``; its outer token, if it had one."""
        outer = self._outer.pop((id(plan), inner), None)
        if outer is not None:
            del self._inner[outer]
            tokens = self._by_plan.get(id(plan))
            if tokens is not None:
                tokens.discard(outer)
                if not tokens:
                    del self._by_plan[id(plan)]
        return outer
