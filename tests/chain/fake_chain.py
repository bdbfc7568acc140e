"""A real grpc.aio server on 127.0.0.1 speaking the Lumera queries, with fixture data.

It pages ``ListSuperNodes`` the way Cosmos ``query.Paginate`` does: key *or* offset, ``limit``
0 meaning 100, no pagination meaning limit 100 with ``count_total``, and ``next_key`` set to
the key of the first row after the page. Unlike the chain (whose ``FilteredPaginate`` drops
them), it serves records without states, so the client's skipping of them is exercised too.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field

import grpc

from lumera_p2p.chain._generated.cosmos.auth.v1beta1 import auth_pb2
from lumera_p2p.chain._generated.cosmos.auth.v1beta1 import query_pb2 as auth_query_pb2
from lumera_p2p.chain._generated.cosmos.auth.v1beta1 import query_pb2_grpc as auth_grpc
from lumera_p2p.chain._generated.cosmos.base.query.v1beta1 import pagination_pb2
from lumera_p2p.chain._generated.cosmos.base.tendermint.v1beta1 import query_pb2 as node_pb2
from lumera_p2p.chain._generated.cosmos.base.tendermint.v1beta1 import (
    query_pb2_grpc as node_grpc,
)
from lumera_p2p.chain._generated.lumera.supernode.v1 import query_pb2 as sn_query_pb2
from lumera_p2p.chain._generated.lumera.supernode.v1 import query_pb2_grpc as sn_grpc
from lumera_p2p.chain._generated.lumera.supernode.v1 import supernode_pb2
from lumera_p2p.chain._generated.tendermint.p2p import types_pb2
from lumera_p2p.identity.keys import address_from_bytes

CHAIN_ID = "lumera-testnet-2"
COSMOS_DEFAULT_LIMIT = 100


@dataclass
class ChainData:
    """What the fake chain knows, and what it was asked."""

    records: list[supernode_pb2.SuperNode]
    accounts: set[str] = field(default_factory=set)
    network: str = CHAIN_ID
    #: While set to an unset event, supernode and account queries wait for it: a slow chain
    #: whose answer comes exactly when the test says.
    hold: asyncio.Event | None = None
    calls: Counter[str] = field(default_factory=Counter)

    def key(self, index: int) -> bytes:
        # Opaque store keys, in listing order (the chain uses the validator operator address).
        return b"sn/" + index.to_bytes(4, "big")


class SupernodeQuery(sn_grpc.QueryServicer):
    def __init__(self, data: ChainData) -> None:
        self.data = data

    async def ListSuperNodes(  # noqa: N802 (the gRPC method name)
        self, request: sn_query_pb2.QueryListSuperNodesRequest, context: grpc.aio.ServicerContext
    ) -> sn_query_pb2.QueryListSuperNodesResponse:
        self.data.calls["ListSuperNodes"] += 1
        if self.data.hold is not None:
            await self.data.hold.wait()
        rows = self.data.records
        if request.HasField("pagination"):
            page = request.pagination
        else:
            page = pagination_pb2.PageRequest(count_total=True)
        if page.key and page.offset:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "either offset or key is expected, got both"
            )
        if page.reverse:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "reverse is not faked")
        limit = page.limit or COSMOS_DEFAULT_LIMIT
        if page.key:
            keys = [self.data.key(i) for i in range(len(rows))]
            start = next((i for i, k in enumerate(keys) if k >= page.key), len(rows))
        else:
            start = page.offset
        end = min(start + limit, len(rows))
        response = sn_query_pb2.QueryListSuperNodesResponse(supernodes=rows[start:end])
        if end < len(rows):
            response.pagination.next_key = self.data.key(end)
        if page.count_total and not page.key:
            response.pagination.total = len(rows)
        return response

    async def GetSuperNodeBySuperNodeAddress(  # noqa: N802
        self,
        request: sn_query_pb2.QueryGetSuperNodeBySuperNodeAddressRequest,
        context: grpc.aio.ServicerContext,
    ) -> sn_query_pb2.QueryGetSuperNodeBySuperNodeAddressResponse:
        self.data.calls["GetSuperNodeBySuperNodeAddress"] += 1
        if self.data.hold is not None:
            await self.data.hold.wait()
        for record in self.data.records:
            if record.supernode_account == request.supernodeAddress:
                return sn_query_pb2.QueryGetSuperNodeBySuperNodeAddressResponse(supernode=record)
        await context.abort(grpc.StatusCode.NOT_FOUND, "supernode not found")
        raise AssertionError("unreachable")


class AuthQuery(auth_grpc.QueryServicer):
    def __init__(self, data: ChainData) -> None:
        self.data = data

    async def AccountInfo(  # noqa: N802
        self, request: auth_query_pb2.QueryAccountInfoRequest, context: grpc.aio.ServicerContext
    ) -> auth_query_pb2.QueryAccountInfoResponse:
        self.data.calls["AccountInfo"] += 1
        if self.data.hold is not None:
            await self.data.hold.wait()
        if request.address not in self.data.accounts:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"account {request.address} not found")
        account = auth_pb2.BaseAccount(address=request.address, account_number=7, sequence=3)
        return auth_query_pb2.QueryAccountInfoResponse(info=account)


class NodeService(node_grpc.ServiceServicer):
    def __init__(self, data: ChainData) -> None:
        self.data = data

    async def GetNodeInfo(  # noqa: N802
        self, request: node_pb2.GetNodeInfoRequest, context: grpc.aio.ServicerContext
    ) -> node_pb2.GetNodeInfoResponse:
        self.data.calls["GetNodeInfo"] += 1
        info = types_pb2.DefaultNodeInfo(network=self.data.network, moniker="fake", version="0.38")
        return node_pb2.GetNodeInfoResponse(default_node_info=info)


async def start_server(
    data: ChainData, credentials: grpc.ServerCredentials | None = None
) -> tuple[grpc.aio.Server, int]:
    """Serve ``data`` on 127.0.0.1 at a free port; returns the server and the port."""
    server = grpc.aio.server()
    sn_grpc.add_QueryServicer_to_server(SupernodeQuery(data), server)
    auth_grpc.add_QueryServicer_to_server(AuthQuery(data), server)
    node_grpc.add_ServiceServicer_to_server(NodeService(data), server)
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    return server, port


# --- fixture data -----------------------------------------------------------------------------

# (p2p_port on chain, port the Go node uses)
P2P_PORTS = [
    ("", 4445),
    ("abc", 4445),
    ("70000", 4445),
    ("4446", 4446),
    ("04447", 4447),
    (" 4448", 4445),
    ("+4449", 4445),
    ("65535", 65535),
]
SCHEMES = ["", "http://", "https://", "grpc://"]


@dataclass(frozen=True)
class IpEntry:
    """One prev_ip_addresses entry, with the host Go extracts from it."""

    text: str
    height: int
    host: str  # what Supernode.host should hold


def _ip_entry(rng: random.Random, height: int) -> IpEntry:
    kind = rng.choice(["v4", "name", "v6"])
    if kind == "v4":
        host = f"203.0.113.{rng.randrange(1, 255)}"
    elif kind == "name":
        host = f"sn{rng.randrange(1000)}.example.org"
    else:
        host = f"2001:db8::{rng.randrange(1, 0xFFFF):x}"
    scheme = rng.choice(SCHEMES)
    port = rng.choice([None, 4444, 443])
    shown = f"[{host}]" if kind == "v6" and (port is not None or scheme) else host
    text = scheme + shown + ("" if port is None else f":{port}")
    if rng.random() < 0.2:
        text = f"  {text} "
    return IpEntry(text, height, host)


@dataclass(frozen=True)
class Fixture:
    """The records served and what each one should become (None: skipped)."""

    records: list[supernode_pb2.SuperNode]
    ips: list[list[IpEntry]]


def make_fixture(count: int = 150, seed: int = 6) -> Fixture:
    """``count`` supernode records in mixed shapes, deterministic for a seed."""
    rng = random.Random(seed)
    records: list[supernode_pb2.SuperNode] = []
    ips: list[list[IpEntry]] = []
    for i in range(count):
        account = address_from_bytes(rng.randbytes(20))
        if i % 37 == 5:
            account = f" {account}\t"  # padded: Go trims it
        if i % 53 == 7:
            account = ""
        states = []
        n_states = 0 if i % 11 == 3 else rng.randrange(1, 5)
        for _ in range(n_states):
            # A narrow height range makes equal-height ties common.
            states.append(
                supernode_pb2.SuperNodeStateRecord(
                    state=rng.randrange(0, 7), height=rng.choice([100, 200, 200, 300, 300])
                )
            )
        entries: list[IpEntry] = []
        for _ in range(0 if i % 13 == 4 else rng.randrange(1, 4)):
            entries.append(_ip_entry(rng, rng.choice([100, 150, 150, 400])))
        p2p_port, _ = P2P_PORTS[i % len(P2P_PORTS)]
        record = supernode_pb2.SuperNode(
            validator_address=f"lumeravaloper1fake{i}",
            states=states,
            prev_ip_addresses=[
                supernode_pb2.IPAddressHistory(address=e.text, height=e.height) for e in entries
            ],
            note="v2.4.0",
            metrics=supernode_pb2.MetricsAggregate(
                metrics=[supernode_pb2.MetricValue(name="cpu", value=0.5)], report_count=3
            ),
            supernode_account=account,
            p2p_port=p2p_port,
            evidence=[supernode_pb2.Evidence(reporter_address="x", severity=1)] if i % 9 else [],
        )
        records.append(record)
        ips.append(entries)
    return Fixture(records, ips)
