"""GrpcRegistry against a real grpc.aio server on 127.0.0.1 serving the compiled Lumera protos."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import math
import socket
import time
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lumera_p2p.chain import GrpcRegistry, Supernode, SupernodeState
from lumera_p2p.chain import grpc_registry as gr
from lumera_p2p.chain._generated.cosmos.auth.v1beta1 import query_pb2 as auth_query_pb2
from lumera_p2p.chain._generated.cosmos.base.tendermint.v1beta1 import query_pb2 as node_pb2
from lumera_p2p.chain._generated.lumera.supernode.v1 import query_pb2 as sn_query_pb2
from lumera_p2p.chain._generated.lumera.supernode.v1 import supernode_pb2
from lumera_p2p.chain.grpc_registry import dial_candidates
from lumera_p2p.config import LumeraConfig
from lumera_p2p.errors import ChainError, ConfigError
from lumera_p2p.identity.keys import address_from_bytes
from tests.chain.fake_chain import (
    CHAIN_ID,
    P2P_PORTS,
    ChainData,
    Fixture,
    make_fixture,
    start_server,
)
from tests.support import eventually

N_SUPERNODES = 150
UNKNOWN = address_from_bytes(bytes(range(20)))


def brute_force(fixture: Fixture) -> dict[str, Supernode]:
    """What the list must hold, computed the slow obvious way from the fixture's structure."""
    out: dict[str, Supernode] = {}
    for index, (record, entries) in enumerate(zip(fixture.records, fixture.ips, strict=True)):
        account = record.supernode_account.strip()
        if not record.states or not account:
            continue
        top = max(s.height for s in record.states)
        chosen = next(s for s in record.states if s.height == top)  # first of the tallest
        host = None
        if entries:
            top_ip = max(e.height for e in entries)
            host = next(e for e in entries if e.height == top_ip).host
        out[account] = Supernode(
            address=account,
            state=SupernodeState(chosen.state),
            host=host,
            port=P2P_PORTS[index % len(P2P_PORTS)][1],
            state_height=top,
            validator_address=record.validator_address,
        )
    return out


@pytest.fixture
def fixture_data() -> Fixture:
    return make_fixture(N_SUPERNODES)


@pytest.fixture
async def chain(fixture_data: Fixture) -> AsyncIterator[tuple[ChainData, int]]:
    data = ChainData(records=list(fixture_data.records))
    data.accounts = {r.supernode_account for r in fixture_data.records if r.supernode_account}
    server, port = await start_server(data)
    try:
        yield data, port
    finally:
        await server.stop(None)


def registry(port: int, **kwargs: object) -> GrpcRegistry:
    return GrpcRegistry(f"127.0.0.1:{port}", CHAIN_ID, **kwargs)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- listing ----------------------------------------------------------------------------------


def test_fixture_has_the_awkward_cases(fixture_data: Fixture) -> None:
    records = fixture_data.records
    assert len(records) > 100
    assert any(not r.states for r in records)
    assert any(not r.prev_ip_addresses for r in records)
    assert any(not r.supernode_account for r in records)
    ties = [
        r
        for r in records
        if len(r.states) > 1
        and [s.height for s in r.states].count(max(s.height for s in r.states)) > 1
        and len({s.state for s in r.states if s.height == max(x.height for x in r.states)}) > 1
    ]
    assert ties, "no equal-height tie with different states"
    assert {r.p2p_port for r in records} >= {"", "abc", "70000", "4446"}
    assert any("://" in e.address for r in records for e in r.prev_ip_addresses)


async def test_list_pages_through_next_key(
    chain: tuple[ChainData, int], fixture_data: Fixture
) -> None:
    data, port = chain
    reg = registry(port, page_limit=7)
    try:
        nodes = await reg.list_supernodes()
    finally:
        await reg.close()
    assert data.calls["ListSuperNodes"] == math.ceil(N_SUPERNODES / 7)
    expected = brute_force(fixture_data)
    assert {n.address: n for n in nodes} == expected
    assert len(nodes) == len(expected)
    # The mix the fixture promises really reaches the result.
    assert {n.state for n in nodes} >= {SupernodeState.ACTIVE, SupernodeState.DISABLED}
    assert any(n.host is None for n in nodes)
    assert {n.port for n in nodes} >= {4445, 4446}


async def test_list_default_limit_is_one_page(
    chain: tuple[ChainData, int], fixture_data: Fixture
) -> None:
    data, port = chain
    reg = registry(port)
    try:
        nodes = await reg.list_supernodes()
        assert reg.target == f"127.0.0.1:{port}"
    finally:
        await reg.close()
    assert data.calls["ListSuperNodes"] == 1
    assert {n.address: n for n in nodes} == brute_force(fixture_data)


async def test_server_applies_cosmos_default_without_pagination(
    chain: tuple[ChainData, int], fixture_data: Fixture
) -> None:
    """What the Go node sees (no pagination: 100 rows), and that we still get everything."""
    data, port = chain
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        raw = await channel.unary_unary(gr.LIST_SUPERNODES)(b"", timeout=5)
    first = sn_query_pb2.QueryListSuperNodesResponse.FromString(raw)
    assert len(first.supernodes) == 100
    assert first.pagination.next_key
    assert first.pagination.total == N_SUPERNODES

    reg = registry(port, page_limit=None)
    try:
        nodes = await reg.list_supernodes()
    finally:
        await reg.close()
    assert data.calls["ListSuperNodes"] == 1 + math.ceil(N_SUPERNODES / 100)
    assert {n.address: n for n in nodes} == brute_force(fixture_data)


async def test_empty_chain_lists_nothing() -> None:
    server, port = await start_server(ChainData(records=[]))
    reg = registry(port)
    try:
        assert await reg.list_supernodes() == []
    finally:
        await reg.close()
        await server.stop(None)


# --- single lookups ---------------------------------------------------------------------------


async def test_get_supernode_found_and_not_found(
    chain: tuple[ChainData, int], fixture_data: Fixture
) -> None:
    data, port = chain
    expected = brute_force(fixture_data)
    address, want = next(iter(expected.items()))
    reg = registry(port)
    try:
        assert await reg.get_supernode(address) == want
        assert await reg.get_supernode(UNKNOWN) is None
        calls = data.calls["GetSuperNodeBySuperNodeAddress"]
        assert await reg.get_supernode("not-an-address") is None
        assert data.calls["GetSuperNodeBySuperNodeAddress"] == calls  # not even asked
    finally:
        await reg.close()


async def test_is_registered_supernode_ignores_state(
    chain: tuple[ChainData, int], fixture_data: Fixture
) -> None:
    _, port = chain
    disabled = next(
        n for n in brute_force(fixture_data).values() if n.state is SupernodeState.DISABLED
    )
    stateless = next(r.supernode_account for r in fixture_data.records if not r.states)
    reg = registry(port)
    try:
        assert await reg.is_registered_supernode(disabled.address)
        # Registered on chain (a record exists) even though the listing skips it.
        assert await reg.is_registered_supernode(stateless)
        assert not await reg.is_registered_supernode(UNKNOWN)
        assert not await reg.is_registered_supernode("lumera1garbage")
    finally:
        await reg.close()


async def test_padded_account_is_not_the_address(fixture_data: Fixture) -> None:
    """Go's handshake compares supernode_account with the address exactly."""
    record = next(r for r in fixture_data.records if r.supernode_account.startswith(" "))
    data = ChainData(records=[record])
    server, port = await start_server(data)
    reg = registry(port)
    try:
        assert not await reg.is_registered_supernode(record.supernode_account.strip())
    finally:
        await reg.close()
        await server.stop(None)


async def test_account_exists(chain: tuple[ChainData, int]) -> None:
    data, port = chain
    member = sorted(data.accounts)[0].strip()
    data.accounts.add(member)
    reg = registry(port)
    try:
        assert await reg.account_exists(member)
        assert not await reg.account_exists(UNKNOWN)
        assert not await reg.account_exists("")
    finally:
        await reg.close()


async def test_handshake_lookups_cache_positive_answers_for_the_ttl(
    chain: tuple[ChainData, int], fixture_data: Fixture
) -> None:
    data, port = chain
    now = [1000.0]
    address = next(iter(brute_force(fixture_data)))
    data.accounts.add(address)
    reg = registry(port, clock=lambda: now[0], cache_ttl=3600.0)
    try:
        for _ in range(3):
            assert await reg.is_registered_supernode(address)
            assert await reg.account_exists(address)
            assert not await reg.is_registered_supernode(UNKNOWN)
        assert data.calls["GetSuperNodeBySuperNodeAddress"] == 1 + 3  # negatives: every time
        assert data.calls["AccountInfo"] == 1
        now[0] += 3599.0
        assert await reg.is_registered_supernode(address)
        assert data.calls["GetSuperNodeBySuperNodeAddress"] == 4
        now[0] += 2.0
        assert await reg.is_registered_supernode(address)
        assert data.calls["GetSuperNodeBySuperNodeAddress"] == 5
        reg.clear_cache()
        assert await reg.account_exists(address)
        assert data.calls["AccountInfo"] == 2
    finally:
        await reg.close()


async def test_concurrent_lookups_share_one_query(
    chain: tuple[ChainData, int], fixture_data: Fixture
) -> None:
    data, port = chain
    address = next(iter(brute_force(fixture_data)))
    reg = registry(port)
    try:
        await reg.connect()
        data.hold = asyncio.Event()  # the chain answers when we say
        asking = [asyncio.ensure_future(reg.is_registered_supernode(address)) for _ in range(20)]
        await eventually(lambda: data.calls["GetSuperNodeBySuperNodeAddress"] == 1)
        data.hold.set()
        assert all(await asyncio.gather(*asking))
        assert data.calls["GetSuperNodeBySuperNodeAddress"] == 1
        # A caller that gives up does not cancel the query for the others.
        data.hold = asyncio.Event()
        other = address_from_bytes(b"\x01" * 20)  # unknown: answers are not cached
        waiter = asyncio.ensure_future(reg.is_registered_supernode(other))
        quitter = asyncio.ensure_future(reg.is_registered_supernode(other))
        await eventually(lambda: data.calls["GetSuperNodeBySuperNodeAddress"] == 2)
        quitter.cancel()
        data.hold.set()
        assert await waiter is False
        assert quitter.cancelled()
        assert data.calls["GetSuperNodeBySuperNodeAddress"] == 2
    finally:
        await reg.close()


# --- connection and errors ----------------------------------------------------------------------


async def test_chain_id_mismatch_is_a_clear_error(chain: tuple[ChainData, int]) -> None:
    _, port = chain
    reg = GrpcRegistry(f"127.0.0.1:{port}", "lumera-mainnet-1")
    try:
        with pytest.raises(ChainError, match=r"serves chain 'lumera-testnet-2'.*lumera-mainnet-1"):
            await reg.list_supernodes()
    finally:
        await reg.close()


async def test_server_down_is_a_chain_error_naming_the_address() -> None:
    port = free_port()
    reg = registry(port, connect_timeout=2.0)
    started = time.monotonic()
    try:
        with pytest.raises(ChainError, match=rf"127\.0\.0\.1:{port}") as info:
            await reg.list_supernodes()
        assert "plaintext" in str(info.value) and "TLS" in str(info.value)
        with pytest.raises(ChainError):
            await reg.is_registered_supernode(UNKNOWN)
    finally:
        await reg.close()
    assert time.monotonic() - started < 10


async def test_server_going_away_after_connecting(fixture_data: Fixture) -> None:
    data = ChainData(records=list(fixture_data.records))
    server, port = await start_server(data)
    reg = registry(port, timeout=2.0)
    try:
        await reg.connect()
        await server.stop(None)
        with pytest.raises(ChainError, match=rf"127\.0\.0\.1:{port}"):
            await reg.list_supernodes()
    finally:
        await reg.close()


async def test_slow_answer_times_out(chain: tuple[ChainData, int]) -> None:
    data, port = chain
    reg = registry(port, timeout=0.2)
    try:
        await reg.connect()
        data.hold = asyncio.Event()  # never set: only the 0.2 s timeout can end the query
        with pytest.raises(ChainError, match=r"did not answer GetSuperNodeBySuperNodeAddress"):
            await reg.get_supernode(UNKNOWN)
    finally:
        await reg.close()


RawHandler = Callable[[bytes, grpc.aio.ServicerContext], bytes]


async def _raw_chain(list_supernodes: RawHandler) -> tuple[grpc.aio.Server, int]:
    """A chain server whose GetNodeInfo is honest and whose ListSuperNodes answers raw bytes."""

    def node_info(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        info = node_pb2.GetNodeInfoResponse()
        info.default_node_info.network = CHAIN_ID
        return info.SerializeToString()

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "cosmos.base.tendermint.v1beta1.Service",
                {"GetNodeInfo": grpc.unary_unary_rpc_method_handler(node_info)},
            ),
            grpc.method_handlers_generic_handler(
                "lumera.supernode.v1.Query",
                {"ListSuperNodes": grpc.unary_unary_rpc_method_handler(list_supernodes)},
            ),
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


async def test_malformed_reply_is_a_chain_error() -> None:
    def garbage(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return b"\x0a\xff\xff\xff"  # field 1, length far beyond the message

    server, port = await _raw_chain(garbage)
    reg = registry(port)
    try:
        with pytest.raises(ChainError, match="malformed reply"):
            await reg.list_supernodes()
        with pytest.raises(ChainError, match="UNIMPLEMENTED"):
            await reg.account_exists(UNKNOWN)
    finally:
        await reg.close()
        await server.stop(None)


async def test_repeated_page_key_is_refused() -> None:
    record = make_fixture(1).records[0]

    def loop(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        response = sn_query_pb2.QueryListSuperNodesResponse(supernodes=[record])
        response.pagination.next_key = b"same"
        return response.SerializeToString()

    server, port = await _raw_chain(loop)
    reg = registry(port)
    try:
        with pytest.raises(ChainError, match="repeats a page key"):
            await reg.list_supernodes()
    finally:
        await reg.close()
        await server.stop(None)


async def test_closed_registry_refuses(chain: tuple[ChainData, int]) -> None:
    _, port = chain
    reg = registry(port)
    await reg.connect()
    await reg.close()
    with pytest.raises(ChainError, match="closed"):
        await reg.list_supernodes()
    with pytest.raises(ChainError, match="closed"):
        await reg.account_exists(UNKNOWN)
    await reg.close()  # twice is fine


async def test_close_during_a_lookup(chain: tuple[ChainData, int]) -> None:
    data, port = chain
    reg = registry(port)
    await reg.connect()
    data.hold = asyncio.Event()  # never set: the lookup is still out when we close
    pending = asyncio.ensure_future(reg.is_registered_supernode(UNKNOWN))
    await eventually(lambda: data.calls["GetSuperNodeBySuperNodeAddress"] == 1)
    await reg.close()
    with pytest.raises(ChainError, match="closed"):
        await pending


def _self_signed() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lumera-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


async def test_tls_endpoint_with_https_and_plaintext_fallback(fixture_data: Fixture) -> None:
    key_pem, cert_pem = _self_signed()
    data = ChainData(records=list(fixture_data.records))
    server, port = await start_server(data, grpc.ssl_server_credentials([(key_pem, cert_pem)]))
    try:
        for addr in (f"https://127.0.0.1:{port}", f"127.0.0.1:{port}"):
            reg = GrpcRegistry(addr, CHAIN_ID, root_certificates=cert_pem, connect_timeout=3.0)
            try:
                nodes = await reg.list_supernodes()
            finally:
                await reg.close()
            assert {n.address: n for n in nodes} == brute_force(fixture_data)
        # Without the test CA the certificate is refused: an error, not a plaintext downgrade.
        reg = GrpcRegistry(f"127.0.0.1:{port}", CHAIN_ID, connect_timeout=3.0)
        try:
            with pytest.raises(ChainError, match="TLS"):
                await reg.connect()
        finally:
            await reg.close()
    finally:
        await server.stop(None)


# --- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        ("127.0.0.1:9090", [("127.0.0.1:9090", False), ("127.0.0.1:9090", True)]),
        ("grpc.testnet.lumera.io:443", [("grpc.testnet.lumera.io:443", True)]),
        (
            "node.example",
            [("node.example:9090", False), ("node.example:9090", True), ("node.example:443", True)],
        ),
        ("https://node.example", [("node.example:9090", True), ("node.example:443", True)]),
        ("https://node.example:1234/", [("node.example:1234", True)]),
        ("http://node.example:1234", [("node.example:1234", False), ("node.example:1234", True)]),
        ("[::1]:9090", [("[::1]:9090", False), ("[::1]:9090", True)]),
        ("::1", [("[::1]:9090", False), ("[::1]:9090", True), ("[::1]:443", True)]),
        ("  tcp://10.1.2.3:26657 ", [("10.1.2.3:26657", False), ("10.1.2.3:26657", True)]),
    ],
)
def test_dial_candidates(addr: str, expected: list[tuple[str, bool]]) -> None:
    assert dial_candidates(addr) == expected


@pytest.mark.parametrize("addr", ["", "https://", "host:0", "host:99999", "host:x1", ":9090"])
def test_bad_grpc_addr(addr: str) -> None:
    with pytest.raises(ConfigError, match=r"lumera\.grpc_addr"):
        dial_candidates(addr)


def test_from_config() -> None:
    reg = GrpcRegistry.from_config(LumeraConfig(grpc_addr="localhost:9090", chain_id=CHAIN_ID))
    assert reg.target is None  # lazy: nothing dialled yet
    with pytest.raises(ConfigError, match=r"lumera\.grpc_addr"):
        GrpcRegistry.from_config(LumeraConfig())
    with pytest.raises(ConfigError, match=r"lumera\.chain_id"):
        GrpcRegistry("localhost:9090", "")


def test_method_names_match_the_compiled_services() -> None:
    def full(desc: object, method: str) -> str:
        return f"/{desc.full_name}/{method}"  # type: ignore[attr-defined]

    sn = sn_query_pb2.DESCRIPTOR.services_by_name["Query"]
    auth = auth_query_pb2.DESCRIPTOR.services_by_name["Query"]
    node = node_pb2.DESCRIPTOR.services_by_name["Service"]
    assert full(sn, "ListSuperNodes") == gr.LIST_SUPERNODES
    assert full(sn, "GetSuperNodeBySuperNodeAddress") == gr.GET_SUPERNODE
    assert full(auth, "AccountInfo") == gr.ACCOUNT_INFO
    assert full(node, "GetNodeInfo") == gr.GET_NODE_INFO
    assert gr.LIST_SUPERNODES == "/lumera.supernode.v1.Query/ListSuperNodes"
    # Field numbers the spec pins (chain-and-keys.md §1.2).
    fields = {f.name: f.number for f in supernode_pb2.SuperNode.DESCRIPTOR.fields}
    assert fields == {
        "validator_address": 1,
        "states": 2,
        "evidence": 3,
        "prev_ip_addresses": 4,
        "note": 5,
        "metrics": 6,
        "supernode_account": 7,
        "p2p_port": 8,
        "prev_supernode_accounts": 9,
    }
    request = sn_query_pb2.QueryListSuperNodesRequest()
    request.pagination.limit = 1000
    assert request.SerializeToString() == bytes.fromhex("0a0318e807")
    by_address = sn_query_pb2.QueryGetSuperNodeBySuperNodeAddressRequest(supernodeAddress="ab")
    assert by_address.SerializeToString() == b"\x0a\x02ab"
