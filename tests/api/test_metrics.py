"""``/metrics`` scraped over HTTP and parsed with prometheus_client's own parser: names by the
conventions, every family there, and counters that move with traffic."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from lumera_p2p.api.metrics import render_metrics
from lumera_p2p.api.server import NodeApi
from lumera_p2p.content import content_key
from lumera_p2p.errors import StoreFailed
from lumera_p2p.localnet import create_localnet, load_configs, start_nodes
from tests.api.conftest import FAR_FUTURE, Net, api_config

pytestmark = [pytest.mark.timeout(180), pytest.mark.asyncio(loop_scope="package")]

NAME = re.compile(r"^lumera_p2p_[a-z][a-z0-9_]*$")


async def scrape(net: Net, i: int) -> dict[str, list[Sample]]:
    async with net.client(i) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {}
    for family in text_string_to_metric_families(response.text):
        families[family.name] = family
    return {name: list(f.samples) for name, f in families.items()} | {
        "__types__": [Sample(name, {}, 0.0) for name in families]  # type: ignore[list-item]
    }


def value(samples: dict[str, list[Sample]], family: str, sample: str, **labels: str) -> float:
    for s in samples[family]:
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    raise AssertionError(f"no sample {sample}{labels} in {family}")


async def test_metrics_follow_the_conventions_and_move_with_traffic(net: Net) -> None:
    before = await scrape(net, 0)
    families = [s.name for s in before.pop("__types__")]
    ours = [f for f in families if f.startswith("lumera_p2p_")]
    assert len(ours) > 40
    assert all(NAME.match(f) for f in ours), ours
    assert "process_resident_memory_bytes" in families  # the process collector
    expected = {
        "lumera_p2p_peers",
        "lumera_p2p_banned_peers",
        "lumera_p2p_bans",
        "lumera_p2p_rpc_requests",
        "lumera_p2p_rpc_failures",
        "lumera_p2p_rpc_handled",
        "lumera_p2p_rpc_duration_seconds",
        "lumera_p2p_sent_bytes",
        "lumera_p2p_received_bytes",
        "lumera_p2p_server_connections_refused",
        "lumera_p2p_server_handshake_failures",
        "lumera_p2p_store_records",
        "lumera_p2p_store_value_bytes",
        "lumera_p2p_store_db_file_bytes",
        "lumera_p2p_store_replicas",
        "lumera_p2p_recent_store_replicas_min",
        "lumera_p2p_recent_store_success_ratio",
        "lumera_p2p_repair_backlog_keys",
        "lumera_p2p_pool_open_connections",
        "lumera_p2p_disk_free_bytes",
    }
    assert expected <= set(ours), expected - set(ours)
    # Counters carry _total on their samples; the histogram its buckets, sum and count.
    assert value(before, "lumera_p2p_bans", "lumera_p2p_bans_total") >= 0
    assert value(before, "lumera_p2p_peers", "lumera_p2p_peers") >= 1
    reasons = {s.labels["reason"] for s in before["lumera_p2p_server_handshake_failures"]}
    assert reasons == {"rejected", "timeout", "malformed", "connection"}

    other_before = await scrape(net, 1)
    out_before = value(
        before, "lumera_p2p_sent_bytes", "lumera_p2p_sent_bytes_total", role="client"
    )
    values = [os.urandom(5000) for _ in range(3)]
    async with net.client(0) as a:
        for v in values:
            assert (await a.post("/api/v1/values", content=v)).status_code == 201
    after = await scrape(net, 0)
    stores = value(
        after,
        "lumera_p2p_rpc_requests",
        "lumera_p2p_rpc_requests_total",
        direction="outbound",
        type="STORE_DATA",
    )
    assert stores >= 2 * len(values)  # each value to both other nodes
    sent = value(after, "lumera_p2p_sent_bytes", "lumera_p2p_sent_bytes_total", role="client")
    assert sent - out_before >= 2 * sum(map(len, values))
    count = value(
        after,
        "lumera_p2p_rpc_duration_seconds",
        "lumera_p2p_rpc_duration_seconds_count",
        direction="outbound",
        type="STORE_DATA",
    )
    inf = value(
        after,
        "lumera_p2p_rpc_duration_seconds",
        "lumera_p2p_rpc_duration_seconds_bucket",
        direction="outbound",
        type="STORE_DATA",
        le="+Inf",
    )
    assert count == inf >= 2 * len(values)
    assert value(after, "lumera_p2p_operations", "lumera_p2p_operations_total", op="store") >= len(
        values
    )
    assert value(after, "lumera_p2p_store_replicas", "lumera_p2p_store_replicas_total") >= 6
    replicas = value(
        after, "lumera_p2p_recent_store_replicas_min", "lumera_p2p_recent_store_replicas_min"
    )
    assert replicas == 2  # both other nodes, every time
    assert (
        value(
            after, "lumera_p2p_recent_store_success_ratio", "lumera_p2p_recent_store_success_ratio"
        )
        == 1.0
    )

    # The receiving side counted and timed the StoreData it answered.
    other = await scrape(net, 1)
    handled = value(
        other,
        "lumera_p2p_rpc_handled",
        "lumera_p2p_rpc_handled_total",
        type="STORE_DATA",
        outcome="success",
    )
    assert handled >= len(values)
    received = value(
        other, "lumera_p2p_received_bytes", "lumera_p2p_received_bytes_total", role="server"
    )
    assert received >= sum(map(len, values))
    assert value(
        other,
        "lumera_p2p_rpc_duration_seconds",
        "lumera_p2p_rpc_duration_seconds_count",
        direction="inbound",
        type="STORE_DATA",
    ) >= len(values)
    assert content_key(values[0]) in set(await net.nodes[1].get_local_keys(None, FAR_FUTURE))
    # Every frame it read was reserved in its memory budget first.
    granted = (
        "lumera_p2p_memory_budget_reservations",
        "lumera_p2p_memory_budget_reservations_total",
    )
    assert value(other, *granted, outcome="granted") - value(
        other_before, *granted, outcome="granted"
    ) >= len(values)
    assert (
        value(other, "lumera_p2p_memory_budget_peak_bytes", "lumera_p2p_memory_budget_peak_bytes")
        >= 5000
    )


async def test_histogram_buckets_are_cumulative_and_end_at_the_count(net: Net) -> None:
    stats = await net.nodes[0].stats()
    text = render_metrics(stats, process=False).decode()
    for family in text_string_to_metric_families(text):
        if family.type != "histogram":
            continue
        by_series: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
        counts: dict[tuple[tuple[str, str], ...], float] = {}
        for s in family.samples:
            labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
            if s.name.endswith("_bucket"):
                by_series.setdefault(labels, []).append((float(s.labels["le"]), s.value))
            elif s.name.endswith("_count"):
                counts[labels] = s.value
        assert by_series
        for labels, buckets in by_series.items():
            ordered = sorted(buckets)
            assert ordered[-1][0] == math.inf
            assert [c for _, c in ordered] == sorted(c for _, c in ordered)
            assert ordered[-1][1] == counts[labels]


async def test_the_abuse_limits_are_counted_in_stats_and_metrics(tmp_path: Path) -> None:
    """A peer over its write quota is refused; the refusal shows in ``P2P.stats()``, in
    ``/api/v1/stats`` and in ``/metrics`` beside the memory budget and admission reasons."""
    configs = load_configs(create_localnet(tmp_path, 2))
    tight = configs[1].server.model_copy(update={"write_quota_bytes": 20_000})
    configs[1] = configs[1].model_copy(update={"server": tight})
    nodes = await start_nodes(configs)
    api = NodeApi(nodes[1], api_config(tmp_path, "quota"))
    try:
        await api.start()
        for _ in range(3):  # each 15 kB: the second passes the 20 kB window
            with contextlib.suppress(StoreFailed):
                await nodes[0].store(os.urandom(15_000))
        stats = await nodes[1].stats()
        assert stats.serving.quota_refused >= 1
        assert stats.memory is not None and stats.memory.granted >= 3
        assert stats.memory.capacity == configs[1].server.memory_budget
        async with httpx.AsyncClient(base_url=api.url, timeout=60) as client:
            body = (await client.get("/api/v1/stats")).json()
            text = (await client.get("/metrics")).text
        assert body["serving"]["quota_refused"] >= 1
        assert body["memory"]["used"] >= 0 and body["memory"]["granted"] >= 3
        families = {f.name: f for f in text_string_to_metric_families(text)}
        refusals = {
            s.labels["action"]: s.value for s in families["lumera_p2p_quota_refusals"].samples
        }
        assert refusals["refused"] >= 1 and "closed" in refusals
        busy = {s.labels["type"] for s in families["lumera_p2p_request_slots_busy"].samples}
        assert busy == {"BATCH_FIND_VALUES", "BATCH_GET_VALUES"}
        reasons = {
            s.labels["reason"] for s in families["lumera_p2p_server_connections_refused"].samples
        }
        assert {"max_handshakes_per_address", "unlisted"} <= reasons
        assert families["lumera_p2p_memory_budget_bytes"].samples[0].value == stats.memory.capacity
        for name in (
            "lumera_p2p_server_handshakes_evicted",
            "lumera_p2p_server_first_byte_timeouts",
            "lumera_p2p_server_frames_over_budget",
            "lumera_p2p_memory_budget_used_bytes",
            "lumera_p2p_memory_budget_waiting",
        ):
            assert name in families, name
    finally:
        await api.stop()
        await asyncio.gather(*(n.stop() for n in nodes), return_exceptions=True)
