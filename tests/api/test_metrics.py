"""``/metrics`` scraped over HTTP and parsed with prometheus_client's own parser: names by the
conventions, every family there, and counters that move with traffic."""

from __future__ import annotations

import math
import os
import re

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from lumera_p2p.api.metrics import render_metrics
from lumera_p2p.content import content_key
from tests.api.conftest import FAR_FUTURE, Net

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
    assert value(before, "lumera_p2p_peers", "lumera_p2p_peers") == 2
    reasons = {s.labels["reason"] for s in before["lumera_p2p_server_handshake_failures"]}
    assert reasons == {"rejected", "timeout", "malformed", "connection"}

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
