"""The file manifest: a small versioned binary format of ours that names a file's chunks.

A file is stored as chunks (plain DHT values, each under its BLAKE3 key) and one manifest value
whose key names the file. A manifest too large for one value becomes a tree: the leaves list
chunks, the nodes above list manifests. Every node is a DHT value like any other, checked
against its key when fetched, so the tree is verified from the root key down.

Layout, big-endian, every field fixed-size (so a reader checks the length before it reads)::

    offset  size  field
    0       4     magic    b"LPFM" (Lumera P2P File Manifest)
    4       1     version  1
    5       1     flags    bit 0: ROOT (this node names a whole file); other bits 0
    6       1     depth    0: the entries are chunks; d > 0: manifests of depth d - 1
    7       1     reserved 0
    8       4     count    number of entries
    12      8     total    bytes of file content below this node (the sum of the entries)
    20      32    blake3   BLAKE3-256 of the whole file: only when ROOT is set
    ...     40 × count     entries: key (32 bytes: the BLAKE3 key of a chunk or child manifest)
                           and length (8 bytes: the chunk's size, or the child's ``total``)

Why binary and not canonical JSON: every field has one encoding, so the same file and chunk size
always give the same manifest and key (the decoder refuses any other spelling: trailing bytes,
set reserved bits, a hash on a non-root node); an entry costs 40 bytes instead of ~70 in JSON;
and a decoder that reads fixed-size fields checks the whole length before it allocates anything.

The decoder (:meth:`Manifest.decode`) raises :class:`~lumera_p2p.errors.ManifestError` and
nothing else for any input.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from lumera_p2p.content import DIGEST_SIZE
from lumera_p2p.errors import ManifestError

MAGIC = b"LPFM"
VERSION = 1
FLAG_ROOT = 0x01
HEADER = struct.Struct(">4sBBBBIQ")
ENTRY = struct.Struct(">32sQ")
#: Bytes before the entries of a non-root node, and of a root (which carries the file's hash).
HEADER_SIZE = HEADER.size
ROOT_HEADER_SIZE = HEADER.size + DIGEST_SIZE
ENTRY_SIZE = ENTRY.size
#: Deepest tree: at the smallest chunk size (4 KiB, fanout 101) eight levels cover 2^63 bytes.
MAX_DEPTH = 8
#: The largest chunk a manifest may list, so a reader never expects a bigger value.
MAX_CHUNK_SIZE = 64 * 1024 * 1024
#: The most entries of one node (a 40 MiB manifest value): far above any fanout we write.
MAX_ENTRIES = 1 << 20
#: File sizes are signed 64-bit in the languages that will read this.
MAX_TOTAL = (1 << 63) - 1


@dataclass(frozen=True)
class Entry:
    """One chunk (at depth 0) or child manifest (above): its key and the bytes it covers."""

    key: bytes
    length: int


@dataclass(frozen=True)
class Manifest:
    """One node of a file's manifest tree (see the module docstring).

    ``whole`` is the BLAKE3 of the whole file, set exactly on the root. Construction checks
    every rule the decoder checks, so an invalid manifest can be neither built nor read.
    """

    depth: int
    entries: tuple[Entry, ...]
    whole: bytes | None = None

    def __post_init__(self) -> None:
        _check(self.depth, self.entries, self.whole)

    @property
    def root(self) -> bool:
        """Does this node name a whole file (and carry its hash)?"""
        return self.whole is not None

    @property
    def total(self) -> int:
        """Bytes of file content below this node."""
        return sum(e.length for e in self.entries)

    def encode(self) -> bytes:
        """The canonical bytes of this node."""
        flags = FLAG_ROOT if self.whole is not None else 0
        parts = [HEADER.pack(MAGIC, VERSION, flags, self.depth, 0, len(self.entries), self.total)]
        if self.whole is not None:
            parts.append(self.whole)
        parts.extend(ENTRY.pack(e.key, e.length) for e in self.entries)
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> Manifest:
        """Read one node; raise ``ManifestError`` for anything that is not a canonical one."""
        view = memoryview(data)
        if len(view) < HEADER_SIZE:
            raise ManifestError(f"not a file manifest: {len(view)} bytes, shorter than a header")
        magic, version, flags, depth, reserved, count, total = HEADER.unpack_from(view)
        if magic != MAGIC:
            raise ManifestError("not a file manifest (no LPFM magic)")
        if version != VERSION:
            raise ManifestError(f"manifest version {version} is not supported (only {VERSION})")
        if flags & ~FLAG_ROOT:
            raise ManifestError(f"manifest has unknown flags {flags:#04x}")
        if reserved:
            raise ManifestError("manifest reserved byte is not 0")
        if count > MAX_ENTRIES:
            raise ManifestError(f"manifest lists {count} entries, more than {MAX_ENTRIES}")
        start = ROOT_HEADER_SIZE if flags & FLAG_ROOT else HEADER_SIZE
        expected = start + count * ENTRY_SIZE
        if len(view) != expected:
            raise ManifestError(
                f"manifest of {count} entries must be {expected} bytes, got {len(view)}"
            )
        whole = bytes(view[HEADER_SIZE:ROOT_HEADER_SIZE]) if flags & FLAG_ROOT else None
        entries = tuple(
            Entry(key, length) for key, length in ENTRY.iter_unpack(view[start:expected])
        )
        manifest = cls(depth, entries, whole)
        if manifest.total != total:
            raise ManifestError(
                f"manifest says {total} bytes but its entries add up to {manifest.total}"
            )
        return manifest


def _check(depth: int, entries: tuple[Entry, ...], whole: bytes | None) -> None:
    if not 0 <= depth <= MAX_DEPTH:
        raise ManifestError(f"manifest depth {depth} is outside 0..{MAX_DEPTH}")
    if len(entries) > MAX_ENTRIES:
        raise ManifestError(f"manifest lists {len(entries)} entries, more than {MAX_ENTRIES}")
    if whole is not None and len(whole) != DIGEST_SIZE:
        raise ManifestError(f"a file hash has {DIGEST_SIZE} bytes, got {len(whole)}")
    if not entries and not (whole is not None and depth == 0):
        raise ManifestError("only the root leaf of an empty file lists no entries")
    if whole is not None and depth > 0 and len(entries) < 2:
        # A root over one child would be a second name for the child: not canonical.
        raise ManifestError("a root above the leaves lists at least two manifests")
    total = 0
    for index, entry in enumerate(entries):
        if len(entry.key) != DIGEST_SIZE:
            raise ManifestError(f"entry {index}: a key has {DIGEST_SIZE} bytes")
        if entry.length < 1:
            raise ManifestError(f"entry {index}: length {entry.length} is not positive")
        if depth == 0 and entry.length > MAX_CHUNK_SIZE:
            raise ManifestError(
                f"entry {index}: a chunk of {entry.length} bytes is over {MAX_CHUNK_SIZE}"
            )
        total += entry.length
    if total > MAX_TOTAL:
        raise ManifestError(f"manifest covers {total} bytes, more than {MAX_TOTAL}")


def fanout(manifest_bytes: int) -> int:
    """Entries per node so that every node, root included, fits in ``manifest_bytes``."""
    entries = (manifest_bytes - ROOT_HEADER_SIZE) // ENTRY_SIZE
    if entries < 2:
        raise ValueError(f"a manifest of {manifest_bytes} bytes cannot hold two entries")
    return min(entries, MAX_ENTRIES)


def root_manifest(data: bytes | bytearray | memoryview) -> Manifest | None:
    """``data`` as a file's root manifest, or None if it is not one (any other value)."""
    if len(data) < ROOT_HEADER_SIZE or bytes(data[:4]) != MAGIC:
        return None
    try:
        manifest = Manifest.decode(data)
    except ManifestError:
        return None
    return manifest if manifest.root else None
