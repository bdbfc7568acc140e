"""The type table: which gob id each Go type gets, under which name, and its encoded definition.

This follows Go's ``type.go`` (``getTypeInfo``, ``newTypeObject``) step by step, because the ids
are visible on the wire and depend on the exact order Go assigns them in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from lumera_p2p.wire.gob.types import (
    GoArray,
    GoMap,
    GoSlice,
    GoStruct,
    GoType,
    base_type,
)
from lumera_p2p.wire.gob.wiretypes import (
    BUILTIN_IDS,
    FIRST_USER_ID,
    T_WIRE_TYPE,
    WIRE_T,
    ArrayType,
    CommonType,
    FieldType,
    MapType,
    SliceType,
    StructType,
    WireType,
)
from lumera_p2p.wire.gob.writers import Buffer, encode_struct

__all__ = ["BUILTIN_WIRE", "TypeInfo", "TypeTable"]


class _GobT:
    """A gob type as Go's type.go builds it (mutable while under construction)."""

    __slots__ = ("elem", "fields", "id", "key", "kind", "length", "name")

    def __init__(self, kind: str, name: str, tid: int = 0) -> None:
        self.kind = kind
        self.name = name
        self.id = tid
        self.elem = 0
        self.key = 0
        self.length = 0
        self.fields: list[tuple[str, int]] = []

    def wire(self) -> WireType | None:
        common = CommonType(self.name, self.id)
        if self.kind == "struct":
            fields = [FieldType(n, i) for n, i in self.fields]
            return WireType(struct_t=StructType(common, fields))
        if self.kind == "slice":
            return WireType(slice_t=SliceType(common, self.elem))
        if self.kind == "array":
            return WireType(array_t=ArrayType(common, self.elem, self.length))
        if self.kind == "map":
            return WireType(map_t=MapType(common, self.key, self.elem))
        return None


_BUILTIN_GOBT: Final = MappingProxyType({tid: _GobT("builtin", "", tid) for tid in range(1, 9)})


@dataclass(frozen=True, slots=True)
class TypeInfo:
    """A numbered type: its id, its definition and that definition gob-encoded (``b""`` for
    builtin types, which are never defined on the wire)."""

    id: int
    wire: WireType | None
    wire_bytes: bytes


class TypeTable:
    """Go's process-wide type registry: which id each type got, and under which name.

    Go assigns ids the first time a type is *encoded* and keeps them for the life of the process,
    so a long-running peer numbers types by its history. A fresh table reproduces a fresh Go
    process; keeping one table across frames reproduces a long-running one. ``first_id=65``
    reproduces Go releases that started user ids at 65 (go1.19).
    """

    __slots__ = ("_infos", "_next_id", "_types")

    def __init__(self, first_id: int = FIRST_USER_ID) -> None:
        self._next_id = first_id
        self._types: dict[GoType, _GobT] = {}
        self._infos: dict[GoType, TypeInfo] = {}

    def copy(self) -> TypeTable:
        """An independent table with the same history (complete entries are never mutated)."""
        other = TypeTable(self._next_id)
        other._types = dict(self._types)
        other._infos = dict(self._infos)
        return other

    @property
    def next_id(self) -> int:
        """The id the next new type will get."""
        return self._next_id

    def type_id(self, t: GoType) -> int:
        """The id of ``t``, assigning ids to it and its parts if needed (Go's getTypeInfo)."""
        return self.info(t).id

    def wire_type(self, t: GoType) -> WireType | None:
        """The definition Go sends for ``t`` (``None`` for builtin types)."""
        return self.info(t).wire

    def prepare(self, t: GoType) -> None:
        """Number ``t`` (as :meth:`type_id`) and encode the definitions of it and all its parts
        now, so that encoders using this table or its copies need not."""
        self.info(t)
        for rt in list(self._types):
            self.info(rt)

    def numbered(self) -> list[tuple[GoType, int]]:
        """Every type numbered so far with its id (builtin ones included), in numbering order."""
        return [(t, gt.id) for t, gt in self._types.items()]

    def info(self, t: GoType) -> TypeInfo:
        """The id and encoded definition of ``t``, numbering it first if needed."""
        rt = base_type(t)
        info = self._infos.get(rt)
        if info is None:
            gt = self._base_type(rt.go_name(), rt)
            wire = gt.wire()
            wire_bytes = b""
            if wire is not None:
                out = Buffer()
                encode_struct(None, out, wire, WIRE_T)
                wire_bytes = out.getvalue()
            info = TypeInfo(gt.id, wire, wire_bytes)
            self._infos[rt] = info
        return info

    def _set_id(self, gt: _GobT) -> None:
        if gt.id == 0:
            gt.id = self._next_id
            self._next_id += 1

    def _base_type(self, name: str, t: GoType) -> _GobT:
        rt = base_type(t)
        gt = self._types.get(rt)
        if gt is None:
            gt = self._new_type(name, rt)
            self._types[rt] = gt
        return gt

    def _new_type(self, name: str, rt: GoType) -> _GobT:
        # newTypeObject: a struct gets its id before its fields, a slice/array/map after its
        # element types. That order is what makes ids "not increasing in order of appearance".
        builtin = BUILTIN_IDS.get(type(rt))
        if builtin is not None:
            return _BUILTIN_GOBT[builtin]
        if isinstance(rt, GoArray):
            at = _GobT("array", name)
            self._types[rt] = at
            elem = self._base_type("", rt.elem)
            self._set_id(at)
            at.elem, at.length = elem.id, rt.length
            return at
        if isinstance(rt, GoMap):
            mt = _GobT("map", name)
            self._types[rt] = mt
            key = self._base_type("", rt.key)
            elem = self._base_type("", rt.elem)
            self._set_id(mt)
            mt.key, mt.elem = key.id, elem.id
            return mt
        if isinstance(rt, GoSlice):
            st = _GobT("slice", name)
            self._types[rt] = st
            elem = self._base_type(rt.elem.go_name(), rt.elem)
            self._set_id(st)
            self._set_id(elem)
            st.elem = elem.id
            return st
        if isinstance(rt, GoStruct):
            s = _GobT("struct", name)
            self._set_id(s)
            self._types[rt] = s
            for f in rt.fields:
                fb = base_type(f.type)
                tname = fb.go_name() or fb.go_string()
                gt = self._base_type(tname, f.type)
                self._set_id(gt)
                s.fields.append((f.name, gt.id))
            return s
        raise TypeError(f"gob cannot describe {rt!r}")


def _bootstrap_builtin_wire() -> Mapping[int, WireType]:
    """Ids 1-24 as Go's init builds them: the primitives, then wireType and its parts from 16."""
    table = TypeTable(first_id=T_WIRE_TYPE)
    table.type_id(WIRE_T)
    builtin = {tid: WireType() for tid in range(1, T_WIRE_TYPE)}
    for gt in table._types.values():
        wire = gt.wire()
        if wire is not None:
            builtin[gt.id] = wire
    return MappingProxyType(builtin)


BUILTIN_WIRE: Final = _bootstrap_builtin_wire()
"""The definitions Go builds in at start-up: empty ones for the primitives, then ``wireType``
and its parts (16-24), against which every type definition on the wire is decoded."""
