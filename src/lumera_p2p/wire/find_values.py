"""The payload of a ``BatchFindValues`` answer: zstd-compressed JSON ``{hex key: base64 | null}``.

This is the one compressed payload of the protocol (Go's ``findOptimalCompression``,
network.go): json-iterator marshals ``map[string][]byte`` (a ``[]byte`` as standard base64 with
padding, a nil one as ``null``) and DataDog/zstd compresses it at level 2. A replication fetch
(Go's ``GetBatchValuesFromNode``) reads it back.

Decoding is bounded before anything is allocated from it: the decompressed document may not
exceed ``max_size`` bytes (a few bytes of zstd can claim gigabytes), and it must be exactly an
object of strings to strings or ``null``. Bytes in, values out, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping

import zstandard

from lumera_p2p.errors import ProtocolError

#: Go's zstd level for this payload (``utils.Compress(dataBytes, 2)``).
ZSTD_LEVEL = 2


def encode_values(values: Mapping[str, bytes | None]) -> bytes:
    """zstd(JSON ``{hex key: base64 | null}``), as a Go server answers ``BatchFindValues``."""
    doc = {k: None if v is None else base64.b64encode(v).decode("ascii") for k, v in values.items()}
    text = json.dumps(doc, separators=(",", ":")).encode()
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(text)


def decode_values(payload: bytes, max_size: int) -> dict[str, bytes | None]:
    """The map a ``BatchFindValues`` answer carries; ``ProtocolError`` if it is not one.

    ``max_size`` bounds the decompressed JSON (an answer claiming more is refused, never
    inflated). A ``null`` value (the server does not hold the key, or left it out to fit the
    frame) stays ``None``; an empty string is an empty value.
    """
    if not payload:
        raise ProtocolError("empty BatchFindValues payload")
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(payload)
        text = reader.read(max_size + 1)
    except zstandard.ZstdError as exc:
        raise ProtocolError(f"BatchFindValues payload is not zstd: {exc}") from None
    if len(text) > max_size:
        raise ProtocolError(f"BatchFindValues payload inflates past {max_size} bytes")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, huge ints
        raise ProtocolError(f"BatchFindValues payload is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ProtocolError("BatchFindValues payload is not a JSON object")
    out: dict[str, bytes | None] = {}
    for key, value in doc.items():
        if value is None:
            out[key] = None
        elif isinstance(value, str):
            try:
                out[key] = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise ProtocolError(f"value of {key[:80]!r} is not base64") from None
        else:
            raise ProtocolError(f"value of {key[:80]!r} is neither base64 text nor null")
    return out
