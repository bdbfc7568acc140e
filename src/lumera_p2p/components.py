"""From a validated :class:`~lumera_p2p.config.Config` to each component's typed options.

Configuration flows in once: the config is read and checked at start-up, and these functions
hand each component its part as the frozen dataclass it takes. Nothing below them reads a file
or the environment.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lumera_p2p.dht import DHTOptions, ServingLimits
from lumera_p2p.dht.quotas import QuotaLimits
from lumera_p2p.dht.replication import ReplicationOptions
from lumera_p2p.files.options import FileOptions
from lumera_p2p.net.limits import ServerLimits
from lumera_p2p.net.tcp import TransportOptions
from lumera_p2p.store import MAX_VALUE_SIZE
from lumera_p2p.store.rqstore import RQSTORE_DB
from lumera_p2p.symbols.worker import SymbolWorkerOptions
from lumera_p2p.wire.messages import MessageType

if TYPE_CHECKING:
    # Only a type: a node process may be handed a plain configuration (config_plain), and
    # these functions read attributes only, so that pydantic is not imported to run a node.
    from lumera_p2p.config import Config, StoreOpenOptions


def dht_options(config: Config) -> DHTOptions:
    """The node's DHT options: the ``dht`` section, the request limits of ``server``, and the
    peer policy and bucket age of ``p2p``."""
    dht, server, p2p = config.dht, config.server, config.p2p
    timeouts = dht.rpc_timeouts
    return DHTOptions(
        k=dht.k,
        alpha=dht.alpha,
        replicas=dht.replicas,
        min_replicas=dht.min_replicas,
        find_value_alpha=dht.find_value_alpha,
        probe_after=dht.probe_after,
        allow_private=p2p.allow_private_peers,
        min_peer_version=p2p.min_peer_version or "",
        lookup_timeout=dht.lookup_timeout,
        lookup_stall=dht.lookup_stall,
        lookup_retries=dht.lookup_retries,
        max_failures=dht.max_failures,
        batch_store_bytes=dht.batch_store_bytes,
        batch_store_concurrency=dht.batch_store_concurrency,
        min_batch_store_success=dht.min_batch_store_success,
        batch_get_keys=dht.batch_get_keys,
        batch_get_concurrency=dht.batch_get_concurrency,
        fallback_lookups=dht.fallback_lookups,
        health_check_concurrency=dht.health_check_concurrency,
        bucket_refresh_age=p2p.bucket_refresh_interval,
        rpc_timeouts={
            MessageType.PING: timeouts.ping,
            MessageType.FIND_NODE: timeouts.find_node,
            MessageType.BATCH_FIND_NODE: timeouts.batch_find_node,
            MessageType.FIND_VALUE: timeouts.find_value,
            MessageType.STORE_DATA: timeouts.store_data,
            MessageType.BATCH_STORE_DATA: timeouts.batch_store_data,
            MessageType.BATCH_FIND_VALUES: timeouts.batch_find_values,
            MessageType.BATCH_GET_VALUES: timeouts.batch_get_values,
            MessageType.REPLICATE: timeouts.replicate,
        },
        default_rpc_timeout=timeouts.default,
        serving=ServingLimits(
            max_keys_per_request=server.max_keys_per_request,
            batch_find_values_slots=server.batch_find_values_slots,
            batch_find_values_wait=server.batch_find_values_wait,
            batch_find_values_max_bytes=server.batch_find_values_max_bytes,
            max_response_value_bytes=server.max_response_value_bytes,
            batch_find_values_per_peer=server.batch_find_values_per_peer,
            batch_get_values_slots=server.batch_get_values_slots,
            batch_get_values_per_peer=server.batch_get_values_per_peer,
            batch_get_values_wait=server.batch_get_values_wait,
            memory_wait=server.memory_wait,
            quotas=QuotaLimits(
                write_bytes=server.write_quota_bytes,
                write_values_per_second=server.write_quota_values_per_second,
                replicate_keys=server.replicate_quota_keys,
                window=server.quota_window,
                strikes=server.quota_strikes,
            ),
        ),
    )


def replication_options(config: Config) -> ReplicationOptions:
    """Replication and repair (the ``replication`` section), field for field."""
    section = config.replication
    # A pydantic section lists its fields on its class; a plain one (config_plain) holds them.
    names = getattr(type(section), "model_fields", None) or vars(section)
    return ReplicationOptions(**{name: getattr(section, name) for name in names})


def store_open_options(config: Config) -> StoreOpenOptions:
    """The ``store`` section as keyword arguments of ``LocalStore.open``."""
    s = config.store
    return {
        "synchronous": s.synchronous,
        "max_storage_bytes": s.max_storage_bytes,
        "max_replication_keys_per_peer": s.max_replication_keys_per_peer,
        "max_replication_keys": s.max_replication_keys,
    }


def server_limits(config: Config) -> ServerLimits:
    """The TCP server's admission and pacing limits (the ``server`` section)."""
    s = config.server
    return ServerLimits(
        per_ip_rate=s.per_ip_rate,
        per_ip_burst=s.per_ip_burst,
        global_rate=s.global_rate,
        global_burst=s.global_burst,
        max_tracked_ips=s.max_tracked_ips,
        max_connections=s.max_connections,
        max_handshakes=s.max_handshakes,
        max_handshakes_per_address=s.max_handshakes_per_address,
        first_byte_timeout=s.first_byte_timeout,
        registered_addresses_only=s.registered_addresses_only,
        handshake_timeout=s.handshake_timeout,
        idle_timeout=s.idle_timeout,
        frame_grace=s.frame_grace,
        min_transfer_rate=s.min_transfer_rate,
        handler_timeout=s.handler_timeout,
        memory_budget=s.memory_budget,
        memory_budget_per_peer=s.memory_budget_per_peer,
        memory_wait=s.memory_wait,
    )


def transport_options(config: Config) -> TransportOptions:
    """The client transport and its pool (the ``transport`` section)."""
    t = config.transport
    listen = config.p2p.listen_address
    specific = listen not in ("0.0.0.0", "::", "") and _is_ip(listen)
    return TransportOptions(
        dial_timeout=t.dial_timeout,
        pool_capacity=t.pool_capacity,
        conns_per_peer=t.conns_per_peer,
        idle_timeout=t.idle_timeout,
        prune_interval=t.prune_interval,
        max_response_size=t.max_response_size,
        off_loop_size=t.off_loop_size,
        transfer_rate=t.transfer_rate,
        answer_budget=t.answer_budget,
        source_host=listen if specific else None,
    )


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def file_options(config: Config) -> FileOptions:
    """How ``put_file``/``get_file`` chunk and stream (the ``files`` section)."""
    f = config.files
    return FileOptions(
        chunk_size=f.chunk_size,
        store_batch_chunks=f.store_batch_chunks,
        readahead_chunks=f.readahead_chunks,
        min_replicas=f.min_replicas,
        resume_window=f.resume_window,
        retrieve_attempts=f.retrieve_attempts,
        store_rounds=f.store_rounds,
        store_retry_delay=f.store_retry_delay,
    )


def rqstore_path(config: Config) -> Path:
    """Where the registered symbol directories are kept (``symbols.db_path``)."""
    return config.symbols.db_path or config.p2p.data_dir / RQSTORE_DB


def symbol_worker_options(config: Config) -> SymbolWorkerOptions:
    """The symbol worker's round interval and batch bounds (the ``symbols`` section)."""
    s = config.symbols
    return SymbolWorkerOptions(
        interval=s.interval,
        batch_size=s.batch_size,
        max_batch_bytes=s.max_batch_bytes,
        max_file_size=min(s.max_batch_bytes, MAX_VALUE_SIZE),
    )


@dataclass(frozen=True)
class Intervals:
    """Periods of the service's background loops, in seconds."""

    #: Allowlists re-read from the registry.
    allowlist_refresh: float
    #: Full peer sync (bootstrap again from the registry's list).
    peer_sync: float
    #: The peer sync while the routing table is empty.
    peer_sync_retry: float
    #: Stale buckets looked for (and refreshed).
    bucket_refresh_check: float
    #: Every routing-table peer pinged.
    health_check: float

    @classmethod
    def from_config(cls, config: Config) -> Intervals:
        """The ``p2p.*_interval`` keys; a check never runs less often than its subject ages."""
        p2p = config.p2p
        return cls(
            allowlist_refresh=p2p.allowlist_refresh_interval,
            peer_sync=p2p.bootstrap_refresh_interval,
            peer_sync_retry=min(p2p.peer_sync_retry_interval, p2p.bootstrap_refresh_interval),
            bucket_refresh_check=min(
                p2p.bucket_refresh_check_interval, p2p.bucket_refresh_interval
            ),
            health_check=p2p.health_check_interval,
        )
