"""Files through the API of real nodes: ``POST /api/v1/files`` streams a body of any size into
chunks, ``GET /api/v1/values/{key}`` streams the file back (whole, or from a ``Range`` offset),
and an upload sent again does not send the stored chunks to the replicas again.

The nodes' ``api.max_value_bytes`` is 1 MiB (``LIMIT``); the files here are larger, which only
the file endpoint takes.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from lumera_p2p.content import content_key
from lumera_p2p.files import Manifest
from lumera_p2p.service import P2P
from tests.api.conftest import LIMIT, Net, one_line_error

pytestmark = [pytest.mark.timeout(180), pytest.mark.asyncio(loop_scope="package")]

SIZE = 3 * LIMIT + 12_345


async def pieces(data: bytes, step: int = 100_000) -> AsyncIterator[bytes]:
    """A chunked upload (no Content-Length) in odd-sized pieces."""
    for start in range(0, len(data), step):
        yield data[start : start + step]


async def received(nodes: list[P2P]) -> int:
    """Values peers have stored on these nodes with BatchStoreData, in all."""
    return sum([(await n.stats()).dht.values_stored_remote for n in nodes])


async def test_a_file_posted_through_one_node_streams_back_through_another(net: Net) -> None:
    data = os.urandom(SIZE)
    async with net.client(0) as a, net.client(2) as c:
        too_big = await a.post("/api/v1/values", content=data)
        assert too_big.status_code == 413  # a single value stays within api.max_value_bytes
        stored = await a.post("/api/v1/files", content=pieces(data))
        assert stored.status_code == 201, stored.text
        result = stored.json()
        assert (result["size"], result["kind"], result["replicas"]) == (SIZE, "file", 2)
        root = Manifest.decode(await net.nodes[0].retrieve(result["key"]) or b"")
        assert root.root and root.total == SIZE
        back = await c.get(f"/api/v1/values/{result['key']}")
        assert back.status_code == 200, back.text
        assert back.content == data
        assert back.headers["x-value-kind"] == "file"
        assert back.headers["x-content-key"] == content_key(data)  # the whole file's BLAKE3
        assert int(back.headers["content-length"]) == SIZE
        assert back.headers["accept-ranges"] == "bytes"


async def test_a_download_resumes_from_an_offset(net: Net) -> None:
    data = os.urandom(SIZE)
    async with net.client(1) as b, net.client(0) as a:
        key = (await b.post("/api/v1/files", content=data)).json()["key"]
        for offset in (1, LIMIT, LIMIT + 7, SIZE - 1):
            part = await a.get(f"/api/v1/values/{key}", headers={"Range": f"bytes={offset}-"})
            assert part.status_code == 206, part.text
            assert part.content == data[offset:]
            assert part.headers["content-range"] == f"bytes {offset}-{SIZE - 1}/{SIZE}"
            assert part.headers["x-content-key"] == content_key(data)
        past = await a.get(f"/api/v1/values/{key}", headers={"Range": f"bytes={SIZE}-"})
        assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{SIZE}"
        assert "past the end" in one_line_error(past)
        # A form of range other than "from N on" is ignored: the whole file.
        whole = await a.get(f"/api/v1/values/{key}", headers={"Range": "bytes=0-9"})
        assert whole.status_code == 200 and whole.content == data
        # A plain value resumes the same way.
        value = os.urandom(5000)
        vkey = (await b.post("/api/v1/values", content=value)).json()["key"]
        tail = await a.get(f"/api/v1/values/{vkey}", headers={"Range": "bytes=4000-"})
        assert tail.status_code == 206 and tail.content == value[4000:]
        assert tail.headers["x-value-kind"] == "value"


async def test_an_upload_sent_again_sends_no_stored_chunk_again(net: Net) -> None:
    data = os.urandom(SIZE)
    others = net.nodes[1:]
    async with net.client(0) as a:
        before = await received(others)
        first = (await a.post("/api/v1/files", content=data)).json()
        sent = await received(others) - before
        assert sent >= 2 * 4  # four chunks and the root on each of the two others, at least
        again = (await a.post("/api/v1/files", content=pieces(data))).json()
        # Nothing was sent in this run, so no replica count is known for it.
        assert again == {**first, "replicas": None}
        assert await received(others) - before == sent


async def test_an_empty_file_is_a_file(net: Net) -> None:
    async with net.client(0) as a, net.client(1) as b:
        stored = await a.post("/api/v1/files", content=b"")
        assert stored.status_code == 201, stored.text
        key = stored.json()["key"]
        back = await b.get(f"/api/v1/values/{key}", headers={"Range": "bytes=0-"})
        assert back.status_code == 200 and back.content == b""
        assert back.headers["x-content-key"] == content_key(b"")
