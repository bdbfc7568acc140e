"""The HTTP API with a real HTTP client (httpx) against real nodes on 127.0.0.1.

Three nodes share one event loop with their APIs (uvicorn on the nodes' own loop, as ``run``
serves it); each test talks HTTP to them and checks what the nodes hold.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from lumera_p2p.api.auth import load_or_create_token
from lumera_p2p.api.server import NodeApi
from lumera_p2p.config import ApiConfig
from lumera_p2p.content import content_key
from lumera_p2p.errors import ConfigError
from tests.api.conftest import FAR_FUTURE, LIMIT, Net, api_config, one_line_error

pytestmark = [pytest.mark.timeout(180), pytest.mark.asyncio(loop_scope="package")]


async def test_a_value_stored_through_one_node_comes_back_through_another(net: Net) -> None:
    value = os.urandom(300_000)
    async with net.client(0) as a, net.client(2) as c:
        stored = await a.post("/api/v1/values", content=value)
        assert stored.status_code == 201, stored.text
        result = stored.json()
        assert result == {
            "key": content_key(value),
            "size": len(value),
            "kind": "value",
            "replicas": None,
        }
        back = await c.get(f"/api/v1/values/{result['key']}")
        assert back.status_code == 200
        assert back.content == value
        assert back.headers["content-type"] == "application/octet-stream"
        assert back.headers["x-content-key"] == result["key"]
        assert int(back.headers["content-length"]) == len(value)
    assert await net.nodes[0].retrieve(result["key"], local_only=True) == value


async def test_a_chunked_upload_streams_in_and_one_over_the_limit_stores_nothing(net: Net) -> None:
    async def chunks(total: int) -> AsyncIterator[bytes]:
        sent = 0
        while sent < total:
            piece = os.urandom(min(64 * 1024, total - sent))
            sent += len(piece)
            yield piece

    async with net.client(1) as b:
        ok = await b.post("/api/v1/values", content=chunks(LIMIT))  # no Content-Length
        assert ok.status_code == 201, ok.text
        assert ok.json()["size"] == LIMIT
        before = (await net.nodes[1].stats()).records
        over = await b.post("/api/v1/values", content=chunks(LIMIT + 1))
        assert over.status_code == 413
        assert "limit" in one_line_error(over)
        # A declared length over the limit is refused before a byte of the body is read.
        reader, writer = await asyncio.open_connection("127.0.0.1", net.apis[1].port)
        writer.write(
            b"POST /api/v1/values HTTP/1.1\r\nHost: x\r\n"
            + f"Content-Length: {LIMIT + 1}\r\n\r\n".encode()
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 30)
        assert status_line.startswith(b"HTTP/1.1 413"), status_line
        writer.close()
        assert (await net.nodes[1].stats()).records == before
        assert (await b.get("/healthz")).status_code == 200  # still serving


async def test_bad_keys_and_missing_values_get_one_line_4xx(net: Net) -> None:
    async with net.client(0) as a:
        bad = await a.get("/api/v1/values/not-a-key!")
        assert bad.status_code == 400
        assert "key" in one_line_error(bad)
        nowhere = content_key(b"never stored " + os.urandom(8))
        missing = await a.get(f"/api/v1/values/{nowhere}")
        assert missing.status_code == 404
        assert nowhere in one_line_error(missing)
        too_long = await a.get("/api/v1/values/" + "z" * 44)  # the shape of a key, 33 bytes
        assert too_long.status_code == 404
        empty = await a.post("/api/v1/values", content=b"")
        assert empty.status_code == 400
        assert "empty" in one_line_error(empty)
        typo = await a.get("/api/v1/keys", params={"limit": "many"})
        assert typo.status_code == 400
        assert one_line_error(typo).startswith("query.limit:")


async def test_disable_enable_and_delete(net: Net) -> None:
    value = b"disable me " + os.urandom(16)
    async with net.client(0) as a:
        key = (await a.post("/api/v1/values", content=value)).json()["key"]
        off = await a.post(f"/api/v1/values/{key}/disable")
        assert off.json() == {"key": key, "disabled": True}
        refused = await a.get(f"/api/v1/values/{key}")
        assert refused.status_code == 403
        assert "disabled" in one_line_error(refused)
        on = await a.post(f"/api/v1/values/{key}/enable")
        assert on.json() == {"key": key, "disabled": False}
        assert (await a.get(f"/api/v1/values/{key}")).content == value
        gone = await a.delete(f"/api/v1/values/{key}")
        assert gone.json() == {"key": key, "deleted": True}
        assert (await a.delete(f"/api/v1/values/{key}")).json()["deleted"] is False
        assert (await a.get(f"/api/v1/values/{key}", params={"local": "true"})).status_code == 404
        # Other nodes keep their copies: the network still has it.
        assert (await a.get(f"/api/v1/values/{key}")).content == value


async def test_batch_store_and_batch_retrieve(net: Net) -> None:
    values = [os.urandom(1000 + i) for i in range(20)]
    body = {"values": [base64.b64encode(v).decode() for v in values], "task_id": "api-test"}
    async with net.client(1) as b, net.client(2) as c:
        stored = await b.post("/api/v1/batch/store", json=body)
        assert stored.status_code == 200, stored.text
        report = stored.json()
        assert report["keys"] == [content_key(v) for v in values]
        assert report["success_rate"] == 1.0
        absent = content_key(b"absent " + os.urandom(8))
        asked = {"keys": [*report["keys"], absent]}
        got = await c.post("/api/v1/batch/retrieve", json=asked)
        assert got.status_code == 200, got.text
        answer = got.json()
        assert answer["found"] == len(values)
        assert answer["missing"] == [absent]
        assert {k: base64.b64decode(v) for k, v in answer["values"].items()} == dict(
            zip(report["keys"], values, strict=True)
        )
        not_base64 = await b.post("/api/v1/batch/store", json={"values": ["%%%"]})
        assert not_base64.status_code == 400
        too_many = await c.post("/api/v1/batch/retrieve", json={"keys": [absent] * 51})
        assert too_many.status_code == 413
        extra = await c.post("/api/v1/batch/retrieve", json={"keys": [absent], "x": 1})
        assert extra.status_code == 400
        # api.max_batch_bytes (4 × LIMIT here) bounds a batch store's body.
        # Sent chunked, one byte over: the server reads up to its limit, then answers.
        head, tail = b'{"values": ["', b'"]}'
        filler = b"A" * (4 * LIMIT + 1 - len(head) - len(tail))

        async def over_the_limit() -> AsyncIterator[bytes]:
            for piece in (head, filler, tail):
                yield piece

        huge = await b.post(
            "/api/v1/batch/store",
            content=over_the_limit(),
            headers={"Content-Type": "application/json"},
        )
        assert huge.status_code == 413 and "limit" in one_line_error(huge)


async def test_local_keys_page_by_page(net: Net) -> None:
    async with net.client(2) as c:
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, str | int] = {"limit": 3}
            if cursor is not None:
                params["cursor"] = cursor
            page = (await c.get("/api/v1/keys", params=params)).json()
            pages += 1
            assert len(page["keys"]) <= 3
            seen += [entry["key"] for entry in page["keys"]]
            cursor = page["next"]
            if cursor is None:
                break
        stored = (await net.nodes[2].stats()).records
        assert stored > 3 and pages > 1
        assert len(seen) == len(set(seen)) == stored
        assert set(seen) == set(await net.nodes[2].get_local_keys(None, FAR_FUTURE))
        whole = (await c.get("/api/v1/keys", params={"limit": 1000})).json()
        assert [e["key"] for e in whole["keys"]] == seen  # pages join up, oldest first
        sizes = {e["key"]: e["size"] for e in whole["keys"]}
        some = seen[0]
        assert sizes[some] == len(await net.nodes[2].retrieve(some, local_only=True) or b"")


async def test_peers_stats_status_and_probes(net: Net) -> None:
    async with net.client(0) as a:
        peers = (await a.get("/api/v1/peers")).json()
        assert peers["count"] == 2
        assert {p["address"] for p in peers["peers"]} == {n.address for n in net.nodes[1:]}
        stats = (await a.get("/api/v1/stats")).json()
        assert stats["address"] == net.nodes[0].address
        assert stats["dht"]["rpc_sent"] > 0
        assert stats["peers"] == 2
        status = (await a.get("/api/v1/status")).json()
        assert status["ready"] is True and status["running"] is True
        assert status["api_listen"] == net.apis[0].url.removeprefix("http://")
        assert status["storage"]["records"] == stats["store"]["records"]
        assert status["repair"] == {"pending_keys": 0, "dropped_keys": 0}
        assert (await a.get("/healthz")).json() == {"status": "ok", "reason": ""}
        assert (await a.get("/readyz")).status_code == 200
        schema = (await a.get("/openapi.json")).json()
        assert schema["openapi"].startswith("3.")
        assert {"/api/v1/values", "/api/v1/values/{key}", "/metrics", "/readyz"} <= set(
            schema["paths"]
        )
        page = await a.get("/")
        assert page.status_code == 200 and "<title>lumera-p2p node</title>" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert (await a.get("/static/status.js")).status_code == 200
        assert (await a.get("/static/../auth.py")).status_code == 404


async def test_recent_errors_show_warnings_of_the_node(net: Net) -> None:
    logging.getLogger("lumera_p2p.test").warning("disk %s is\nnearly full", "sda")
    async with net.client(1) as b:
        errors = (await b.get("/api/v1/status")).json()["recent_errors"]
    assert errors[0]["message"] == "disk sda is nearly full"
    assert errors[0]["level"] == "WARNING" and errors[0]["logger"] == "lumera_p2p.test"


async def test_garbage_gets_4xx_and_the_node_keeps_serving(net: Net) -> None:
    key = content_key(b"x")
    attempts = [
        ("POST", "/api/v1/batch/store", {"content": b"{not json"}),
        ("POST", "/api/v1/batch/store", {"json": {"values": "nope"}}),
        ("POST", "/api/v1/batch/store", {"json": {"values": ["AAAA"], "datatype": -1}}),
        ("POST", "/api/v1/batch/retrieve", {"json": {"keys": []}}),
        ("POST", "/api/v1/batch/retrieve", {"content": b"\xff" * 100}),
        ("POST", "/api/v1/values", {"params": {"datatype": "x"}, "content": b"v"}),
        ("POST", "/api/v1/values", {"params": {"datatype": str(2**40)}, "content": b"v"}),
        ("GET", "/api/v1/keys", {"params": {"cursor": "no tilde"}}),
        ("GET", "/api/v1/keys", {"params": {"limit": "0"}}),
        ("PUT", f"/api/v1/values/{key}", {}),
        ("GET", "/api/v1/values/" + "1" * 200, {}),
    ]
    async with net.client(2) as c:
        for method, path, kwargs in attempts:
            response = await c.request(method, path, **kwargs)  # type: ignore[arg-type]
            assert 400 <= response.status_code < 500, (method, path, response.text)
            if response.headers.get("content-type", "").startswith("application/json"):
                one_line_error(response)
        assert (await c.get("/api/v1/status")).status_code == 200


async def test_a_token_is_asked_for_when_required(net: Net, tmp_path: Path) -> None:
    api = NodeApi(net.nodes[0], api_config(tmp_path, "guarded", require_token=True))
    await api.start()
    try:
        token_file = tmp_path / "guarded-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert len(token) >= 40
        async with httpx.AsyncClient(base_url=api.url) as anon:
            refused = await anon.get("/api/v1/status")
            assert refused.status_code == 401
            assert "token" in one_line_error(refused)
            assert refused.headers["www-authenticate"] == "Bearer"
            wrong = await anon.get(
                "/api/v1/status", headers={"Authorization": "Bearer " + "x" * len(token)}
            )
            assert wrong.status_code == 401
            assert (await anon.get("/metrics")).status_code == 401
            assert (await anon.post("/api/v1/values", content=b"v")).status_code == 401
            assert (await anon.get("/healthz")).status_code == 200  # probes stay open
            assert (await anon.get("/")).status_code == 200  # the page holds no secret
            schema = (await anon.get("/openapi.json")).json()
            assert "HTTPBearer" in schema["components"]["securitySchemes"]
        async with httpx.AsyncClient(
            base_url=api.url, headers={"Authorization": f"Bearer {token}"}
        ) as ok:
            assert (await ok.get("/api/v1/status")).status_code == 200
    finally:
        await api.stop()
    # A second start keeps the token.
    assert load_or_create_token(tmp_path / "guarded-token") == token


async def test_a_port_in_use_is_a_config_error_naming_api_listen(net: Net, tmp_path: Path) -> None:
    taken = net.apis[0].port
    clash = NodeApi(net.nodes[1], ApiConfig(listen=f"127.0.0.1:{taken}", token_file=tmp_path / "t"))
    with pytest.raises(ConfigError) as info:
        await clash.start()
    assert info.value.field == "api.listen"
    await clash.stop()  # nothing started: still fine
