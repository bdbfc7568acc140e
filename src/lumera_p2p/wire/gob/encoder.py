"""The encoder: one Go ``gob.Encoder`` stream (``encoder.go``, ``encode.go``'s interface part).

A stream sends each type definition once, before the first value that needs it, and splits an
interface value over gob messages exactly where Go does: the definitions of the concrete type are
flushed together with the part of the outer value written so far.
"""

from __future__ import annotations

from typing import Any

from lumera_p2p.wire.gob.registry import EMPTY_REGISTRY, InterfaceRegistry
from lumera_p2p.wire.gob.types import (
    GoArray,
    GoMap,
    GoPtr,
    GoSlice,
    GoStruct,
    GoType,
    base_type,
)
from lumera_p2p.wire.gob.typetable import TypeInfo, TypeTable
from lumera_p2p.wire.gob.writers import (
    TOO_BIG,
    Buffer,
    GobEncodeError,
    encode_struct,
    writer_for,
)

__all__ = ["GobEncoder", "gob_encode"]


class GobEncoder:
    """One Go ``gob.Encoder``: a stream that sends each type definition once.

    The Lumera protocol uses a fresh encoder per frame. ``types`` is the process-wide id table
    (see :class:`~lumera_p2p.wire.gob.typetable.TypeTable`); a new one is used when omitted.
    """

    __slots__ = ("_registry", "_sent", "_types", "_writers")

    def __init__(
        self, types: TypeTable | None = None, registry: InterfaceRegistry = EMPTY_REGISTRY
    ) -> None:
        self._types = types if types is not None else TypeTable()
        self._registry = registry
        self._sent: dict[GoType, int] = {}
        self._writers: list[Buffer] = []

    def encode(self, value: Any, go_type: GoType) -> bytes:
        """Encode one value (Go's ``Encode``) and return the gob messages written for it."""
        return b"".join(self.encode_parts(value, go_type))

    def encode_parts(self, value: Any, go_type: GoType) -> list[bytes | bytearray | memoryview]:
        """Like :meth:`encode`, as a list of chunks to join (large ``[]byte`` are not copied)."""
        if value is None and isinstance(go_type, GoPtr):
            raise GobEncodeError(f"gob: cannot encode nil pointer of type {go_type.go_string()}")
        out = Buffer()
        self._writers = [out]
        b = Buffer()
        self._send_type_descriptor(out, b, go_type)
        self._send_type_id(b, go_type)
        self._encode(b, value, go_type)
        self._write_message(self._writers[-1], b)
        return out.parts()

    def definitions(self, go_type: GoType) -> list[tuple[int, bytes]]:
        """The definitions this stream sends before its first value of ``go_type``, in order,
        as ``(id, encoded wireType)``; they count as sent from now on."""
        return [(info.id, info.wire_bytes) for info in self._new_definitions(go_type)]

    def encode_interface(self, b: Buffer, v: Any) -> None:
        """encodeInterface for a non-nil value: name, definitions, concrete id, count, value."""
        entry = self._registry.entry_for(v)
        b.uint(len(entry.name))
        b.raw(entry.name)
        self._send_type_descriptor(self._writers[-1], b, entry.type)
        self._send_type_id(b, entry.type)
        # Nested type definitions go to ``b``, ahead of the value's byte count.
        self._writers.append(b)
        data = Buffer()
        self._encode(data, v, entry.type)
        self._writers.pop()
        self._write_message(b, data)

    def _write_message(self, w: Buffer, b: Buffer) -> None:
        n = b.size()
        if n >= TOO_BIG:
            raise GobEncodeError("gob: encoder: message too big")
        w.uint(n)
        w.take(b)

    def _send_type_descriptor(self, w: Buffer, b: Buffer, t: GoType) -> None:
        for info in self._new_definitions(t):
            b.int(-info.id)
            b.raw(info.wire_bytes)
            # In an interface, ``b`` holds the partly encoded outer value: Go flushes it
            # together with the first definition, which is how a value is split over messages.
            self._write_message(w, b)

    def _new_definitions(self, t: GoType) -> list[TypeInfo]:
        """sendTypeDescriptor's walk: ``t`` and its parts not yet sent, parents first, fields in
        order, a map's key before its element."""
        rt = base_type(t)
        found: list[TypeInfo] = []
        if rt not in self._sent:
            self._collect(rt, found)
            if not found:  # builtin types and interfaces are never described
                self._sent[rt] = self._types.type_id(rt)
        return found

    def _collect(self, t: GoType, found: list[TypeInfo]) -> None:
        actual = base_type(t)
        if not isinstance(actual, GoSlice | GoArray | GoMap | GoStruct) or actual in self._sent:
            return
        info = self._types.info(actual)
        found.append(info)
        self._sent[actual] = info.id
        if isinstance(actual, GoStruct):
            for f in actual.fields:
                self._collect(f.type, found)
        elif isinstance(actual, GoSlice | GoArray):
            self._collect(actual.elem, found)
        else:
            self._collect(actual.key, found)
            self._collect(actual.elem, found)

    def _send_type_id(self, b: Buffer, t: GoType) -> None:
        b.int(self._sent[base_type(t)])

    def _encode(self, b: Buffer, value: Any, t: GoType) -> None:
        base = base_type(t)
        if isinstance(base, GoStruct):
            encode_struct(self, b, value, base)
        else:
            b.cur.append(0)  # a non-struct value travels as a singleton field 0
            writer_for(base)(self, b, value)


def gob_encode(
    value: Any,
    go_type: GoType,
    *,
    types: TypeTable | None = None,
    registry: InterfaceRegistry = EMPTY_REGISTRY,
) -> bytes:
    """Encode ``value`` as a complete gob stream from a fresh encoder."""
    return GobEncoder(types, registry).encode(value, go_type)
