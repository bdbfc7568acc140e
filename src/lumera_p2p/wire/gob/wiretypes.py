"""gob's own description of types on the wire (Go ``type.go``: ``wireType`` and its parts).

A gob stream defines every non-builtin type it uses before the first value of that type, as a
``wireType`` value that is itself gob-encoded. This module holds the Python form of those
definitions, the builtin type ids, and gob's own types as :mod:`.types` descriptors (gob sends its
definitions with gob, so the codec encodes and decodes them with its ordinary machinery).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from lumera_p2p.wire.gob.types import (
    GoBool,
    GoBytes,
    GoField,
    GoFloat,
    GoInt,
    GoInterface,
    GoPtr,
    GoSlice,
    GoString,
    GoStruct,
    GoType,
    GoUint,
)

__all__ = [
    "BUILTIN_IDS",
    "FIRST_USER_ID",
    "T_BOOL",
    "T_BYTES",
    "T_COMPLEX",
    "T_FLOAT",
    "T_INT",
    "T_INTERFACE",
    "T_STRING",
    "T_UINT",
    "T_WIRE_TYPE",
    "WIRE_T",
    "ArrayType",
    "CommonType",
    "FieldType",
    "GobEncoderType",
    "MapType",
    "SliceType",
    "StructType",
    "WireType",
    "wire_key",
    "wire_refs",
]

FIRST_USER_ID: Final = 64
"""First type id Go hands to user types (go1.2x+; go1.19 started at 65)."""

# Builtin gob type ids (type.go bootstrapType order).
T_BOOL: Final = 1
T_INT: Final = 2
T_UINT: Final = 3
T_FLOAT: Final = 4
T_BYTES: Final = 5
T_STRING: Final = 6
T_COMPLEX: Final = 7
T_INTERFACE: Final = 8
T_WIRE_TYPE: Final = 16

BUILTIN_IDS: Final[Mapping[type[GoType], int]] = MappingProxyType(
    {
        GoBool: T_BOOL,
        GoInt: T_INT,
        GoUint: T_UINT,
        GoFloat: T_FLOAT,
        GoBytes: T_BYTES,
        GoString: T_STRING,
        GoInterface: T_INTERFACE,
    }
)
"""The id of each primitive descriptor class (never defined on the wire)."""


@dataclass(frozen=True, slots=True)
class CommonType:
    """Name and id shared by every wire type; the name is informational and may be empty."""

    name: str = ""
    id: int = 0


@dataclass(frozen=True, slots=True)
class ArrayType:
    """Wire definition of ``[N]T``."""

    common: CommonType = CommonType()
    elem: int = 0
    len: int = 0


@dataclass(frozen=True, slots=True)
class SliceType:
    """Wire definition of ``[]T``."""

    common: CommonType = CommonType()
    elem: int = 0


@dataclass(frozen=True, slots=True)
class FieldType:
    """One struct field of a wire definition."""

    name: str = ""
    id: int = 0


@dataclass(frozen=True, slots=True)
class StructType:
    """Wire definition of a struct: its fields in order."""

    common: CommonType = CommonType()
    fields: list[FieldType] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class MapType:
    """Wire definition of ``map[K]V``."""

    common: CommonType = CommonType()
    key: int = 0
    elem: int = 0


@dataclass(frozen=True, slots=True)
class GobEncoderType:
    """Wire definition of a type with its own marshaller (skipped, never decoded)."""

    common: CommonType = CommonType()


@dataclass(frozen=True, slots=True)
class WireType:
    """One type definition from a gob stream. Go reads whichever member its context needs."""

    array_t: ArrayType | None = None
    slice_t: SliceType | None = None
    struct_t: StructType | None = None
    map_t: MapType | None = None
    gob_encoder_t: GobEncoderType | None = None
    binary_marshaler_t: GobEncoderType | None = None
    text_marshaler_t: GobEncoderType | None = None

    @property
    def name(self) -> str:
        """The informational name of the defined type (Go's ``wireType.string``)."""
        for part in (
            self.array_t,
            self.slice_t,
            self.struct_t,
            self.map_t,
            self.gob_encoder_t,
            self.binary_marshaler_t,
            self.text_marshaler_t,
        ):
            if part is not None:
                return part.common.name
        return "unknown type"

    @property
    def is_marshaler(self) -> bool:
        """A type with its own GobEncoder/BinaryMarshaler/TextMarshaler (we decode none)."""
        return (
            self.gob_encoder_t is not None
            or self.binary_marshaler_t is not None
            or self.text_marshaler_t is not None
        )


def wire_key(w: WireType) -> tuple[Any, ...]:
    """A hashable form of a definition: equal keys compile to identical decoders."""
    a, sl, st, m = w.array_t, w.slice_t, w.struct_t, w.map_t
    return (
        None if a is None else (a.common, a.elem, a.len),
        None if sl is None else (sl.common, sl.elem),
        None if st is None else (st.common, tuple(st.fields)),
        None if m is None else (m.common, m.key, m.elem),
        w.gob_encoder_t,
        w.binary_marshaler_t,
        w.text_marshaler_t,
    )


def wire_refs(w: WireType) -> list[int]:
    """The type ids a definition refers to."""
    refs: list[int] = []
    if w.array_t is not None:
        refs.append(w.array_t.elem)
    if w.slice_t is not None:
        refs.append(w.slice_t.elem)
    if w.struct_t is not None:
        refs.extend(f.id for f in w.struct_t.fields)
    if w.map_t is not None:
        refs += (w.map_t.key, w.map_t.elem)
    return refs


# ---- gob's own types, described with the same descriptors -----------------------------------

_TYPE_ID_T: Final = GoInt(32, "typeId", "gob")
_COMMON_T: Final = GoStruct(
    "CommonType",
    "gob",
    (GoField("Name", GoString(), "name"), GoField("Id", _TYPE_ID_T, "id")),
    CommonType,
)
_ARRAY_T: Final = GoStruct(
    "arrayType",
    "gob",
    (
        GoField("CommonType", _COMMON_T, "common"),
        GoField("Elem", _TYPE_ID_T, "elem"),
        GoField("Len", GoInt(), "len"),
    ),
    ArrayType,
)
_SLICE_T: Final = GoStruct(
    "sliceType",
    "gob",
    (GoField("CommonType", _COMMON_T, "common"), GoField("Elem", _TYPE_ID_T, "elem")),
    SliceType,
)
_FIELD_T: Final = GoStruct(
    "fieldType",
    "gob",
    (GoField("Name", GoString(), "name"), GoField("Id", _TYPE_ID_T, "id")),
    FieldType,
)
_STRUCT_T: Final = GoStruct(
    "structType",
    "gob",
    (GoField("CommonType", _COMMON_T, "common"), GoField("Field", GoSlice(_FIELD_T), "fields")),
    StructType,
)
_MAP_T: Final = GoStruct(
    "mapType",
    "gob",
    (
        GoField("CommonType", _COMMON_T, "common"),
        GoField("Key", _TYPE_ID_T, "key"),
        GoField("Elem", _TYPE_ID_T, "elem"),
    ),
    MapType,
)
_GOB_ENCODER_T: Final = GoStruct(
    "gobEncoderType", "gob", (GoField("CommonType", _COMMON_T, "common"),), GobEncoderType
)
WIRE_T: Final = GoStruct(
    "wireType",
    "gob",
    (
        GoField("ArrayT", GoPtr(_ARRAY_T), "array_t"),
        GoField("SliceT", GoPtr(_SLICE_T), "slice_t"),
        GoField("StructT", GoPtr(_STRUCT_T), "struct_t"),
        GoField("MapT", GoPtr(_MAP_T), "map_t"),
        GoField("GobEncoderT", GoPtr(_GOB_ENCODER_T), "gob_encoder_t"),
        GoField("BinaryMarshalerT", GoPtr(_GOB_ENCODER_T), "binary_marshaler_t"),
        GoField("TextMarshalerT", GoPtr(_GOB_ENCODER_T), "text_marshaler_t"),
    ),
    WireType,
)
"""Go's ``wireType`` struct: what a type definition on the wire decodes into (id 16)."""
