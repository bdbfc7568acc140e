"""``/metrics``: Prometheus metrics read from ``P2P.stats()`` at scrape time.

Nothing is counted twice: the node keeps its counters where they happen (the DHT's
``DHTCounters``, the server's and transport's stats, the pool, the store), and each scrape turns
one :class:`~lumera_p2p.stats.P2PStats` snapshot into metric families through
:class:`StatsCollector`. Names follow Prometheus conventions: ``lumera_p2p_`` prefix, base units
(seconds, bytes), ``_total`` on counters, one family per quantity with labels for its kinds.

The fields of the Go supernode's P2P stats (``StatsSnapshot``, served in its
``/api/v1/status?include_p2p_metrics=true``) map as follows: ``PeersCount`` →
``lumera_p2p_peers``; ``BanList`` → ``lumera_p2p_banned_peers`` (entries: ``/api/v1/peers``);
``ConnPool`` → ``lumera_p2p_pool_*``; ``NetworkHandleMetrics`` (total, success, failure, timeout
per message) → ``lumera_p2p_rpc_handled_total{type,outcome}``; ``DHTMetrics.StoreSuccessRecent``
→ ``lumera_p2p_recent_store_*``; ``BatchRetrieveRecent`` → ``lumera_p2p_recent_retrieve_*``;
``HotPathBanIncrements`` → ``lumera_p2p_bans_total``; ``Database`` → ``lumera_p2p_store_records``
and ``lumera_p2p_store_db_file_bytes``; ``DiskInfo`` → ``lumera_p2p_disk_*_bytes``. The abuse
limits (issue 13) have ``lumera_p2p_memory_budget_*``, ``lumera_p2p_quota_refusals_total``,
``lumera_p2p_request_slots_*`` and the admission reasons of
``lumera_p2p_server_connections_refused_total``. Go's
``HotPathBannedSkips`` (lookups skipping a banned peer) has no counter here yet.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import CollectorRegistry

from lumera_p2p.dht.counters import LATENCY_BUCKETS, LatencyHistogram
from lumera_p2p.stats import P2PStats

__all__ = ["CONTENT_TYPE_LATEST", "StatsCollector", "render_metrics"]

PREFIX = "lumera_p2p_"


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, value=value)


def _labelled(
    kind: type[CounterMetricFamily] | type[GaugeMetricFamily],
    name: str,
    doc: str,
    labels: list[str],
    rows: Mapping[tuple[str, ...], float],
) -> Metric:
    family = kind(PREFIX + name, doc, labels=labels)
    for values, value in sorted(rows.items()):
        family.add_metric(list(values), value)
    return family


def _buckets(histogram: LatencyHistogram) -> list[tuple[str, float]]:
    """Prometheus' cumulative buckets from our per-bucket counts."""
    out: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip(LATENCY_BUCKETS, histogram.counts, strict=False):
        running += count
        out.append((repr(bound), running))
    out.append(("+Inf", histogram.count))
    return out


class StatsCollector:
    """A Prometheus collector over one ``P2PStats`` snapshot (taken by the scrape)."""

    def __init__(self, stats: P2PStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        """Every family, from the snapshot."""
        yield from self._node()
        yield from self._rpcs()
        yield from self._server()
        yield from self._client()
        yield from self._store()
        yield from self._recent()
        yield from self._repair()
        yield from self._limits()

    def _node(self) -> Iterator[Metric]:
        s = self._stats
        info = GaugeMetricFamily(
            PREFIX + "node_info",
            "This node: its address, version and P2P endpoint.",
            labels=["address", "version", "listen"],
        )
        info.add_metric([s.address, s.version, s.listen], 1)
        yield info
        yield _gauge("uptime_seconds", "Seconds since the node started.", s.uptime)
        yield _gauge("peers", "Contacts in the routing table.", s.peers)
        yield _gauge("banned_peers", "Peers banned now.", s.banned)
        yield _gauge(
            "registry_supernodes",
            "Routing-eligible supernodes on the registry's last list.",
            s.registry_routing,
        )
        d = s.dht
        yield _counter("bans", "Peers banned (poisoned values, repeated failures).", d.bans)
        yield _counter("evictions", "Contacts evicted from the routing table.", d.evictions)
        yield _counter("lru_probes", "Pings of a full bucket's oldest contact.", d.probes)
        yield _counter(
            "peers_too_old",
            "Peers refused for advertising a version below the minimum.",
            d.peers_too_old,
        )
        yield _counter(
            "poisoned_values",
            "Values peers served that did not hash to their key.",
            d.poisoned_values,
        )
        yield _labelled(
            CounterMetricFamily,
            "operations",
            "Operations this node ran (each once, however many requests it took).",
            ["op"],
            {
                ("store",): d.stores,
                ("batch_store",): d.batch_stores,
                ("retrieve",): d.retrieves,
                ("batch_retrieve",): d.batch_retrieves,
                ("lookup",): d.lookups,
                ("health_check",): d.health_checks,
                ("bucket_refresh",): d.bucket_refreshes,
            },
        )

    def _rpcs(self) -> Iterator[Metric]:
        d = self._stats.dht
        requests: dict[tuple[str, ...], float] = {}
        failures: dict[tuple[str, ...], float] = {}
        for name, count in d.rpc_sent_by_type.items():
            requests[("outbound", name)] = count
            failures[("outbound", name)] = d.rpc_failed_by_type.get(name, 0)
        handled: dict[tuple[str, ...], float] = {}
        for name, c in d.handled_by_type.items():
            requests[("inbound", name)] = c.total
            failures[("inbound", name)] = c.failure + c.timeout
            for outcome in ("success", "failure", "timeout"):
                handled[(name, outcome)] = getattr(c, outcome)
        yield _labelled(
            CounterMetricFamily,
            "rpc_requests",
            "Kademlia requests sent (outbound) and answered (inbound), by message type.",
            ["direction", "type"],
            requests,
        )
        yield _labelled(
            CounterMetricFamily,
            "rpc_failures",
            "Outbound: requests without a usable answer; inbound: handlers that failed or "
            "were cut off.",
            ["direction", "type"],
            failures,
        )
        yield _labelled(
            CounterMetricFamily,
            "rpc_handled",
            "Requests from peers by outcome (Go's NetworkHandleMetrics; a Failed status "
            "answered counts as success).",
            ["type", "outcome"],
            handled,
        )
        latency = HistogramMetricFamily(
            PREFIX + "rpc_duration_seconds",
            "Outbound: send to answer or failure; inbound: handler time.",
            labels=["direction", "type"],
        )
        for direction, table in (("outbound", d.rpc_latency), ("inbound", d.handle_latency)):
            for name, histogram in sorted(table.items()):
                latency.add_metric([direction, name], _buckets(histogram), histogram.sum)
        yield latency

    def _server(self) -> Iterator[Metric]:
        s, t = self._stats.server, self._stats.transport
        yield _labelled(
            CounterMetricFamily,
            "sent_bytes",
            "Frame bytes written (before encryption): as client (requests) and server.",
            ["role"],
            {("client",): t.bytes_sent, ("server",): s.bytes_sent},
        )
        yield _labelled(
            CounterMetricFamily,
            "received_bytes",
            "Frame bytes read (after decryption): as client (answers) and server.",
            ["role"],
            {("client",): t.bytes_received, ("server",): s.bytes_received},
        )
        yield _counter("server_connections_accepted", "Connections admitted.", s.accepted)
        yield _labelled(
            CounterMetricFamily,
            "server_connections_refused",
            "Connections refused at accept, by the limit that refused them.",
            ["reason"],
            {
                ("ip_rate",): s.refused_ip_rate,
                ("global_rate",): s.refused_global_rate,
                ("max_connections",): s.refused_connections,
                ("max_handshakes",): s.refused_handshakes,
                ("max_handshakes_per_address",): s.refused_address_handshakes,
                ("unlisted",): s.refused_unlisted,
            },
        )
        yield _counter(
            "server_handshakes_evicted",
            "Pending handshakes whose slot a newcomer took (admission's fair sharing).",
            s.evicted_handshakes,
        )
        yield _counter(
            "server_first_byte_timeouts",
            "Connections that sent nothing within server.first_byte_timeout.",
            s.first_byte_timeouts,
        )
        yield _counter(
            "server_frames_over_budget",
            "Frames refused (connection closed): no room in the memory budget.",
            s.over_budget,
        )
        reasons: dict[tuple[str, ...], float] = {
            ("rejected",): 0.0,
            ("timeout",): 0.0,
            ("malformed",): 0.0,
            ("connection",): 0.0,
        }
        reasons.update({(k,): v for k, v in s.handshake_failures_by_reason.items()})
        yield _labelled(
            CounterMetricFamily,
            "server_handshake_failures",
            "Handshakes refused or failed: rejected (not in the registry), timeout, malformed, "
            "connection (lost mid-way).",
            ["reason"],
            reasons,
        )
        yield _counter("server_sessions", "Connections that completed the handshake.", s.sessions)
        yield _counter("server_requests", "Requests read by the server.", s.requests)
        yield _counter(
            "server_protocol_errors",
            "Connections closed for breaking the protocol.",
            s.protocol_errors,
        )
        yield _counter("server_handler_errors", "Handlers that crashed (bugs).", s.handler_errors)
        yield _counter(
            "server_handler_timeouts",
            "Handlers cut off by server.handler_timeout.",
            s.handler_timeouts,
        )
        yield _labelled(
            CounterMetricFamily,
            "server_connections_closed",
            "Connections the server closed: idle too long, or too slow a frame.",
            ["reason"],
            {("idle",): s.idle_closed, ("slow",): s.slow_closed},
        )

    def _client(self) -> Iterator[Metric]:
        t, p = self._stats.transport, self._stats.pool
        yield _counter("client_calls", "Requests the client transport sent.", t.calls)
        yield _counter("client_failures", "Client calls that failed.", t.failures)
        yield _counter("client_timeouts", "Client calls that timed out.", t.timeouts)
        yield _counter(
            "client_retries", "Calls retried after a stale pooled connection.", t.retries
        )
        yield _counter(
            "client_dial_failures", "Failed dials (connect or handshake).", t.dial_failures
        )
        yield _counter("pool_adds", "Connections added to the pool.", p.adds)
        yield _counter("pool_reuse_hits", "Calls served by a pooled connection.", p.reuse_hits)
        yield _counter("pool_misses", "Calls that had to dial.", p.misses)
        yield _counter("pool_evictions", "Connections evicted (pool full).", p.evictions)
        yield _counter("pool_pruned", "Idle connections closed.", p.pruned)
        yield _counter("pool_dead", "Pooled connections found dead.", p.dead)
        yield _counter("pool_discarded", "Connections dropped after an error.", p.discarded)
        yield _gauge("pool_open_connections", "Pooled connections now.", p.open)
        yield _gauge("pool_idle_connections", "Idle pooled connections now.", p.idle)
        yield _gauge("pool_capacity_connections", "The most the pool keeps.", p.capacity)

    def _store(self) -> Iterator[Metric]:
        st, d = self._stats.store, self._stats.dht
        yield _gauge("store_records", "Values stored here.", st.records)
        yield _gauge("store_value_bytes", "Bytes of the values stored here.", st.data_bytes)
        yield _gauge("store_db_file_bytes", "Size of the SQLite files.", st.db_file_bytes)
        yield _gauge("store_disabled_keys", "Keys disabled for retrieval.", st.disabled_keys)
        yield _counter(
            "store_full_refusals",
            "Writes refused by store.max_storage_bytes.",
            st.storage_full_refusals,
        )
        yield _counter(
            "values_stored_by_peers",
            "Values peers stored here with BatchStoreData.",
            d.values_stored_remote,
        )
        yield _counter(
            "store_replicas",
            "Remote nodes that acknowledged single stores (÷ stores: replicas per store).",
            d.store_replicas,
        )
        yield _counter(
            "batch_store_requests", "Node requests of batch stores.", d.batch_store_requests
        )
        yield _counter(
            "batch_store_requests_succeeded",
            "Node requests of batch stores that succeeded.",
            d.batch_store_requests_succeeded,
        )
        disk = self._stats.disk
        if disk is not None:
            yield _gauge("disk_total_bytes", "Size of data_dir's file system.", disk.total)
            yield _gauge("disk_used_bytes", "Used bytes of data_dir's file system.", disk.used)
            yield _gauge("disk_free_bytes", "Free bytes of data_dir's file system.", disk.free)

    def _recent(self) -> Iterator[Metric]:
        stores = self._stats.recent_stores
        singles = [p.replicas for p in stores if p.replicas is not None]
        yield _gauge("recent_stores", "Stores in the recent window (at most 48).", len(stores))
        yield _gauge(
            "recent_store_replicas_min",
            "Fewest replicas a recent single store reached (NaN: none yet).",
            min(singles) if singles else math.nan,
        )
        yield _gauge(
            "recent_store_replicas_mean",
            "Mean replicas of the recent single stores (NaN: none yet).",
            sum(singles) / len(singles) if singles else math.nan,
        )
        yield _gauge(
            "recent_store_success_ratio",
            "Acknowledged share of the recent stores' node requests (NaN: none yet).",
            sum(p.successful for p in stores) / sum(p.requests for p in stores)
            if any(p.requests for p in stores)
            else math.nan,
        )
        retrieves = self._stats.recent_retrieves
        yield _gauge(
            "recent_retrieve_found_ratio",
            "Found share of the keys the recent batch retrieves required (NaN: none yet).",
            sum(min(p.found, p.required) for p in retrieves) / sum(p.required for p in retrieves)
            if any(p.required for p in retrieves)
            else math.nan,
        )
        yield _gauge(
            "recent_retrieve_duration_seconds_max",
            "Longest recent batch retrieve (NaN: none yet).",
            max(p.duration for p in retrieves) if retrieves else math.nan,
        )

    def _repair(self) -> Iterator[Metric]:
        st = self._stats.store
        # The repair work that exists today: keys peers announced that we still fetch. The
        # repair loop (its own branch) adds its counters here, from ``P2PStats``.
        yield _gauge(
            "repair_backlog_keys",
            "Announced keys this node still has to fetch.",
            st.replication_keys,
        )
        yield _counter(
            "repair_keys_dropped",
            "Announced keys dropped at the per-peer or total cap.",
            st.replication_keys_dropped,
        )

    def _limits(self) -> Iterator[Metric]:
        m, q = self._stats.memory, self._stats.serving
        if m is not None:
            yield _gauge(
                "memory_budget_bytes",
                "Bytes the node may hold in flight (server.memory_budget).",
                m.capacity,
            )
            yield _gauge(
                "memory_budget_per_peer_bytes", "Bytes one peer may hold in flight.", m.per_peer
            )
            yield _gauge("memory_budget_used_bytes", "Bytes reserved in the budget now.", m.used)
            yield _gauge(
                "memory_budget_peak_bytes", "The most bytes reserved at once since start.", m.peak
            )
            yield _labelled(
                CounterMetricFamily,
                "memory_budget_reservations",
                "Memory budget reservations: granted, or refused (too large, or no room in time).",
                ["outcome"],
                {("granted",): m.granted, ("refused",): m.refused},
            )
            yield _counter(
                "memory_budget_waits",
                "Reservations granted only after waiting for room.",
                m.waited,
            )
            yield _gauge("memory_budget_waiting", "Requests waiting for room now.", m.waiting)
        yield _labelled(
            CounterMetricFamily,
            "quota_refusals",
            "Stores and Replicate announcements over a peer's quota: answered Failed "
            "(refused), or the connection closed (a peer that kept going).",
            ["action"],
            {("refused",): q.quota_refused, ("closed",): q.quota_closed},
        )
        yield _labelled(
            CounterMetricFamily,
            "request_slots_busy",
            "Batch requests that got no request slot in time (answered Busy).",
            ["type"],
            {("BATCH_FIND_VALUES",): q.find_values_busy, ("BATCH_GET_VALUES",): q.get_values_busy},
        )
        yield _labelled(
            GaugeMetricFamily,
            "request_slots_in_use",
            "Request slots of batch requests in use now.",
            ["type"],
            {
                ("BATCH_FIND_VALUES",): q.find_values_in_flight,
                ("BATCH_GET_VALUES",): q.get_values_in_flight,
            },
        )


def render_metrics(stats: P2PStats, *, process: bool = True) -> bytes:
    """The text exposition of ``stats`` (and this process's CPU, memory and files)."""
    registry: Any = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(stats))
    if process:
        ProcessCollector(registry=registry)
    body: bytes = generate_latest(registry)
    return body
