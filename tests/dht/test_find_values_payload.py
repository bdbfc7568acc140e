"""The streamed BatchFindValues payload: the same document as one-shot JSON, a zstd frame that
declares its size, trimmed as Go trims when over the limit."""

from __future__ import annotations

import base64
import json
import os

import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from lumera_p2p.dht.find_values_payload import compress_values


def _doc(payload: bytes) -> dict[str, str | None]:
    doc: dict[str, str | None] = json.loads(zstandard.ZstdDecompressor().decompress(payload))
    return doc


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.binary(min_size=32, max_size=32), st.none() | st.binary(max_size=300)))
)
def test_the_document_is_the_one_shot_json(entries: list[tuple[bytes, bytes | None]]) -> None:
    keys = [k for k, _ in entries]
    found = {k: v for k, v in entries if v is not None}
    payload, done = compress_values(keys, found, 1 << 30)
    assert done
    expected = {
        k.hex(): (None if k not in found else base64.b64encode(found[k]).decode()) for k in keys
    }
    text = zstandard.ZstdDecompressor().decompress(payload)
    assert text == json.dumps(expected, separators=(",", ":")).encode()
    # Like a one-shot compression, the frame header carries the document's size.
    assert zstandard.get_frame_parameters(payload).content_size == len(text)


def test_over_the_limit_the_heaviest_go_first() -> None:
    keys = [os.urandom(32) for _ in range(4)]
    found = {k: os.urandom(10_000 * (i + 1)) for i, k in enumerate(keys)}  # incompressible
    payload, done = compress_values(keys, found, 45_000)
    assert not done and len(payload) <= 45_000
    doc = _doc(payload)
    assert doc[keys[3].hex()] is None and doc[keys[2].hex()] is None
    assert doc[keys[0].hex()] is not None and doc[keys[1].hex()] is not None


def test_nothing_fits() -> None:
    key = os.urandom(32)
    payload, done = compress_values([key], {key: os.urandom(5000)}, 10)
    assert not done and _doc(payload) == {key.hex(): None}
