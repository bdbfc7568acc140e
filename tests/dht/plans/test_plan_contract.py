"""What every plan promises a driver (``plans/base.py``): late answers are ignored, embedded
plans' requests are routed, re-tokened and abandoned through their owner, and inputs reach an
embedded plan exactly as they came."""

from __future__ import annotations

import dataclasses
import re

import pytest

from lumera_p2p.content import digest
from lumera_p2p.dht.contacts import wire_node
from lumera_p2p.dht.plans import (
    AllOf,
    BatchRetrievePlan,
    BatchStorePlan,
    HealthCheckPlan,
    LookupKind,
    LookupParams,
    LookupPlan,
    PingPlan,
    Plan,
    ProbePlan,
    Request,
    Routes,
    StorePlan,
)
from lumera_p2p.errors import TransportError
from lumera_p2p.kademlia import Contact
from lumera_p2p.wire.messages import FindValueRequest, Message, MessageType, StoreDataResponse

from .world import ME, reader


def contacts(n: int) -> list[Contact]:
    return [Contact(b"lumera-pc-%d" % i, f"10.4.0.{i + 1}", 4445) for i in range(n)]


def reply(peer: Contact, mtype: MessageType, data: object = None) -> Message:
    return Message(
        sender=wire_node(peer),
        receiver=wire_node(ME),
        message_type=int(mtype),
        data=data,  # type: ignore[arg-type]
    )


class Sends(Plan[list[tuple[int, float, str]]]):
    """Sends ``n`` pings at its first poll; done after ``finish_after`` inputs. Records each
    input as (token, now, what) and, on its first input, abandons its requests at the
    positions ``give_up``."""

    def __init__(
        self, peers: list[Contact], finish_after: int = 1, give_up: tuple[int, ...] = ()
    ) -> None:
        super().__init__()
        self.peers = peers
        self.finish_after = finish_after
        self.give_up = give_up
        self.inputs: list[tuple[int, float, str]] = []
        self.sent: list[Request] = []

    def poll(self, now: float) -> list[Request]:
        if self.sent:
            return []
        self.sent = [Request(self._token(), p, MessageType.PING, None) for p in self.peers]
        return list(self.sent)

    @property
    def done(self) -> bool:
        return len(self.inputs) >= self.finish_after

    def result(self) -> list[tuple[int, float, str]]:
        return self.inputs

    def on_response(self, token: int, message: Message, now: float) -> None:
        self.inputs.append((token, now, "answer"))
        if len(self.inputs) == 1:
            self._abandon(self.sent[i].token for i in self.give_up)

    def on_failure(self, token: int, error: TransportError, now: float) -> None:
        self.inputs.append((token, now, str(error)))
        if len(self.inputs) == 1:
            self._abandon(self.sent[i].token for i in self.give_up)


class Owner(Plan[None]):
    """A plan that only owns a :class:`Routes` (for testing the routes themselves)."""

    def __init__(self) -> None:
        super().__init__()
        self.routes = Routes(self)

    def poll(self, now: float) -> list[Request]:
        return []

    @property
    def done(self) -> bool:
        return False

    def result(self) -> None:
        return None

    def on_response(self, token: int, message: Message, now: float) -> None:
        pass

    def on_failure(self, token: int, error: TransportError, now: float) -> None:
        pass


# --- Routes -------------------------------------------------------------------------------


def test_routes_retoken_take_once_and_abandon_through_the_owner() -> None:
    peers = contacts(3)
    owner = Owner()
    inner = Sends(peers, finish_after=3, give_up=(1,))
    outer = owner.routes.pump(inner, 0.0)
    assert [r.peer for r in outer] == peers
    assert len({r.token for r in outer}) == 3
    # An answer is routed to the inner plan's own token, once.
    mine = [r.token for r in inner.sent]
    assert owner.routes.take(outer[0].token) == (inner, mine[0])
    assert owner.routes.take(outer[0].token) is None
    inner.on_response(mine[0], reply(peers[0], MessageType.PING), 0.0)
    owner.routes.settle(inner)
    # The inner plan gave up its second request: the owner abandons that one's outer token.
    assert owner.abandoned() == [outer[1].token]
    assert owner.routes.take(outer[1].token) is None
    # Dropping the inner plan abandons only what is still outstanding (the third).
    owner.routes.drop(inner)
    assert owner.abandoned() == [outer[2].token]
    assert owner.routes.take(outer[2].token) is None
    owner.routes.drop(inner)  # nothing left: nothing more abandoned
    assert owner.abandoned() == []


def test_routes_ignore_an_inner_plan_giving_up_a_request_already_answered() -> None:
    peers = contacts(2)
    owner = Owner()
    inner = Sends(peers)
    outer = owner.routes.pump(inner, 0.0)
    assert owner.routes.take(outer[0].token) == (inner, inner.sent[0].token)
    owner.routes.abandon(inner, [inner.sent[0].token, inner.sent[1].token])
    assert owner.abandoned() == [outer[1].token]
    owner.routes.abandon(inner, [inner.sent[1].token])  # already given up
    assert owner.abandoned() == []


class Asks(Plan[None]):
    """Sends the requests it is given at its first poll."""

    def __init__(self, requests: list[Request]) -> None:
        super().__init__()
        self.requests = requests

    def poll(self, now: float) -> list[Request]:
        out, self.requests = self.requests, []
        return out

    @property
    def done(self) -> bool:
        return False

    def result(self) -> None:
        return None

    def on_response(self, token: int, message: Message, now: float) -> None:
        pass

    def on_failure(self, token: int, error: TransportError, now: float) -> None:
        pass


def test_routes_pass_on_every_field_of_a_request_but_its_tokens() -> None:
    # The routes build the outer request field by field: none may be dropped (every field
    # is given a value other than its default here), only the tokens are the owner's.
    peer = contacts(1)[0]
    body = FindValueRequest(target=bytes(32))
    first = Request(7, peer, MessageType.FIND_VALUE, body, timeout=3.5, watch=True)
    retry = Request(8, peer, MessageType.FIND_VALUE, body, timeout=4.5, supersedes=7, watch=True)
    owner = Owner()
    inner = Asks([first])
    (outer,) = owner.routes.pump(inner, 0.0)
    inner.requests = [retry]
    (outer_retry,) = owner.routes.pump(inner, 0.0)
    assert outer_retry.supersedes == outer.token != first.token
    for sent, got in ((first, outer), (retry, outer_retry)):
        for f in dataclasses.fields(Request):
            if f.name not in ("token", "supersedes"):
                assert getattr(got, f.name) == getattr(sent, f.name), f.name
                assert getattr(sent, f.name) != f.default, f.name


def test_routes_keep_two_inner_plans_apart() -> None:
    owner = Owner()
    first, second = Sends(contacts(2)), Sends(contacts(2))
    a = owner.routes.pump(first, 0.0)
    b = owner.routes.pump(second, 0.0)
    assert len({r.token for r in a + b}) == 4
    owner.routes.drop(first)
    assert sorted(owner.abandoned()) == sorted(r.token for r in a)
    assert owner.routes.take(b[1].token) == (second, second.sent[1].token)


def test_a_plan_that_streams_no_values_refuses_a_verdict() -> None:
    plan = PingPlan(contacts(1), reader())
    with pytest.raises(TypeError, match=r"^PingPlan does not deliver values$"):
        plan.on_verdict(b"k", True, 0.0)


# --- AllOf --------------------------------------------------------------------------------


def test_all_of_passes_inputs_on_unchanged_and_abandons_a_finished_plans_requests() -> None:
    peers = contacts(3)
    inner, other = Sends(peers[:2], finish_after=1), Sends(peers[2:])
    plan: AllOf[list[tuple[int, float, str]]] = AllOf([inner, other])
    sent = plan.poll(0.0)
    assert [r.peer for r in sent] == peers
    plan.on_failure(sent[0].token, TransportError("reset by peer"), 2.5)
    assert inner.inputs == [(inner.sent[0].token, 2.5, "reset by peer")]
    # The first plan is done with one request still out: AllOf gives that one up, while
    # the other plan runs on.
    assert not plan.done
    assert plan.abandoned() == [sent[1].token]
    plan.on_response(sent[2].token, reply(peers[2], MessageType.PING), 3.0)
    assert plan.done
    assert plan.result() == [
        [(inner.sent[0].token, 2.5, "reset by peer")],
        [(other.sent[0].token, 3.0, "answer")],
    ]


def test_all_of_passes_answers_on_with_their_time() -> None:
    peers = contacts(1)
    inner = Sends(peers)
    plan: AllOf[list[tuple[int, float, str]]] = AllOf([inner])
    (request,) = plan.poll(0.0)
    plan.on_response(request.token, reply(peers[0], MessageType.PING), 7.25)
    assert inner.inputs == [(inner.sent[0].token, 7.25, "answer")]


def test_all_of_with_a_limit_of_one_runs_one_plan_at_a_time() -> None:
    peers = contacts(3)
    plans = [Sends([p]) for p in peers]
    plan: AllOf[list[tuple[int, float, str]]] = AllOf(plans, limit=1)
    for i, peer in enumerate(peers):
        (request,) = plan.poll(float(i))
        assert request.peer == peer
        assert plan.poll(float(i)) == []
        plan.on_response(request.token, reply(peer, MessageType.PING), float(i))
    assert plan.done
    assert [r[0][2] for r in plan.result()] == ["answer"] * 3


def test_all_of_limit_must_be_at_least_one() -> None:
    with pytest.raises(ValueError, match=r"^limit must be at least 1$"):
        AllOf([], limit=0)


# --- late and unknown tokens --------------------------------------------------------------


def late(plan: Plan[object], peer: Contact, mtype: MessageType) -> None:
    """Deliver an answer and a failure for tokens the plan never sent."""
    plan.on_response(10_000, reply(peer, mtype, StoreDataResponse()), 1.0)
    plan.on_failure(10_001, TransportError("late"), 1.0)


def test_every_plan_ignores_answers_for_tokens_it_does_not_track() -> None:
    peers = contacts(3)
    key = digest(b"late")
    lookup = LookupPlan(LookupKind.NODES, key, peers, reader(), LookupParams())
    plans: list[tuple[Plan[object], MessageType]] = [
        (
            StorePlan(key, b"late", 0, lookup, replicas=2, store_eligible=lambda c: True),
            MessageType.STORE_DATA,
        ),
        (BatchStorePlan([key], [b"late"], [peers]), MessageType.BATCH_STORE_DATA),
        (PingPlan(peers, reader()), MessageType.PING),
        (HealthCheckPlan(peers, reader()), MessageType.PING),
        (
            BatchRetrievePlan([key], 1, "tx", {key: peers}, reader(), LookupParams()),
            MessageType.BATCH_GET_VALUES,
        ),
    ]
    for plan, mtype in plans:
        sent = plan.poll(0.0)
        assert sent, type(plan).__name__
        late(plan, peers[0], mtype)
        assert not plan.done, type(plan).__name__
        while plan.next_event() is not None:
            pass
        assert plan.abandoned() == []


def test_probe_sends_one_ping_with_a_fresh_token() -> None:
    (peer,) = contacts(1)
    plan = ProbePlan(peer)
    (request,) = plan.poll(0.0)
    assert isinstance(request.token, int)
    assert (request.peer, request.mtype, request.data) == (peer, MessageType.PING, None)
    assert plan.poll(0.0) == []


# --- error texts --------------------------------------------------------------------------


def test_bad_arguments_are_named() -> None:
    key = digest(b"x")
    lookup = LookupPlan(LookupKind.NODES, bytes(32), [], reader(), LookupParams())
    with pytest.raises(ValueError, match=r"^the lookup must be for the key being stored$"):
        StorePlan(key, b"x", 0, lookup, replicas=6, store_eligible=lambda c: True)
    with pytest.raises(
        ValueError, match=r"^keys, values and targets must have one entry per value$"
    ):
        BatchStorePlan([key], [b"x"], [])
    with pytest.raises(ValueError, match=r"^node_id is given exactly for a NODE_ID lookup$"):
        LookupPlan(LookupKind.NODE_ID, bytes(32), [], reader(), LookupParams())
    with pytest.raises(
        ValueError, match="^" + re.escape("a NODE_ID lookup's target is the node ID's hash") + "$"
    ):
        LookupPlan(LookupKind.NODE_ID, bytes(32), [], reader(), LookupParams(), node_id=b"x")
