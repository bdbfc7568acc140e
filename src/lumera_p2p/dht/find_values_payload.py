"""The payload of a BatchFindValues answer: zstd of the JSON ``{hex key: base64 value | null}``.

Go builds the whole JSON document, then compresses it, and while the result is over its limit
drops the heaviest values and does it all again. For 256 MiB of values that is the values,
their base64 text, the JSON document and the compressed payload side by side, about four
times the values, and more for each retry. Here the document is streamed into the
compressor one entry at a time, so only the values and the compressed payload are ever held;
its exact length is known in advance and declared in the zstd frame header, as a one-shot
compression would, so Go's decoder sees the same kind of frame.

The values are chosen beforehand to fit (``dht/answer_budget.py``); only if the payload
still comes out over the limit (incompressible values, and the limit set below the values'
size) are the heaviest dropped as Go does.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence

import zstandard

#: zstd level Go uses (``utils.Compress``).
LEVEL = 2


def _b64_len(n: int) -> int:
    return 4 * ((n + 2) // 3)


def _document_length(names: list[str], values: Mapping[str, bytes | None]) -> int:
    # {"<64 hex>":"<base64>",...}: quotes and colon around each name, commas between.
    total = 2 + max(0, len(names) - 1)
    for name in names:
        value = values[name]
        total += len(name) + 3 + (4 if value is None else _b64_len(len(value)) + 2)
    return total


def _compress(names: list[str], values: Mapping[str, bytes | None]) -> bytes:
    compressor = zstandard.ZstdCompressor(level=LEVEL)
    stream = compressor.compressobj(size=_document_length(names, values))
    out = [stream.compress(b"{")]
    for i, name in enumerate(names):
        value = values[name]
        head = f'{"," if i else ""}"{name}":'.encode()
        if value is None:
            out.append(stream.compress(head + b"null"))
        else:
            out.append(stream.compress(head + b'"'))
            out.append(stream.compress(base64.b64encode(value)))
            out.append(stream.compress(b'"'))
    out.append(stream.compress(b"}"))
    out.append(stream.flush())
    return b"".join(out)


def compress_values(
    keys: Sequence[bytes], found: Mapping[bytes, bytes], limit: int
) -> tuple[bytes, bool]:
    """The payload for ``keys`` (values from ``found``, null for the others), and ``done``:
    whether every found value is in it (values are dropped, heaviest first, while the
    payload is over ``limit``)."""
    # A repeated key appears once, as in a JSON object built from a map.
    values: dict[str, bytes | None] = {key.hex(): found.get(key) for key in keys}
    names = list(values)
    payload = _compress(names, values)
    if len(payload) <= limit:
        return payload, True
    while len(payload) > limit:
        present = sorted(
            (n for n in names if values[n] is not None),
            key=lambda n: len(values[n] or b""),
            reverse=True,
        )
        if not present:
            break
        drop = 1 if len(present) <= 10 else 5 if len(present) <= 50 else 10
        for name in present[:drop]:
            values[name] = None
        payload = _compress(names, values)
    return payload, False
