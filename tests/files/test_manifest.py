"""The manifest codec: round trips, canonical bytes, hostile input meeting only ManifestError."""

from __future__ import annotations

import struct
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lumera_p2p.content import digest
from lumera_p2p.errors import ManifestError
from lumera_p2p.files.manifest import (
    ENTRY,
    HEADER,
    MAGIC,
    MAX_CHUNK_SIZE,
    MAX_DEPTH,
    MAX_ENTRIES,
    ROOT_HEADER_SIZE,
    Entry,
    Manifest,
    fanout,
    root_manifest,
)

keys = st.binary(min_size=32, max_size=32)
chunk_entries = st.builds(Entry, keys, st.integers(1, MAX_CHUNK_SIZE))
child_entries = st.builds(Entry, keys, st.integers(1, 1 << 40))


@st.composite
def manifests(draw: st.DrawFn) -> Manifest:
    depth = draw(st.integers(0, MAX_DEPTH))
    root = draw(st.booleans())
    low = 2 if root and depth > 0 else (0 if root else 1)
    entries = draw(
        st.lists(chunk_entries if depth == 0 else child_entries, min_size=low, max_size=30)
    )
    return Manifest(depth, tuple(entries), draw(keys) if root else None)


@given(manifests())
def test_round_trip(manifest: Manifest) -> None:
    data = manifest.encode()
    assert Manifest.decode(data) == manifest
    assert Manifest.decode(data).encode() == data
    header = ROOT_HEADER_SIZE if manifest.root else HEADER.size
    assert len(data) == header + ENTRY.size * len(manifest.entries)


@given(st.binary(max_size=400))
@settings(max_examples=500)
def test_arbitrary_bytes_meet_only_manifest_error(data: bytes) -> None:
    try:
        manifest = Manifest.decode(data)
    except ManifestError as exc:
        assert str(exc)
    else:  # what decodes is canonical
        assert manifest.encode() == data


@given(manifests(), st.data())
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_damaged_manifests_meet_only_manifest_error(
    manifest: Manifest, data: st.DataObject
) -> None:
    raw = bytearray(manifest.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw) + 3))
    damaged = bytes(raw[:cut]) + b"\0" * max(0, cut - len(raw))
    try:
        back = Manifest.decode(damaged)
    except ManifestError:
        return
    assert back.encode() == damaged


def _header(
    *, magic: bytes = MAGIC, version: int = 1, flags: int = 0, depth: int = 0,
    reserved: int = 0, count: int = 1, total: int = 5,
) -> bytes:  # fmt: skip
    return HEADER.pack(magic, version, flags, depth, reserved, count, total)


ONE = ENTRY.pack(b"k" * 32, 5)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "shorter than a header"),
        (b"LPFM", "shorter than a header"),
        (_header(magic=b"JSON") + ONE, "magic"),
        (_header(version=2) + ONE, "version 2 is not supported"),
        (_header(flags=0x02) + ONE, "unknown flags"),
        (_header(reserved=1) + ONE, "reserved"),
        (_header(depth=MAX_DEPTH + 1) + ONE, "depth"),
        (_header() + ONE + b"x", "must be 60 bytes"),
        (_header(count=2) + ONE, "must be 100 bytes"),
        (_header(total=6) + ONE, "add up"),
        (_header(count=0, total=0), "only the root leaf of an empty file"),
        (_header(flags=1, depth=1) + b"h" * 32 + ONE, "at least two"),
        (_header() + ENTRY.pack(b"k" * 32, 0), "not positive"),
        (
            _header(total=MAX_CHUNK_SIZE + 1) + ENTRY.pack(b"k" * 32, MAX_CHUNK_SIZE + 1),
            "over",
        ),
        (
            _header(depth=1, count=2, total=2**64 - 2)
            + ENTRY.pack(b"k" * 32, 2**63 - 1)
            + ENTRY.pack(b"j" * 32, 2**63 - 1),
            "more than",
        ),
        (_header(count=MAX_ENTRIES + 1), "more than"),
    ],
)
def test_each_rule_has_a_clear_error(data: bytes, words: str) -> None:
    with pytest.raises(ManifestError, match=words):
        Manifest.decode(data)


def test_a_huge_count_is_refused_before_anything_is_allocated() -> None:
    # A 20-byte header claiming 2^32 - 1 entries (171 GB of entries): refused by its length,
    # without a list of that size ever being made.
    data = _header(count=2**32 - 1, total=1)
    tracemalloc.start()
    try:
        with pytest.raises(ManifestError):
            Manifest.decode(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024
    # The same for a count within the cap but a body much shorter than it says.
    with pytest.raises(ManifestError, match="must be"):
        Manifest.decode(_header(count=MAX_ENTRIES, total=1) + ONE)


def test_the_empty_file_has_one_manifest() -> None:
    empty = Manifest(0, (), digest(b""))
    data = empty.encode()
    assert len(data) == ROOT_HEADER_SIZE
    assert Manifest.decode(data) == empty
    assert Manifest.decode(data).total == 0


def test_the_layout_is_as_documented() -> None:
    key = bytes(range(32))
    whole = bytes(range(100, 132))
    data = Manifest(0, (Entry(key, 0x0102),), whole).encode()
    assert data[:4] == b"LPFM"
    assert data[4:8] == bytes([1, 1, 0, 0])  # version, flags (ROOT), depth, reserved
    assert struct.unpack(">IQ", data[8:20]) == (1, 0x0102)
    assert data[20:52] == whole
    assert data[52:84] == key
    assert data[84:92] == (0x0102).to_bytes(8, "big")


def test_construction_checks_the_rules_too() -> None:
    with pytest.raises(ManifestError):
        Manifest(0, (Entry(b"short", 1),))
    with pytest.raises(ManifestError):
        Manifest(0, (Entry(b"k" * 32, 1),), b"not 32 bytes")


def test_fanout_fits_a_root_in_the_chunk() -> None:
    for size in (4096, 65536, 1024 * 1024):
        n = fanout(size)
        entries = tuple(Entry(digest(i.to_bytes(4, "big")), 7) for i in range(n))
        assert len(Manifest(0, entries, b"h" * 32).encode()) <= size
        assert len(Manifest(0, (*entries, entries[0]), b"h" * 32).encode()) > size
    with pytest.raises(ValueError, match="two entries"):
        fanout(100)


@given(manifests())
def test_root_manifest_tells_a_file_from_any_other_value(manifest: Manifest) -> None:
    data = manifest.encode()
    assert root_manifest(data) == (manifest if manifest.root else None)
    assert root_manifest(data[:-1] if data[-1:] else b"x") is None
    assert root_manifest(b"Hello, world!") is None
