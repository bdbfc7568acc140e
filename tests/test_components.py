"""Configuration flows in once: every option reaches its component, defaults agree, and the
README documents every key."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from lumera_p2p.chain.registry import Supernode
from lumera_p2p.chain.static_registry import StaticRegistry
from lumera_p2p.components import (
    Intervals,
    dht_options,
    replication_options,
    server_limits,
    symbol_worker_options,
    transport_options,
)
from lumera_p2p.config import Config, load_config
from lumera_p2p.dht import DHTOptions, ServingLimits
from lumera_p2p.dht.replication import ReplicationOptions
from lumera_p2p.errors import ConfigError
from lumera_p2p.identity.keyring import Keyring
from lumera_p2p.identity.keys import PrivateKey
from lumera_p2p.localnet import create_localnet
from lumera_p2p.net.limits import ServerLimits
from lumera_p2p.net.tcp import TransportOptions
from lumera_p2p.net.virtual_time import run_virtual
from lumera_p2p.service import P2P, open_node_key
from lumera_p2p.symbols import SymbolWorkerOptions
from lumera_p2p.wire.messages import MessageType

README = Path(__file__).resolve().parent.parent / "README.md"

#: (config key, a value that is not its default, where the built node shows it)
WIRING: list[tuple[str, object, Callable[[P2P], object]]] = [
    ("dht.k", 16, lambda p: p.node.options.k),
    ("dht.alpha", 4, lambda p: p.node.options.alpha),
    ("dht.replicas", 5, lambda p: p.node.options.replicas),
    ("dht.min_replicas", 3, lambda p: p.node.options.min_replicas),
    ("dht.find_value_alpha", 2, lambda p: p.node.options.find_value_alpha),
    ("dht.probe_after", 12.5, lambda p: p.node.options.probe_after),
    ("dht.lookup_timeout", 4.5, lambda p: p.node.options.lookup_timeout),
    ("dht.lookup_stall", 0.75, lambda p: p.node.options.lookup_stall),
    ("dht.lookup_retries", 1, lambda p: p.node.options.lookup_retries),
    ("dht.max_failures", 3, lambda p: p.node.options.max_failures),
    ("dht.batch_store_bytes", 1_000_000, lambda p: p.node.options.batch_store_bytes),
    ("dht.batch_store_concurrency", 7, lambda p: p.node.options.batch_store_concurrency),
    ("dht.min_batch_store_success", 0.5, lambda p: p.node.options.min_batch_store_success),
    ("dht.batch_get_keys", 100, lambda p: p.node.options.batch_get_keys),
    ("dht.batch_get_concurrency", 3, lambda p: p.node.options.batch_get_concurrency),
    ("dht.fallback_lookups", 2, lambda p: p.node.options.fallback_lookups),
    ("dht.health_check_concurrency", 9, lambda p: p.node.options.health_check_concurrency),
    *[
        (
            f"dht.rpc_timeouts.{mtype.name.lower()}",
            41.0 + i,
            lambda p, m=mtype: p.node.options.rpc_timeout(m),
        )
        for i, mtype in enumerate(MessageType)
    ],
    ("dht.rpc_timeouts.default", 33.0, lambda p: p.node.options.default_rpc_timeout),
    ("server.per_ip_rate", 7.0, lambda p: p.server_limits.per_ip_rate),
    ("server.per_ip_burst", 9.0, lambda p: p.server_limits.per_ip_burst),
    ("server.global_rate", 500.0, lambda p: p.server_limits.global_rate),
    ("server.global_burst", 600.0, lambda p: p.server_limits.global_burst),
    ("server.max_tracked_ips", 1000, lambda p: p.server_limits.max_tracked_ips),
    ("server.max_connections", 77, lambda p: p.server_limits.max_connections),
    ("server.max_handshakes", 11, lambda p: p.server_limits.max_handshakes),
    ("server.handshake_timeout", 3.5, lambda p: p.server_limits.handshake_timeout),
    ("server.idle_timeout", 45.0, lambda p: p.server_limits.idle_timeout),
    ("server.frame_grace", 4.0, lambda p: p.server_limits.frame_grace),
    ("server.min_transfer_rate", 2048.0, lambda p: p.server_limits.min_transfer_rate),
    ("server.handler_timeout", 99.0, lambda p: p.server_limits.handler_timeout),
    ("server.max_keys_per_request", 500, lambda p: p.node.options.serving.max_keys_per_request),
    (
        "server.batch_find_values_slots",
        5,
        lambda p: p.node.options.serving.batch_find_values_slots,
    ),
    (
        "server.batch_find_values_wait",
        6.0,
        lambda p: p.node.options.serving.batch_find_values_wait,
    ),
    (
        "server.batch_find_values_max_bytes",
        10_000_000,
        lambda p: p.node.options.serving.batch_find_values_max_bytes,
    ),
    (
        "server.max_response_value_bytes",
        20_000_000,
        lambda p: p.node.options.serving.max_response_value_bytes,
    ),
    (
        "server.max_handshakes_per_address",
        5,
        lambda p: p.server_limits.max_handshakes_per_address,
    ),
    ("server.first_byte_timeout", 1.5, lambda p: p.server_limits.first_byte_timeout),
    (
        "server.registered_addresses_only",
        True,
        lambda p: p.server_limits.registered_addresses_only,
    ),
    ("server.memory_budget", 300_000_000, lambda p: p.server_limits.memory_budget),
    (
        "server.memory_budget_per_peer",
        100_000_000,
        lambda p: p.server_limits.memory_budget_per_peer,
    ),
    (
        "server.memory_wait",
        4.0,
        lambda p: (
            p.server_limits.memory_wait
            if p.server_limits.memory_wait == p.node.options.serving.memory_wait
            else None
        ),
    ),
    (
        "server.batch_find_values_per_peer",
        3,
        lambda p: p.node.options.serving.batch_find_values_per_peer,
    ),
    ("server.batch_get_values_slots", 5, lambda p: p.node.options.serving.batch_get_values_slots),
    (
        "server.batch_get_values_per_peer",
        1,
        lambda p: p.node.options.serving.batch_get_values_per_peer,
    ),
    ("server.batch_get_values_wait", 3.0, lambda p: p.node.options.serving.batch_get_values_wait),
    ("server.write_quota_bytes", 7_000_000, lambda p: p.node.options.serving.quotas.write_bytes),
    (
        "server.write_quota_values_per_second",
        50.0,
        lambda p: p.node.options.serving.quotas.write_values_per_second,
    ),
    (
        "server.replicate_quota_keys",
        1234,
        lambda p: p.node.options.serving.quotas.replicate_keys,
    ),
    ("server.quota_window", 30.0, lambda p: p.node.options.serving.quotas.window),
    ("server.quota_strikes", 4, lambda p: p.node.options.serving.quotas.strikes),
    ("transport.dial_timeout", 2.5, lambda p: p.transport.options.dial_timeout),
    ("transport.pool_capacity", 64, lambda p: p.transport.pool.capacity),
    ("transport.conns_per_peer", 2, lambda p: p.transport.pool.per_peer),
    ("transport.idle_timeout", 70.0, lambda p: p.transport.pool.idle_timeout),
    ("transport.prune_interval", 35.0, lambda p: p.transport.pool.prune_interval),
    ("transport.max_response_size", 50_000_000, lambda p: p.transport.options.max_response_size),
    ("transport.off_loop_size", 65536, lambda p: p.transport.options.off_loop_size),
    ("transport.transfer_rate", 2_000_000.0, lambda p: p.transport.options.transfer_rate),
    ("transport.answer_budget", 600_000_000, lambda p: p.transport.options.answer_budget),
    ("p2p.allow_private_peers", True, lambda p: p.node.options.allow_private),
    ("p2p.bucket_refresh_interval", 1800.0, lambda p: p.node.options.bucket_refresh_age),
    ("p2p.allowlist_refresh_interval", 13.0, lambda p: p.intervals.allowlist_refresh),
    ("p2p.bootstrap_refresh_interval", 500.0, lambda p: p.intervals.peer_sync),
    ("p2p.peer_sync_retry_interval", 17.0, lambda p: p.intervals.peer_sync_retry),
    ("p2p.bucket_refresh_check_interval", 11.0, lambda p: p.intervals.bucket_refresh_check),
    ("p2p.health_check_interval", 7.0, lambda p: p.intervals.health_check),
    ("p2p.version", "v2.7.0", lambda p: p.me.version),
    ("p2p.min_peer_version", "v2.5.0", lambda p: p.node.options.min_peer_version),
    ("store.synchronous", "normal", lambda p: p.db.synchronous),
    ("store.max_storage_bytes", 5_000_000, lambda p: p.db.limits.max_storage_bytes),
    (
        "store.max_replication_keys_per_peer",
        77,
        lambda p: p.db.limits.max_replication_keys_per_peer,
    ),
    ("store.max_replication_keys", 777, lambda p: p.db.limits.max_replication_keys),
    *[
        (f"replication.{name}", value, lambda p, n=name: getattr(p.replicator.options, n))
        for name, value in {
            "interval": 61.0,
            "activity_interval": 31.0,
            "activity_concurrency": 5,
            "neighbours": 9,
            "offline_deadline": 99.0,
            "announce_batch_keys": 123,
            "announce_concurrency": 3,
            "scan_keys": 1234,
            "fetch_interval": 62.0,
            "fetch_delay": 0.25,
            "failed_fetch_interval": 63.0,
            "fetch_rows": 500,
            "fetch_batch_keys": 50,
            "fetch_iterations": 4,
            "fetch_concurrency": 2,
            "fetch_alternates": 7,
            "pending_key_ttl": 3600.0,
            "disabled_key_cleanup_interval": 64.0,
            "redundant_scan_interval": 65.0,
            "delete_redundant": True,
            "delete_interval": 66.0,
            "delete_min_count": 3,
            "delete_below_free_bytes": 12345,
        }.items()
    ],
    ("files.chunk_size", 65536, lambda p: p.file_options.chunk_size),
    ("files.store_batch_chunks", 5, lambda p: p.file_options.store_batch_chunks),
    ("files.readahead_chunks", 6, lambda p: p.file_options.readahead_chunks),
    ("files.min_replicas", 4, lambda p: p.file_options.min_replicas),
    ("files.resume_window", 600.0, lambda p: p.file_options.resume_window),
    ("files.retrieve_attempts", 9, lambda p: p.file_options.retrieve_attempts),
    ("files.store_rounds", 7, lambda p: p.file_options.store_rounds),
    ("files.store_retry_delay", 2.5, lambda p: p.file_options.store_retry_delay),
    ("symbols.interval", 3.0, lambda p: p.symbol_worker.options.interval),
    ("symbols.batch_size", 250, lambda p: p.symbol_worker.options.batch_size),
    ("symbols.max_batch_bytes", 4_000_000, lambda p: p.symbol_worker.options.max_batch_bytes),
]


def set_key(doc: dict[str, Any], dotted: str, value: object) -> None:
    *sections, last = dotted.split(".")
    for section in sections:
        doc = doc.setdefault(section, {})
    doc[last] = value


def one_node_config(tmp_path: Path, overrides: dict[str, object]) -> Path:
    """A one-node localnet config with ``overrides`` (dotted keys) applied."""
    [local] = create_localnet(tmp_path, 1)
    doc = yaml.safe_load(local.config_path.read_text())
    for key, value in overrides.items():
        set_key(doc, key, value)
    local.config_path.write_text(yaml.safe_dump(doc))
    return local.config_path


@pytest.fixture(scope="module")
def configured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[P2P]:
    path = one_node_config(tmp_path_factory.mktemp("wiring"), {k: v for k, v, _ in WIRING})
    node = asyncio.run(P2P.create(load_config(path)))
    try:
        yield node
    finally:
        asyncio.run(node.stop())


@pytest.mark.parametrize(("key", "value", "where"), WIRING, ids=[k for k, _, _ in WIRING])
def test_every_option_reaches_its_component(
    configured: P2P, key: str, value: object, where: Callable[[P2P], object]
) -> None:
    assert where(configured) == value


def test_the_wiring_table_covers_every_tunable() -> None:
    """Every field of the dht, server and transport sections, and every interval, is in WIRING
    (a new option must be wired and tested)."""
    wired = {k for k, _, _ in WIRING}
    assert set(config_keys()) - wired - set(NOT_TUNABLES) == set()


#: Keys that are not component tunables (identity, addresses, paths, secrets, the chain).
NOT_TUNABLES = (
    "key_name",
    "identity",
    "p2p.listen_address",
    "p2p.port",
    "p2p.data_dir",
    "p2p.bootstrap_nodes",
    "p2p.external_ip",
    "keyring.backend",
    "keyring.dir",
    "keyring.passphrase_plain",
    "keyring.passphrase_env",
    "keyring.passphrase_file",
    "lumera.grpc_addr",
    "lumera.chain_id",
    "lumera.registry_file",
    "symbols.db_path",
    # The HTTP API's (``lumera_p2p.api.server.NodeApi``, started by ``run`` and ``localnet``;
    # each is exercised in tests/api): not the P2P node's components.
    "api.enabled",
    "api.listen",
    "api.token_file",
    "api.require_token",
    "api.max_value_bytes",
    "api.max_batch_bytes",
    "api.max_batch_keys",
    # How the CLI logs (``lumera-p2p run``; tests/test_cli_logging.py): not the node's.
    "log.level",
    "log.format",
    "log.file",
)


def config_keys(model: type[BaseModel] = Config, prefix: str = "") -> Iterator[str]:
    """Every leaf key of the config, dotted."""
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from config_keys(annotation, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}"


def test_config_defaults_are_the_components_defaults() -> None:
    """One place decides each default: the config's literals must equal the dataclasses'."""
    config = Config.model_validate({"key_name": "n", "p2p": {"data_dir": "d"}})
    assert dht_options(config) == DHTOptions()
    assert dht_options(config).serving == ServingLimits()
    assert server_limits(config) == ServerLimits()
    assert replication_options(config) == ReplicationOptions()
    assert symbol_worker_options(config) == SymbolWorkerOptions()
    # The pool lets idle connections go before a server's 90 s idle timeout closes them
    # (Go keeps them an hour, and finds them dead); everything else is the transport's own.
    assert transport_options(config) == TransportOptions(idle_timeout=60.0, prune_interval=30.0)
    assert Intervals.from_config(config) == Intervals(
        allowlist_refresh=30.0,
        peer_sync=600.0,
        peer_sync_retry=30.0,
        bucket_refresh_check=600.0,
        health_check=300.0,
    )


def test_bad_values_name_their_field(tmp_path: Path) -> None:
    for key, value in (
        ("dht.k", 0),
        ("dht.min_batch_store_success", 1.5),
        ("server.max_connections", "many"),
        ("transport.conns_per_peer", 0),
        ("dht.rpc_timeouts.ping", -1),
        ("dht.bogus", 1),
    ):
        path = one_node_config(tmp_path / key, {key: value})
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert info.value.field == key


class CountingRegistry(StaticRegistry):
    """A static registry that notes when it is asked (on the loop's clock)."""

    def __init__(self, supernodes: list[Supernode]) -> None:
        super().__init__(supernodes)
        self.asked: list[float] = []

    async def list_supernodes(self) -> list[Supernode]:
        self.asked.append(asyncio.get_running_loop().time())
        return await super().list_supernodes()


def test_the_background_loops_run_at_their_intervals(tmp_path: Path) -> None:
    """The real service on the virtual clock: 100 simulated seconds take no wall time."""
    path = one_node_config(
        tmp_path,
        {
            "p2p.health_check_interval": 7.0,
            "p2p.bucket_refresh_check_interval": 11.0,
            "p2p.allowlist_refresh_interval": 13.0,
            "p2p.peer_sync_retry_interval": 17.0,
        },
    )
    config = load_config(path)
    assert config.lumera.registry_file is not None
    registry = CountingRegistry(
        list(asyncio.run(StaticRegistry.from_file(config.lumera.registry_file).list_supernodes()))
    )

    async def main() -> tuple[list[float], int, int]:
        node = await P2P.create(config, registry=registry)
        await node.start(bootstrap=False)
        start = asyncio.get_running_loop().time()
        await asyncio.sleep(100.0)
        counters = node.node.snapshot_counters()
        await node.stop()
        return (
            [t - start for t in registry.asked],
            counters.health_checks,
            counters.bucket_refreshes,
        )

    asked, health, refreshes = run_virtual(main())
    assert health == 100 // 7
    assert refreshes == 100 // 11
    # The registry is asked by the allowlist refresh (every 13 s) and, while the node has no
    # peers, by the peer sync (every 17 s).
    expected = sorted([13.0 * i for i in range(1, 8)] + [17.0 * i for i in range(1, 6)])
    assert [round(t, 6) for t in asked] == pytest.approx(expected)


def test_secrets_come_from_the_caller_not_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file keyring's passphrase named by passphrase_env is resolved by the command line
    and handed to P2P.create; the service never reads the environment itself."""
    ring = Keyring(tmp_path / "keys", "file", passphrase="correct horse")
    key = ring.add("node", PrivateKey.generate()[0])
    doc = {
        "key_name": "node",
        "identity": key.address,
        "p2p": {"data_dir": "data", "bootstrap_nodes": f"{key.address}@127.0.0.1:4445"},
        "keyring": {"backend": "file", "dir": "keys", "passphrase_env": "NODE_PASS"},
    }
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(doc))
    config = load_config(path)
    monkeypatch.setenv("NODE_PASS", "correct horse")  # present, and still not read
    with pytest.raises(ConfigError) as info:
        asyncio.run(P2P.create(config))
    assert info.value.field == "keyring" and "passphrase=" in str(info.value)
    assert open_node_key(config, passphrase="correct horse").address == key.address
    node = asyncio.run(P2P.create(config, passphrase="correct horse"))
    try:
        assert node.address == key.address
    finally:
        asyncio.run(node.stop())
    # An identity that is not the key's refuses to start, whichever way the key came.
    other = PrivateKey.generate()[0]
    with pytest.raises(ConfigError) as info:
        asyncio.run(P2P.create(config, key=other))
    assert info.value.field == "identity"
