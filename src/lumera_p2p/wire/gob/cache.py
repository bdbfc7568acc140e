"""A cache shared by the decoders of many streams: parsed definitions and compiled decoders.

Every Lumera frame re-sends its type definitions, and peers send the same ones again and again;
parsing them and compiling a decoder is most of the cost of a small message. A
:class:`GobDecodeCache` is an explicit object its owner (a transport, a server) keeps and passes
to each decode; nothing is cached behind the caller's back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from lumera_p2p.wire.gob.ops import EngineRef
    from lumera_p2p.wire.gob.wiretypes import WireType

__all__ = ["BoundedTable", "GobDecodeCache"]

K = TypeVar("K")
V = TypeVar("V")


class BoundedTable(Generic[K, V]):
    """A dict that empties itself when it reaches ``max_entries`` (cheap, and enough: the
    working set of a healthy network is a few dozen entries; only a hostile peer fills it)."""

    __slots__ = ("_entries", "lookup", "max_entries")

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: dict[K, V] = {}
        #: The entry for a key, or ``None``: the dict's own ``get`` (generated code calls it
        #: per element; emptying keeps the same dict).
        self.lookup: Callable[[K], V | None] = self._entries.get

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        """The entry for ``key``, if any."""
        return self._entries.get(key)

    def put(self, key: K, value: V) -> None:
        """Store ``value`` under ``key``, emptying the table first if it is full."""
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = value


class GobDecodeCache:
    """Parsed type definitions and compiled decoders, shared by the decoders of many streams.

    Entries are keyed by the definition bytes and by the complete structure of the wire types a
    decoder depends on (ids included), so a cached decoder behaves exactly as a fresh one. The
    only exception is the nesting cap on type definitions (``max_depth``), which a cached decoder
    no longer has to pass: it can only matter for definitions nested about ``max_depth`` deep,
    which no Go peer sends, and decoded values stay capped either way.

    A fast codec (``wire.gob.fast``) also keeps here the definition sequences it has learnt from
    peers whose type ids differ from a fresh process's, and the structs it memoises (a lookup
    answer's nodes): their exact bytes and the value they decoded to, so that the same bytes
    are decoded once (``wire.gob.codegen.StructDecoders``).

    Bounded: each table is emptied when it reaches ``max_entries``. Not for sharing between
    threads.
    """

    __slots__ = ("defs", "elements", "engines", "max_entries", "shapes")

    def __init__(self, max_entries: int = 1024) -> None:
        self.max_entries = max_entries
        #: Definition bytes -> (definition, bytes consumed, its structural key, what decoding
        #: it is charged: ``wire.gob.costs``).
        self.defs: BoundedTable[bytes, tuple[WireType, int, tuple[Any, ...], int]] = BoundedTable(
            max_entries
        )
        #: (local type, wire id, max depth, signature) -> compiled engine.
        self.engines: BoundedTable[tuple[Any, ...], EngineRef] = BoundedTable(max_entries)
        #: Fast codec: (interface name, first definition bytes) -> a learnt definition sequence.
        self.shapes: BoundedTable[tuple[bytes, bytes], Any] = BoundedTable(max_entries)
        #: Fast codec: a memoised struct's first bytes -> (its bytes, its field values, what
        #: decoding it charged, its class).
        self.elements: BoundedTable[bytes, Any] = BoundedTable(max_entries)

    def __len__(self) -> int:
        return len(self.defs) + len(self.engines) + len(self.shapes) + len(self.elements)
