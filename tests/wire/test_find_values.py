"""The BatchFindValues payload: Go's zstd(JSON {hex: base64 | null}), read within bounds."""

from __future__ import annotations

import base64
import contextlib
import json

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from lumera_p2p.errors import ProtocolError
from lumera_p2p.wire.find_values import decode_values, encode_values

HEX_KEYS = st.binary(min_size=32, max_size=32).map(bytes.hex)
VALUES = st.dictionaries(HEX_KEYS, st.none() | st.binary(max_size=300), max_size=20)


@settings(max_examples=200, deadline=None)
@given(VALUES)
def test_round_trip(values: dict[str, bytes | None]) -> None:
    assert decode_values(encode_values(values), 1 << 20) == values


def test_reads_a_payload_as_go_writes_it() -> None:
    # json-iterator's map[string][]byte: standard base64 with padding, nil as null, no spaces;
    # DataDog/zstd writes the content size into the frame header.
    doc = '{"aa":"aGVsbG8=","bb":null,"cc":""}'
    payload = zstandard.ZstdCompressor(level=2, write_content_size=True).compress(doc.encode())
    assert decode_values(payload, 1000) == {"aa": b"hello", "bb": None, "cc": b""}
    # A frame without the size (a streaming compressor's) reads the same.
    stream = zstandard.ZstdCompressor(level=2, write_content_size=False).compress(doc.encode())
    assert decode_values(stream, 1000) == {"aa": b"hello", "bb": None, "cc": b""}


def test_a_payload_that_inflates_past_the_bound_is_refused_without_inflating_it() -> None:
    doc = json.dumps({"aa": base64.b64encode(bytes(2_000_000)).decode()}).encode()
    bomb = zstandard.ZstdCompressor(level=19).compress(doc)
    assert len(bomb) < 1000  # a few hundred bytes claim megabytes
    with pytest.raises(ProtocolError, match="inflates past"):
        decode_values(bomb, 100_000)
    assert decode_values(bomb, len(doc))["aa"] == bytes(2_000_000)


@pytest.mark.parametrize(
    ("doc", "error"),
    [
        (b"[1, 2]", "not a JSON object"),
        (b'{"aa": 5}', "neither base64 text nor null"),
        (b'{"aa": ["x"]}', "neither base64 text nor null"),
        (b'{"aa": "not base64!"}', "not base64"),
        (b'{"aa": "aGVsbG8"}', "not base64"),  # padding missing: Go's decoder refuses it too
        (b"\xff\xfe", "not JSON"),
        (b"{" * 100_000, "not JSON"),
        (b'{"aa": 1' + b"0" * 5000 + b"}", "not JSON"),  # Python's limit on integer digits
    ],
)
def test_malformed_documents_are_protocol_errors(doc: bytes, error: str) -> None:
    payload = zstandard.ZstdCompressor().compress(doc)
    with pytest.raises(ProtocolError, match=error):
        decode_values(payload, 1 << 20)


@pytest.mark.parametrize("payload", [b"", b"not zstd at all", b"\x28\xb5\x2f\xfd\x00\x00"])
def test_what_is_not_zstd_is_a_protocol_error(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_values(payload, 1 << 20)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2000))
def test_fuzz_random_bytes_only_raise_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_values(data, 1 << 16)


@settings(max_examples=300, deadline=None)
@given(VALUES, st.data())
def test_fuzz_damaged_payloads_only_raise_protocol_error(
    values: dict[str, bytes | None], data: st.DataObject
) -> None:
    payload = bytearray(encode_values(values))
    for _ in range(data.draw(st.integers(1, 4))):
        payload[data.draw(st.integers(0, len(payload) - 1))] ^= data.draw(st.integers(1, 255))
    try:
        decoded = decode_values(bytes(payload), 1 << 16)
    except ProtocolError:
        return
    assert all(isinstance(v, bytes | None) for v in decoded.values())
