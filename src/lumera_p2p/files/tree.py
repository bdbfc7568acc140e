"""Building and walking a manifest tree, sans I/O: values in, values out.

:class:`TreeBuilder` is fed chunk keys in file order and hands back each finished manifest node
to store; it holds at most one open node per level (``fanout`` entries each), so a file of any
size is described in bounded memory. :class:`TreeWalker` goes the other way: given the root it
says which chunk comes next, or which child manifest it needs first, and is fed that manifest
when it arrives; it too holds one node per level.

The tree is canonical: leaves are filled to ``fanout`` entries in order and so is every level
above, so a file and a fanout have exactly one tree (and one root key).
"""

from __future__ import annotations

from dataclasses import dataclass

from lumera_p2p.content import digest
from lumera_p2p.errors import ManifestError
from lumera_p2p.files.manifest import MAX_DEPTH, Entry, Manifest


@dataclass(frozen=True)
class Node:
    """A finished manifest node: its key and its encoded bytes (a value to store)."""

    key: bytes
    data: bytes


def _node(depth: int, entries: list[Entry], whole: bytes | None = None) -> Node:
    data = Manifest(depth, tuple(entries), whole).encode()
    return Node(digest(data), data)


class TreeBuilder:
    """Collects chunk entries into manifest nodes of at most ``fanout`` entries."""

    def __init__(self, fanout: int) -> None:
        if fanout < 2:
            raise ValueError("a manifest tree needs a fanout of at least 2")
        self._fanout = fanout
        #: ``_levels[d]``: the open node of depth ``d`` (never empty once created).
        self._levels: list[list[Entry]] = []
        self._finished = False

    def add(self, key: bytes, length: int) -> list[Node]:
        """Append a chunk; return the manifest nodes this completed (store them)."""
        if self._finished:
            raise ValueError("the tree is finished")
        out: list[Node] = []
        self._push(0, Entry(key, length), out)
        return out

    def finish(self, whole: bytes) -> tuple[Node, list[Node]]:
        """Close every open node; return the root (with the file's hash ``whole``) and the
        other nodes this completed, which must be stored before the root is."""
        if self._finished:
            raise ValueError("the tree is finished")
        self._finished = True
        out: list[Node] = []
        if not self._levels:
            return _node(0, [], whole), out
        depth = 0
        while depth < len(self._levels) - 1:
            entries = self._levels[depth]
            node = _node(depth, entries)
            out.append(node)
            self._levels[depth] = []
            self._push(depth + 1, Entry(node.key, _total(entries)), out)
            depth += 1
        top = len(self._levels) - 1
        return _node(top, self._levels[top], whole), out

    def _push(self, depth: int, entry: Entry, out: list[Node]) -> None:
        if depth > MAX_DEPTH:
            raise ManifestError(f"a file this large needs more than {MAX_DEPTH} manifest levels")
        if depth == len(self._levels):
            self._levels.append([])
        level = self._levels[depth]
        if len(level) == self._fanout:
            # Close the full node only now that another entry needs room: a file that ends
            # exactly at a full node has that node as its root, not a root above it.
            node = _node(depth, level)
            out.append(node)
            self._levels[depth] = []
            self._push(depth + 1, Entry(node.key, _total(level)), out)
            level = self._levels[depth]
        level.append(entry)


def _total(entries: list[Entry]) -> int:
    return sum(e.length for e in entries)


@dataclass(frozen=True)
class ChunkRef:
    """The next chunk of the file: where it starts, its key and length."""

    offset: int
    key: bytes
    length: int


@dataclass(frozen=True)
class NeedManifest:
    """The walk needs this child manifest before it can go on (feed it to ``TreeWalker.feed``)."""

    key: bytes
    depth: int
    length: int


class TreeWalker:
    """Walks a file's chunks in order, from byte ``offset`` on (earlier subtrees are skipped
    without being fetched)."""

    def __init__(self, root: Manifest, offset: int = 0) -> None:
        if not root.root:
            raise ManifestError("this manifest is part of a file, not a whole file")
        if not 0 <= offset <= root.total:
            raise ValueError(f"offset {offset} is outside the file (0..{root.total})")
        self._total = root.total
        # Each frame: a node, the index of its next entry, and the file offset of that entry.
        self._stack: list[tuple[Manifest, int, int]] = [(root, 0, 0)]
        self._pending: NeedManifest | None = None
        self._skip_to = offset

    @property
    def total(self) -> int:
        """Bytes in the file."""
        return self._total

    def next(self) -> ChunkRef | NeedManifest | None:
        """The next chunk, a manifest needed first, or None at the end of the file."""
        if self._pending is not None:
            return self._pending
        while self._stack:
            node, i, at = self._stack[-1]
            if i == len(node.entries):
                self._stack.pop()
                continue
            entry = node.entries[i]
            self._stack[-1] = (node, i + 1, at + entry.length)
            if at + entry.length <= self._skip_to:
                continue  # the whole entry lies before the start: skipped, never fetched
            if node.depth == 0:
                return ChunkRef(at, entry.key, entry.length)
            self._stack[-1] = (node, i, at)  # come back to this entry once the child is fed
            self._pending = NeedManifest(entry.key, node.depth - 1, entry.length)
            return self._pending
        return None

    def feed(self, data: bytes) -> None:
        """The manifest asked for by the last ``next``; raise ``ManifestError`` if it is not
        what its parent said (its key, depth and length)."""
        need = self._pending
        if need is None:
            raise ValueError("no manifest was asked for")
        if digest(data) != need.key:
            raise ManifestError("a child manifest does not hash to its key")
        child = Manifest.decode(data)
        if child.root:
            raise ManifestError("a child manifest is marked as a root")
        if child.depth != need.depth:
            raise ManifestError(f"a child manifest has depth {child.depth}, expected {need.depth}")
        if child.total != need.length:
            raise ManifestError(
                f"a child manifest covers {child.total} bytes, its parent says {need.length}"
            )
        node, i, at = self._stack[-1]
        self._stack[-1] = (node, i + 1, at + need.length)
        self._stack.append((child, 0, at))
        self._pending = None
