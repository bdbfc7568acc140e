"""Whatever a chain endpoint sends, decoding raises only DecodeError or our own errors."""

from __future__ import annotations

from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lumera_p2p.chain import endpoint_rejection, supernode_from_record
from lumera_p2p.chain._generated.lumera.supernode.v1 import query_pb2, supernode_pb2
from lumera_p2p.errors import LumeraP2PError
from tests.chain.fake_chain import make_fixture

_VALID = query_pb2.QueryListSuperNodesResponse(
    supernodes=make_fixture(12, seed=1).records
).SerializeToString()


def _consume(raw: bytes) -> None:
    try:
        response = query_pb2.QueryListSuperNodesResponse.FromString(raw)
    except DecodeError:
        return
    for record in response.supernodes:
        _use(record)


def _use(record: supernode_pb2.SuperNode) -> None:
    try:
        node = supernode_from_record(record)
    except LumeraP2PError:
        return
    if node is None:
        return
    assert len(node.routing_id) == 32
    _ = node.endpoint, node.routing_eligible, node.store_eligible
    if node.host is not None:
        reason = endpoint_rejection(node.host, node.port, allow_private=False)
        assert reason is None or isinstance(reason, str)


@settings(max_examples=400)
@given(st.binary(max_size=4096))
def test_arbitrary_bytes(raw: bytes) -> None:
    _consume(raw)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_valid_responses(data: st.DataObject) -> None:
    raw = bytearray(_VALID)
    for _ in range(data.draw(st.integers(1, 8))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        at = data.draw(st.integers(0, max(len(raw) - 1, 0)))
        if op == "flip" and raw:
            raw[at] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del raw[at:]
        elif op == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=16))
        elif raw:
            del raw[at : at + data.draw(st.integers(1, 16))]
    _consume(bytes(raw))


_int64 = st.integers(-(2**63), 2**63 - 1)


@settings(max_examples=300)
@given(
    account=st.text(max_size=60),
    states=st.lists(st.tuples(st.integers(-(2**31), 2**31 - 1), _int64), max_size=4),
    ips=st.lists(st.tuples(st.text(max_size=40), _int64), max_size=4),
    port=st.text(max_size=12),
)
def test_arbitrary_field_values(
    account: str, states: list[tuple[int, int]], ips: list[tuple[str, int]], port: str
) -> None:
    record = supernode_pb2.SuperNode(
        supernode_account=account,
        states=[supernode_pb2.SuperNodeStateRecord(state=s, height=h) for s, h in states],
        prev_ip_addresses=[supernode_pb2.IPAddressHistory(address=a, height=h) for a, h in ips],
        p2p_port=port,
    )
    _use(record)
    # And the same after a wire round trip, as a client would see it.
    _consume(query_pb2.QueryListSuperNodesResponse(supernodes=[record]).SerializeToString())
