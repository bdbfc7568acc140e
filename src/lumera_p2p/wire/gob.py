"""Go ``encoding/gob`` for Python, byte-exact with Go's encoder and verdict-exact with its decoder.

The Lumera supernode frames every Kademlia message as one gob stream, so this module follows Go's
``encoding/gob`` (``type.go``, ``encoder.go``, ``encode.go``, ``decoder.go``, ``decode.go``) step by
step rather than the gob *format* description: the quirks a peer can observe (type-id allocation
order, the interface value split across gob messages, which malformed inputs Go tolerates) all
live in the algorithm, not in the format.

Go types are described once with small immutable descriptors (:class:`GoStruct`, :class:`GoSlice`,
:class:`GoMap`, :class:`GoPtr`, :class:`GoInterface` and the primitives). Python values map as:

====================  ================================================================
Go                    Python
====================  ================================================================
bool / intN / uintN   ``bool`` / ``int`` (range-checked like Go's decoder)
float32 / float64     ``float``
string                ``str`` (bytes that are not UTF-8 round-trip via surrogateescape)
[]byte                ``bytes`` (nil and empty are the same, as on the gob wire)
*T                    the value of T, or ``None``
[]T / [N]T            ``list``
map[K]V               ``dict`` or ``None`` (nil and empty maps differ on the wire)
struct                an instance of the descriptor's ``factory`` (a dataclass)
interface{}           an instance of a registered struct class, or ``None``
====================  ================================================================

Decoding never trusts a count: every length is checked against the bytes that remain before
anything is allocated, value and type nesting are capped (Go itself recurses without limit and
can be killed by a deep frame), and every failure is a :class:`~lumera_p2p.errors.ProtocolError`.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from lumera_p2p.errors import LumeraP2PError, ProtocolError

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "FIRST_USER_ID",
    "ArrayType",
    "CommonType",
    "FieldType",
    "GoArray",
    "GoBool",
    "GoBytes",
    "GoField",
    "GoFloat",
    "GoInt",
    "GoInterface",
    "GoMap",
    "GoPtr",
    "GoSlice",
    "GoString",
    "GoStruct",
    "GoType",
    "GoUint",
    "GobDecodeCache",
    "GobDecoder",
    "GobEncodeError",
    "GobEncoder",
    "GobEncoderType",
    "InterfaceRegistry",
    "MapType",
    "SliceType",
    "StructType",
    "TypeTable",
    "WireType",
    "gob_decode",
    "gob_encode",
]

FIRST_USER_ID: Final = 64
"""First type id Go hands to user types (go1.2x+; go1.19 started at 65)."""

DEFAULT_MAX_DEPTH: Final = 100
"""Nesting cap for values and for type definitions. Lumera messages nest 7 deep."""

_TOO_BIG: Final = 1 << 33  # Go's tooBig on 64-bit platforms: the largest gob message it reads.
_INT64_SIGN: Final = 1 << 63
_BIG_CHUNK: Final = 2048  # []byte at least this long is kept by reference, not copied.
_F64: Final = struct.Struct(">d")
_F32: Final = struct.Struct(">f")
_MAX_F32: Final = 3.4028234663852886e38


class GobEncodeError(LumeraP2PError, ValueError):
    """A value cannot be encoded (out of range for its Go type, unregistered, nil element...)."""


# --------------------------------------------------------------------------------------------
# Go type descriptors
# --------------------------------------------------------------------------------------------


class GoType:
    """A Go type. ``go_name`` is reflect's ``Name()``, ``go_string`` its ``String()``."""

    __slots__ = ()

    def go_name(self) -> str:
        """The type's own name ("" for unnamed composite types)."""
        return ""

    def go_string(self) -> str:
        """The type as Go prints it (``[]*kademlia.Node``)."""
        raise NotImplementedError


def _qualified(package: str, name: str) -> str:
    return f"{package}.{name}" if package else name


@dataclass(frozen=True, slots=True)
class GoBool(GoType):
    """Go ``bool``."""

    name: str = "bool"
    package: str = ""

    def go_name(self) -> str:
        return self.name

    def go_string(self) -> str:
        return _qualified(self.package, self.name)


@dataclass(frozen=True, slots=True)
class GoInt(GoType):
    """Go ``int``/``intN``; ``bits`` sets the range the decoder accepts."""

    bits: int = 64
    name: str = "int"
    package: str = ""

    def go_name(self) -> str:
        return self.name

    def go_string(self) -> str:
        return _qualified(self.package, self.name)


@dataclass(frozen=True, slots=True)
class GoUint(GoType):
    """Go ``uint``/``uintN``; ``bits`` sets the range the decoder accepts."""

    bits: int = 64
    name: str = "uint"
    package: str = ""

    def go_name(self) -> str:
        return self.name

    def go_string(self) -> str:
        return _qualified(self.package, self.name)


@dataclass(frozen=True, slots=True)
class GoFloat(GoType):
    """Go ``float64`` (or ``float32`` with ``bits=32``)."""

    bits: int = 64
    name: str = "float64"
    package: str = ""

    def go_name(self) -> str:
        return self.name

    def go_string(self) -> str:
        return _qualified(self.package, self.name)


@dataclass(frozen=True, slots=True)
class GoString(GoType):
    """Go ``string``."""

    name: str = "string"
    package: str = ""

    def go_name(self) -> str:
        return self.name

    def go_string(self) -> str:
        return _qualified(self.package, self.name)


@dataclass(frozen=True, slots=True)
class GoBytes(GoType):
    """Go ``[]byte``: gob's builtin ``bytes`` type, not a slice of uints."""

    name: str = ""
    package: str = ""

    def go_name(self) -> str:
        return self.name

    def go_string(self) -> str:
        return _qualified(self.package, self.name) if self.name else "[]uint8"


@dataclass(frozen=True, slots=True)
class GoInterface(GoType):
    """Go ``interface{}``: values are registered struct types (see :class:`InterfaceRegistry`)."""

    def go_string(self) -> str:
        return "interface {}"


@dataclass(frozen=True, slots=True)
class GoPtr(GoType):
    """Go ``*T``. gob flattens pointers: only the pointed-to value travels."""

    elem: GoType

    def go_string(self) -> str:
        return "*" + self.elem.go_string()


@dataclass(frozen=True, slots=True)
class GoSlice(GoType):
    """Go ``[]T`` (use :class:`GoBytes` for ``[]byte``)."""

    elem: GoType
    name: str = ""
    package: str = ""

    def go_name(self) -> str:
        return self.name

    def go_string(self) -> str:
        return _qualified(self.package, self.name) if self.name else "[]" + self.elem.go_string()


@dataclass(frozen=True, slots=True)
class GoArray(GoType):
    """Go ``[N]T``; values are lists of exactly ``length`` items."""

    elem: GoType
    length: int
    name: str = ""
    package: str = ""

    def go_name(self) -> str:
        return self.name

    def go_string(self) -> str:
        if self.name:
            return _qualified(self.package, self.name)
        return f"[{self.length}]{self.elem.go_string()}"


_MAP_KEY_TYPES = (GoBool, GoInt, GoUint, GoFloat, GoString)


@dataclass(frozen=True, slots=True)
class GoMap(GoType):
    """Go ``map[K]V``; keys are limited to hashable primitives."""

    key: GoType
    elem: GoType
    name: str = ""
    package: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.key, _MAP_KEY_TYPES):
            raise TypeError(f"unsupported map key type {self.key.go_string()}")

    def go_name(self) -> str:
        return self.name

    def go_string(self) -> str:
        if self.name:
            return _qualified(self.package, self.name)
        return f"map[{self.key.go_string()}]{self.elem.go_string()}"


@dataclass(frozen=True, slots=True)
class GoField:
    """One exported (sent) struct field: its Go name, Go type and Python attribute."""

    name: str
    type: GoType
    attr: str


class GoStruct(GoType):
    """A named Go struct; compared by identity, like reflect types.

    ``factory`` builds the Python value from keyword arguments named by each field's ``attr``
    (fields that were not on the wire are left to the factory's defaults, i.e. Go's zero value).
    ``fields`` may be given later with :meth:`define`, for recursive types.
    """

    __slots__ = ("_by_name", "_fields", "_plan", "factory", "name", "package")

    def __init__(
        self,
        name: str,
        package: str,
        fields: Sequence[GoField] | None,
        factory: Callable[..., Any],
    ) -> None:
        self.name = name
        self.package = package
        self.factory = factory
        self._fields: tuple[GoField, ...] = ()
        self._by_name: dict[str, GoField] = {}
        self._plan: tuple[tuple[int, str, _Writer, int], ...] = ()
        if fields is not None:
            self.define(fields)

    def define(self, fields: Sequence[GoField]) -> None:
        """Set the fields once (separately from construction only for recursive types)."""
        if self._fields:
            raise TypeError(f"struct {self.name} is already defined")
        if len(fields) >= 0x80:
            raise TypeError("structs of 128 fields or more are not supported")
        self._fields = tuple(fields)
        self._by_name = {f.name: f for f in self._fields}
        self._plan = tuple(
            (i, f.attr, _writer_for(f.type), _zero_kind(f.type)) for i, f in enumerate(self._fields)
        )

    @property
    def fields(self) -> tuple[GoField, ...]:
        """The sent fields in declaration order (their index is the gob field number)."""
        return self._fields

    def field(self, name: str) -> GoField | None:
        """The field called ``name``, as Go's ``FieldByName``."""
        return self._by_name.get(name)

    def go_name(self) -> str:
        return self.name

    def go_string(self) -> str:
        return _qualified(self.package, self.name)

    def __repr__(self) -> str:
        return f"GoStruct({self.go_string()!r})"


def _base(t: GoType) -> GoType:
    """Go's ``userType(t).base``: the type with every pointer removed."""
    while isinstance(t, GoPtr):
        t = t.elem
    return t


# Builtin gob type ids (type.go bootstrapType order).
_T_BOOL: Final = 1
_T_INT: Final = 2
_T_UINT: Final = 3
_T_FLOAT: Final = 4
_T_BYTES: Final = 5
_T_STRING: Final = 6
_T_COMPLEX: Final = 7
_T_INTERFACE: Final = 8
_T_WIRE_TYPE: Final = 16

_BUILTIN_IDS: Final[dict[type[GoType], int]] = {
    GoBool: _T_BOOL,
    GoInt: _T_INT,
    GoUint: _T_UINT,
    GoFloat: _T_FLOAT,
    GoBytes: _T_BYTES,
    GoString: _T_STRING,
    GoInterface: _T_INTERFACE,
}


# --------------------------------------------------------------------------------------------
# The wire description of types (type.go: wireType and friends)
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Encoding: buffers, writers, type ids
# --------------------------------------------------------------------------------------------


class _Buf:
    """An output buffer that keeps large ``bytes`` by reference, so payloads are copied once."""

    __slots__ = ("chunks", "cur", "flushed")

    def __init__(self) -> None:
        self.chunks: list[bytes | bytearray] = []
        self.cur = bytearray()
        self.flushed = 0

    def size(self) -> int:
        return self.flushed + len(self.cur)

    def uint(self, x: int) -> None:
        if x < 0x80:
            self.cur.append(x)
            return
        n = (x.bit_length() + 7) >> 3
        if n > 8:
            raise GobEncodeError(f"gob: unsigned integer {x} does not fit in 64 bits")
        cur = self.cur
        cur.append(256 - n)
        cur += x.to_bytes(n, "big")

    def int(self, i: int) -> None:
        self.uint(i << 1 if i >= 0 else (~i << 1) | 1)

    def raw(self, data: bytes) -> None:
        if len(data) >= _BIG_CHUNK and isinstance(data, bytes):
            if self.cur:
                self.chunks.append(self.cur)
                self.flushed += len(self.cur)
                self.cur = bytearray()
            self.chunks.append(data)
            self.flushed += len(data)
        else:
            self.cur += data

    def take(self, other: _Buf) -> None:
        """Append ``other``'s contents and empty it (Go's writeMessage Reset)."""
        if other.chunks:
            if self.cur:
                self.chunks.append(self.cur)
                self.flushed += len(self.cur)
            self.chunks.extend(other.chunks)
            self.flushed += other.flushed
            self.cur = other.cur
            other.chunks = []
            other.flushed = 0
            other.cur = bytearray()
        else:
            self.cur += other.cur
            other.cur.clear()

    def parts(self) -> list[bytes | bytearray]:
        return [*self.chunks, self.cur] if self.cur else list(self.chunks)

    def getvalue(self) -> bytes:
        return b"".join(self.parts())


_Writer = Callable[["GobEncoder | None", _Buf, Any], None]


def _w_bool(enc: GobEncoder | None, b: _Buf, v: Any) -> None:
    b.cur.append(1 if v else 0)


def _w_int64(enc: GobEncoder | None, b: _Buf, v: Any) -> None:
    if not -_INT64_SIGN <= v < _INT64_SIGN:
        raise GobEncodeError(f"gob: {v} out of range for a 64-bit int")
    b.uint(v << 1 if v >= 0 else (~v << 1) | 1)


def _w_uint64(enc: GobEncoder | None, b: _Buf, v: Any) -> None:
    if not 0 <= v < 1 << 64:
        raise GobEncodeError(f"gob: {v} out of range for a 64-bit uint")
    b.uint(v)


def _w_string(enc: GobEncoder | None, b: _Buf, v: Any) -> None:
    data = v.encode("utf-8", "surrogateescape")
    if len(data) < 0x80:
        cur = b.cur
        cur.append(len(data))
        cur += data
    else:
        b.uint(len(data))
        b.raw(data)


def _w_bytes(enc: GobEncoder | None, b: _Buf, v: Any) -> None:
    if len(v) < 0x80:
        cur = b.cur
        cur.append(len(v))
        cur += v
    else:
        b.uint(len(v))
        b.raw(v)


def _w_float64(enc: GobEncoder | None, b: _Buf, v: Any) -> None:
    # Go sends float bits byte-reversed so that small integers and halves encode short.
    b.uint(int.from_bytes(_F64.pack(v), "little"))


def _w_float32(enc: GobEncoder | None, b: _Buf, v: Any) -> None:
    try:
        narrowed = _F32.unpack(_F32.pack(v))[0]
    except OverflowError:
        raise GobEncodeError(f"gob: {v} out of range for float32") from None
    b.uint(int.from_bytes(_F64.pack(narrowed), "little"))


def _w_interface(enc: GobEncoder | None, b: _Buf, v: Any) -> None:
    if v is None:
        b.cur.append(0)
        return
    if enc is None:
        raise GobEncodeError("gob: interface value outside an encoder")
    enc._encode_interface(b, v)


def _make_w_int(bits: int) -> _Writer:
    lo, hi = -(1 << (bits - 1)), 1 << (bits - 1)

    def w(enc: GobEncoder | None, b: _Buf, v: Any) -> None:
        if not lo <= v < hi:
            raise GobEncodeError(f"gob: {v} out of range for int{bits}")
        b.uint(v << 1 if v >= 0 else (~v << 1) | 1)

    return w


def _make_w_uint(bits: int) -> _Writer:
    hi = 1 << bits

    def w(enc: GobEncoder | None, b: _Buf, v: Any) -> None:
        if not 0 <= v < hi:
            raise GobEncodeError(f"gob: {v} out of range for uint{bits}")
        b.uint(v)

    return w


def _writer_for(t: GoType) -> _Writer:
    """The function that writes a value of ``t`` unconditionally (as an element is written)."""
    if isinstance(t, GoBool):
        return _w_bool
    if isinstance(t, GoInt):
        return _w_int64 if t.bits == 64 else _make_w_int(t.bits)
    if isinstance(t, GoUint):
        return _w_uint64 if t.bits == 64 else _make_w_uint(t.bits)
    if isinstance(t, GoFloat):
        return _w_float64 if t.bits == 64 else _w_float32
    if isinstance(t, GoString):
        return _w_string
    if isinstance(t, GoBytes):
        return _w_bytes
    if isinstance(t, GoInterface):
        return _w_interface
    if isinstance(t, GoPtr):
        inner = _writer_for(t.elem)

        def w_ptr(enc: GobEncoder | None, b: _Buf, v: Any) -> None:
            if v is None:
                raise GobEncodeError("gob: encodeArray: nil element")
            inner(enc, b, v)

        return w_ptr
    if isinstance(t, GoSlice | GoArray):
        ew = _writer_for(t.elem)
        length = t.length if isinstance(t, GoArray) else -1

        def w_seq(enc: GobEncoder | None, b: _Buf, v: Any) -> None:
            if length >= 0 and len(v) != length:
                raise GobEncodeError(f"gob: array of length {len(v)} for [{length}]")
            b.uint(len(v))
            for item in v:
                ew(enc, b, item)

        return w_seq
    if isinstance(t, GoMap):
        kw, vw = _writer_for(t.key), _writer_for(t.elem)

        def w_map(enc: GobEncoder | None, b: _Buf, v: Any) -> None:
            if v is None:  # a nil map element is sent as an empty map
                b.cur.append(0)
                return
            b.uint(len(v))
            for key, val in v.items():
                kw(enc, b, key)
                vw(enc, b, val)

        return w_map
    if isinstance(t, GoStruct):
        s = t

        def w_struct(enc: GobEncoder | None, b: _Buf, v: Any) -> None:
            _encode_struct(enc, b, v, s)

        return w_struct
    raise TypeError(f"gob cannot encode {t!r}")


# How a struct field decides it is zero and is left out: 0 never, 1 falsy, 2 None.
_ZK_NEVER, _ZK_FALSY, _ZK_NONE = 0, 1, 2


def _zero_kind(t: GoType) -> int:
    if isinstance(t, GoPtr):
        inner = _zero_kind(_base(t))
        return _ZK_FALSY if inner == _ZK_FALSY else _ZK_NONE
    if isinstance(t, GoStruct | GoArray):
        return _ZK_NEVER  # Go sends struct and array fields even when zero
    if isinstance(t, GoMap | GoInterface):
        return _ZK_NONE  # an empty non-nil map is sent
    return _ZK_FALSY


def _encode_struct(enc: GobEncoder | None, b: _Buf, v: Any, s: GoStruct) -> None:
    """encodeStruct: (delta, value)* for the non-zero fields, then 0."""
    last = -1
    for idx, attr, writer, zk in s._plan:
        x = getattr(v, attr)
        if zk == _ZK_FALSY:
            if not x:
                continue
        elif zk == _ZK_NONE and x is None:
            continue
        b.cur.append(idx - last)  # structs never have 128 fields here; see GoStruct.define
        last = idx
        writer(enc, b, x)
    b.cur.append(0)


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


_BUILTIN_GOBT: Final = {tid: _GobT("builtin", "", tid) for tid in range(1, 9)}


@dataclass(frozen=True, slots=True)
class _TypeInfo:
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
        self._infos: dict[GoType, _TypeInfo] = {}

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
        return self._info(t).id

    def wire_type(self, t: GoType) -> WireType | None:
        """The definition Go sends for ``t`` (``None`` for builtin types)."""
        return self._info(t).wire

    def prepare(self, t: GoType) -> None:
        """Number ``t`` (as :meth:`type_id`) and encode the definitions of it and all its parts
        now, so that encoders using this table or its copies need not."""
        self._info(t)
        for rt in list(self._types):
            self._info(rt)

    def _info(self, t: GoType) -> _TypeInfo:
        rt = _base(t)
        info = self._infos.get(rt)
        if info is None:
            gt = self._base_type(rt.go_name(), rt)
            wire = gt.wire()
            wire_bytes = b""
            if wire is not None:
                out = _Buf()
                _encode_struct(None, out, wire, _WIRE_T)
                wire_bytes = out.getvalue()
            info = _TypeInfo(gt.id, wire, wire_bytes)
            self._infos[rt] = info
        return info

    def _set_id(self, gt: _GobT) -> None:
        if gt.id == 0:
            gt.id = self._next_id
            self._next_id += 1

    def _base_type(self, name: str, t: GoType) -> _GobT:
        rt = _base(t)
        gt = self._types.get(rt)
        if gt is None:
            gt = self._new_type(name, rt)
            self._types[rt] = gt
        return gt

    def _new_type(self, name: str, rt: GoType) -> _GobT:
        # newTypeObject: a struct gets its id before its fields, a slice/array/map after its
        # element types. That order is what makes ids "not increasing in order of appearance".
        builtin = _BUILTIN_IDS.get(type(rt))
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
                fb = _base(f.type)
                tname = fb.go_name() or fb.go_string()
                gt = self._base_type(tname, f.type)
                self._set_id(gt)
                s.fields.append((f.name, gt.id))
            return s
        raise TypeError(f"gob cannot describe {rt!r}")


# --------------------------------------------------------------------------------------------
# Interface registry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Registered:
    name: bytes
    type: GoType
    struct: GoStruct


class InterfaceRegistry:
    """Concrete types that may travel in an ``interface{}``, under their gob names.

    Immutable: build it once with every ``(name, type)`` pair, as Go's ``gob.Register`` calls in
    an ``init``. The type is the registered Go type (``GoPtr(struct)`` for ``Register(&T{})``);
    its struct's ``factory`` must be a class, which is how an outgoing value finds its name.
    """

    __slots__ = ("_by_class", "_by_name")

    def __init__(self, entries: Iterable[tuple[str, GoType]] = ()) -> None:
        self._by_name: dict[bytes, GoType] = {}
        self._by_class: dict[type, _Registered] = {}
        for name, t in entries:
            base = _base(t)
            if not name:
                raise ValueError("attempt to register empty name")
            if not isinstance(base, GoStruct) or not isinstance(base.factory, type):
                raise TypeError(f"{name}: only struct types with a class factory can be registered")
            key = name.encode()
            if key in self._by_name or base.factory in self._by_class:
                raise ValueError(f"gob: registering duplicate name or type for {name!r}")
            self._by_name[key] = t
            self._by_class[base.factory] = _Registered(key, t, base)

    def names(self) -> list[str]:
        """The registered names, in registration order."""
        return [n.decode() for n in self._by_name]

    def type_for_name(self, name: bytes) -> GoType | None:
        """The registered type called ``name``."""
        return self._by_name.get(name)

    def name_for(self, value: object) -> str:
        """The name an outgoing ``value`` is sent under."""
        return self._entry_for(value).name.decode()

    def _entry_for(self, value: object) -> _Registered:
        entry = self._by_class.get(type(value))
        if entry is None:
            raise GobEncodeError(f"type not registered for interface: {type(value).__qualname__}")
        return entry


_EMPTY_REGISTRY: Final = InterfaceRegistry()


# --------------------------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------------------------


class GobEncoder:
    """One Go ``gob.Encoder``: a stream that sends each type definition once.

    The Lumera protocol uses a fresh encoder per frame. ``types`` is the process-wide id table
    (see :class:`TypeTable`); a new one is used when it is omitted.
    """

    __slots__ = ("_registry", "_sent", "_types", "_writers")

    def __init__(
        self, types: TypeTable | None = None, registry: InterfaceRegistry = _EMPTY_REGISTRY
    ) -> None:
        self._types = types if types is not None else TypeTable()
        self._registry = registry
        self._sent: dict[GoType, int] = {}
        self._writers: list[_Buf] = []

    def encode(self, value: Any, go_type: GoType) -> bytes:
        """Encode one value (Go's ``Encode``) and return the gob messages written for it."""
        return b"".join(self.encode_parts(value, go_type))

    def encode_parts(self, value: Any, go_type: GoType) -> list[bytes | bytearray]:
        """Like :meth:`encode`, as a list of chunks to join (large ``[]byte`` are not copied)."""
        if value is None and isinstance(go_type, GoPtr):
            raise GobEncodeError(f"gob: cannot encode nil pointer of type {go_type.go_string()}")
        out = _Buf()
        self._writers = [out]
        b = _Buf()
        self._send_type_descriptor(out, b, go_type)
        self._send_type_id(b, go_type)
        self._encode(b, value, go_type)
        self._write_message(self._writers[-1], b)
        return out.parts()

    def _write_message(self, w: _Buf, b: _Buf) -> None:
        n = b.size()
        if n >= _TOO_BIG:
            raise GobEncodeError("gob: encoder: message too big")
        w.uint(n)
        w.take(b)

    def _send_type_descriptor(self, w: _Buf, b: _Buf, t: GoType) -> None:
        rt = _base(t)
        if rt not in self._sent and not self._send_type(w, b, rt):
            self._sent[rt] = self._types.type_id(rt)

    def _send_type(self, w: _Buf, b: _Buf, t: GoType) -> bool:
        base = _base(t)
        if isinstance(base, GoSlice | GoArray | GoMap | GoStruct):
            return self._send_actual_type(w, b, base)
        return False  # builtin types and interfaces are never described

    def _send_actual_type(self, w: _Buf, b: _Buf, actual: GoType) -> bool:
        if actual in self._sent:
            return False
        info = self._types._info(actual)
        b.int(-info.id)
        b.raw(info.wire_bytes)
        # In an interface, ``b`` holds the partly encoded outer value: Go flushes it together
        # with this definition, which is how a value comes to be split over gob messages.
        self._write_message(w, b)
        self._sent[actual] = info.id
        if isinstance(actual, GoStruct):
            for f in actual.fields:
                self._send_type(w, b, f.type)
        elif isinstance(actual, GoSlice | GoArray):
            self._send_type(w, b, actual.elem)
        elif isinstance(actual, GoMap):
            self._send_type(w, b, actual.key)
            self._send_type(w, b, actual.elem)
        return True

    def _send_type_id(self, b: _Buf, t: GoType) -> None:
        b.int(self._sent[_base(t)])

    def _encode(self, b: _Buf, value: Any, t: GoType) -> None:
        base = _base(t)
        if isinstance(base, GoStruct):
            _encode_struct(self, b, value, base)
        else:
            b.cur.append(0)  # a non-struct value travels as a singleton field 0
            _writer_for(base)(self, b, value)

    def _encode_interface(self, b: _Buf, v: Any) -> None:
        entry = self._registry._entry_for(v)
        b.uint(len(entry.name))
        b.raw(entry.name)
        self._send_type_descriptor(self._writers[-1], b, entry.type)
        self._send_type_id(b, entry.type)
        # Nested type definitions go to ``b``, ahead of the value's byte count.
        self._writers.append(b)
        data = _Buf()
        self._encode(data, v, entry.type)
        self._writers.pop()
        self._write_message(b, data)


def gob_encode(
    value: Any,
    go_type: GoType,
    *,
    types: TypeTable | None = None,
    registry: InterfaceRegistry = _EMPTY_REGISTRY,
) -> bytes:
    """Encode ``value`` as a complete gob stream from a fresh encoder."""
    return GobEncoder(types, registry).encode(value, go_type)


# --------------------------------------------------------------------------------------------
# Decoder
# --------------------------------------------------------------------------------------------

_Op = Callable[["GobDecoder"], Any]


class _OpRef:
    """A late-bound op, so recursive wire types (``74 = []74``) can refer to themselves."""

    __slots__ = ("op",)

    def __init__(self, op: _Op | None = None) -> None:
        self.op = op

    def __call__(self, d: GobDecoder) -> Any:
        assert self.op is not None
        return self.op(d)


class _StructEngine:
    __slots__ = ("factory", "instrs", "num_instr")

    def __init__(
        self, instrs: list[tuple[_Op, str | None]], num_instr: int, factory: Callable[..., Any]
    ) -> None:
        self.instrs = instrs
        self.num_instr = num_instr
        self.factory = factory


class _SingleEngine:
    __slots__ = ("op",)

    def __init__(self, op: _Op) -> None:
        self.op = op


class _EngineRef:
    """Set after compilation; ops read it when they run, which closes recursive structs."""

    __slots__ = ("engine",)

    def __init__(self) -> None:
        self.engine: _StructEngine | _SingleEngine | None = None


def _err(text: str) -> ProtocolError:
    return ProtocolError(text)


def _goq(name: bytes) -> str:
    return json.dumps(name.decode("utf-8", "replace"))


def _too_deep() -> ProtocolError:
    return ProtocolError("gob: nesting too deep")


_ERR_RANGE: Final = "gob: bad data: field numbers out of bounds"
_ERR_BAD_UINT: Final = "gob: encoded unsigned integer out of range"
_ERR_BAD_TYPE: Final = "gob: unknown type id or corrupted data"


def _int32(x: int) -> int:
    """Go's conversion of an int64 to the int32 ``typeId``."""
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _to_int(u: int) -> int:
    return ~(u >> 1) if u & 1 else u >> 1


# ---- primitive ops --------------------------------------------------------------------------


def _op_bool(d: GobDecoder) -> bool:
    return d._read_uint() != 0


def _op_int64(d: GobDecoder) -> int:
    u = d._read_uint()
    return ~(u >> 1) if u & 1 else u >> 1


def _op_uint64(d: GobDecoder) -> int:
    return d._read_uint()


def _op_float64(d: GobDecoder) -> float:
    return float(_F64.unpack(d._read_uint().to_bytes(8, "little"))[0])


def _op_bytes(d: GobDecoder) -> bytes | memoryview:
    pos = d.pos
    n = d.data[pos] if pos < d.end else 0x80
    if n < 0x80:
        pos += 1
    else:
        n = d._read_uint()
        pos = d.pos
    if n > d.end - pos:
        raise _err("gob: bad []uint8 slice length: 0")
    d.pos = pos + n
    chunk = d.data[pos : pos + n]
    if n < d.views_from:
        return bytes(chunk)  # a short field from a view: bytes, as everywhere else
    return chunk


def _op_string(d: GobDecoder) -> str:
    pos = d.pos
    n = d.data[pos] if pos < d.end else 0x80
    if n < 0x80:
        pos += 1
    else:
        n = d._read_uint()
        pos = d.pos
    if n > d.end - pos:
        raise _err("gob: bad string slice length: 0")
    d.pos = pos + n
    return str(d.data[pos : pos + n], "utf-8", "surrogateescape")


def _make_op_int(bits: int, name: str) -> _Op:
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1

    def op(d: GobDecoder) -> int:
        u = d._read_uint()
        v = ~(u >> 1) if u & 1 else u >> 1
        if not lo <= v <= hi:
            raise _err(f'value for "{name}" out of range')
        return v

    return op


def _make_op_uint(bits: int, name: str) -> _Op:
    hi = (1 << bits) - 1

    def op(d: GobDecoder) -> int:
        v = d._read_uint()
        if v > hi:
            raise _err(f'value for "{name}" out of range')
        return v

    return op


def _make_op_float32(name: str) -> _Op:
    def op(d: GobDecoder) -> float:
        v = float(_F64.unpack(d._read_uint().to_bytes(8, "little"))[0])
        if abs(v) > _MAX_F32 and v not in (float("inf"), float("-inf")):
            raise _err(f'value for "{name}" out of range')
        return float(_F32.unpack(_F32.pack(v))[0])

    return op


def _primitive_op(t: GoType, name: str) -> _Op | None:
    if isinstance(t, GoBool):
        return _op_bool
    if isinstance(t, GoInt):
        return _op_int64 if t.bits == 64 else _make_op_int(t.bits, name)
    if isinstance(t, GoUint):
        return _op_uint64 if t.bits == 64 else _make_op_uint(t.bits, name)
    if isinstance(t, GoFloat):
        return _op_float64 if t.bits == 64 else _make_op_float32(name)
    if isinstance(t, GoString):
        return _op_string
    return None


# ---- composite ops --------------------------------------------------------------------------


def _decode_struct(d: GobDecoder, eng: _StructEngine) -> Any:
    """decodeStruct: fields by delta; a message that ends early simply ends the struct."""
    depth = d.depth + 1
    if depth > d.max_depth:
        raise _too_deep()
    d.depth = depth
    instrs = eng.instrs
    n = len(instrs)
    data = d.data
    kw: dict[str, Any] = {}
    fieldnum = -1
    while d.pos < d.end:
        # Deltas are almost always one byte: read those inline (the hot path of every struct).
        pos = d.pos
        delta = data[pos]
        if delta < 0x80:
            d.pos = pos + 1
        else:
            delta = d._read_uint()
            if delta >= _INT64_SIGN:
                raise _err("gob: decode: corrupted data: negative delta")
        if delta == 0:
            break
        fieldnum += delta
        if fieldnum >= n:
            raise _err(_ERR_RANGE)
        op, attr = instrs[fieldnum]
        if attr is None:
            op(d)
        else:
            kw[attr] = op(d)
    d.depth = depth - 1
    return eng.factory(**kw)


def _ignore_struct(d: GobDecoder, eng: _StructEngine) -> None:
    depth = d.depth + 1
    if depth > d.max_depth:
        raise _too_deep()
    d.depth = depth
    instrs = eng.instrs
    n = len(instrs)
    fieldnum = -1
    while d.pos < d.end:
        delta = d._read_uint()
        if delta >= _INT64_SIGN:
            raise _err("gob: ignore decode: corrupted data: negative delta")
        if delta == 0:
            break
        fieldnum += delta
        if fieldnum >= n:
            raise _err(_ERR_RANGE)
        instrs[fieldnum][0](d)
    d.depth = depth - 1


def _make_struct_op(ref: _EngineRef) -> _Op:
    def op(d: GobDecoder) -> Any:
        eng = ref.engine
        assert isinstance(eng, _StructEngine)
        return _decode_struct(d, eng)

    return op


def _check_elements(d: GobDecoder, n: int) -> None:
    # Every element takes at least one byte of the stream (Go checks per element that the
    # message is not exhausted), so a count above the bytes left can never succeed: refuse it
    # before looping or allocating.
    if n > d.stop - d.pos:
        raise _err(f"gob: decoding array or slice: length exceeds input size ({n} elements)")


def _make_slice_op(elem: _Op) -> _Op:
    def op(d: GobDecoder) -> list[Any]:
        n = d._read_uint()
        if n >= _INT64_SIGN:
            raise _err(f"gob: slice too big: {n} elements")
        _check_elements(d, n)
        depth = d.depth + 1
        if depth > d.max_depth:
            raise _too_deep()
        d.depth = depth
        out: list[Any] = []
        append = out.append
        for _ in range(n):
            if d.pos >= d.end:
                raise _err(
                    f"gob: decoding array or slice: length exceeds input size ({n} elements)"
                )
            append(elem(d))
        d.depth = depth - 1
        return out

    return op


def _make_array_op(elem: _Op, length: int) -> _Op:
    def op(d: GobDecoder) -> list[Any]:
        if d._read_uint() != length:
            raise _err("gob: length mismatch in decodeArray")
        _check_elements(d, length)
        depth = d.depth + 1
        if depth > d.max_depth:
            raise _too_deep()
        d.depth = depth
        out: list[Any] = []
        for _ in range(length):
            if d.pos >= d.end:
                raise _err(
                    f"gob: decoding array or slice: length exceeds input size ({length} elements)"
                )
            out.append(elem(d))
        d.depth = depth - 1
        return out

    return op


def _map_count(u: int) -> int:
    # Go converts the count to int: a count >= 2^63 turns negative and the loop never runs.
    return u if u < _INT64_SIGN else 0


def _make_map_op(key: _Op, elem: _Op) -> _Op:
    def op(d: GobDecoder) -> dict[Any, Any]:
        n = _map_count(d._read_uint())
        depth = d.depth + 1
        if depth > d.max_depth:
            raise _too_deep()
        d.depth = depth
        out: dict[Any, Any] = {}
        i = 0
        while i < n:
            start = d.pos
            k = key(d)
            out[k] = elem(d)
            i += 1
            if d.pos == start and start >= d.end:
                # Nothing was read and nothing is left: Go would repeat this no-op n times.
                break
        d.depth = depth - 1
        return out

    return op


def _op_interface(d: GobDecoder) -> Any:
    """decodeInterface: name, (inline type definitions), concrete id, byte count, value."""
    nr = d._read_uint()
    if nr > 1 << 31:
        raise _err(f"gob: invalid type name length {nr}")
    pos = d.pos
    if nr > d.end - pos:
        raise _err(f"gob: invalid type name length {nr}: exceeds input size")
    name = bytes(d.data[pos : pos + nr])  # no copy of a bytes slice; a view's is 1 KiB at most
    d.pos = pos + nr
    if not nr:
        return None
    if nr > 1024:
        raise _err(f"gob: name too long ({nr} bytes): {_goq(name[:20])}...")
    t = d.registry.type_for_name(name)
    if t is None:
        raise _err(f"gob: name not registered for interface: {_goq(name)}")
    depth = d.depth + 1
    if depth > d.max_depth:
        raise _too_deep()
    d.depth = depth
    concrete = d._type_sequence(True)
    if concrete < 0:
        raise d._error()
    d._read_uint()  # the value's byte count; Go reads it and ignores it
    v = d._decode_value(concrete, t)
    if d.err is not None:
        raise d.err
    d.depth = depth - 1
    return v


# ---- ignore ops (fields the local type does not have) -------------------------------------


def _ignore_uint(d: GobDecoder) -> None:
    d._read_uint()


def _ignore_two_uints(d: GobDecoder) -> None:
    d._read_uint()
    d._read_uint()


def _ignore_uint8_array(d: GobDecoder) -> None:
    n = d._read_uint()
    if n >= _INT64_SIGN or n > d.end - d.pos:
        raise _err("gob: slice length too large")
    d.pos += n


def _ignore_gob_decoder(d: GobDecoder) -> None:
    n = d._read_uint()
    if n >= _INT64_SIGN or n > d.end - d.pos:
        raise _err("gob: GobDecoder: length too large for buffer")
    d.pos += n


def _ignore_interface(d: GobDecoder) -> None:
    n = d._read_uint()
    if n >= _INT64_SIGN or n > d.end - d.pos:
        raise _err("gob: bad interface encoding: name too large for buffer")
    d.pos += n
    depth = d.depth + 1
    if depth > d.max_depth:
        raise _too_deep()
    d.depth = depth
    # Go reads a type sequence even for a nil (empty-name) interface here.
    if d._type_sequence(True) < 0:
        raise d._error()
    n = d._read_uint()
    if n >= _INT64_SIGN or n > d.end - d.pos:
        raise _err("gob: bad interface encoding: data length too large for buffer")
    d.pos += n
    d.depth = depth - 1


def _make_ignore_seq(elem: _OpRef, length: int) -> _Op:
    """ignoreSlice (``length < 0``) or ignoreArray."""

    def op(d: GobDecoder) -> None:
        u = d._read_uint()
        if length >= 0:
            if u != length:
                raise _err("gob: length mismatch in ignoreArray")
            n = length
        else:
            n = _map_count(u)  # Go's int(u): a negative length skips nothing
        _check_elements(d, n)
        depth = d.depth + 1
        if depth > d.max_depth:
            raise _too_deep()
        d.depth = depth
        for _ in range(n):
            if d.pos >= d.end:
                raise _err(
                    f"gob: decoding array or slice: length exceeds input size ({n} elements)"
                )
            elem(d)
        d.depth = depth - 1

    return op


def _make_ignore_map(key: _OpRef, elem: _OpRef) -> _Op:
    def op(d: GobDecoder) -> None:
        n = _map_count(d._read_uint())
        depth = d.depth + 1
        if depth > d.max_depth:
            raise _too_deep()
        d.depth = depth
        i = 0
        while i < n:
            start = d.pos
            key(d)
            elem(d)
            i += 1
            if d.pos == start and start >= d.end:
                break
        d.depth = depth - 1

    return op


def _make_ignore_struct(ref: _EngineRef) -> _Op:
    def op(d: GobDecoder) -> None:
        eng = ref.engine
        assert isinstance(eng, _StructEngine)
        _ignore_struct(d, eng)

    return op


_IGNORE_PRIMITIVE: Final = {
    _T_BOOL: _OpRef(_ignore_uint),
    _T_INT: _OpRef(_ignore_uint),
    _T_UINT: _OpRef(_ignore_uint),
    _T_FLOAT: _OpRef(_ignore_uint),
    _T_BYTES: _OpRef(_ignore_uint8_array),
    _T_STRING: _OpRef(_ignore_uint8_array),
    _T_COMPLEX: _OpRef(_ignore_two_uints),
}


def _none_factory(**_: Any) -> None:
    return None


_EMPTY_STRUCT: Final = GoStruct("", "", (), _none_factory)


_MAX_CACHED_DEF: Final = 4096  # definitions longer than this (with what follows) are parsed


def _wire_key(w: WireType) -> tuple[Any, ...]:
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


def _wire_refs(w: WireType) -> list[int]:
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


class GobDecodeCache:
    """Parsed type definitions and compiled decoders, shared by the decoders of many streams.

    Every Lumera frame re-sends its type definitions, and peers send the same ones again and
    again; parsing them and compiling a decoder is most of the cost of a small message. Entries
    are keyed by the definition bytes and by the complete structure of the wire types a decoder
    depends on (ids included), so a cached decoder behaves exactly as a fresh one. The only
    exception is the nesting cap on type definitions (``max_depth``), which a cached decoder no
    longer has to pass: it can only matter for definitions nested about ``max_depth`` deep,
    which no Go peer sends, and decoded values stay capped either way.

    Bounded: each table is emptied when it reaches ``max_entries``.
    """

    __slots__ = ("_defs", "_engines", "max_entries")

    def __init__(self, max_entries: int = 1024) -> None:
        self.max_entries = max_entries
        self._defs: dict[bytes, tuple[WireType, int, tuple[Any, ...]]] = {}
        self._engines: dict[tuple[Any, ...], _EngineRef] = {}

    def __len__(self) -> int:
        return len(self._defs) + len(self._engines)

    def _put_def(self, raw: bytes, entry: tuple[WireType, int, tuple[Any, ...]]) -> None:
        if len(self._defs) >= self.max_entries:
            self._defs.clear()
        self._defs[raw] = entry

    def _put_engine(self, key: tuple[Any, ...], ref: _EngineRef) -> None:
        if len(self._engines) >= self.max_entries:
            self._engines.clear()
        self._engines[key] = ref


_SEED_ENGINES: Mapping[tuple[GoType, int], _EngineRef] = MappingProxyType({})


class GobDecoder:
    """One Go ``gob.Decoder`` over a stream held in memory (``data[start:stop]``).

    Each :meth:`decode` call reads one value, as Go's ``Decode``; type definitions persist for
    the life of the decoder. Any input error raises :class:`ProtocolError`. A
    :class:`GobDecodeCache` shared between decoders saves re-parsing and re-compiling the type
    definitions that every frame repeats.

    ``data`` is copied to ``bytes`` unless ``views_from`` is set and ``data`` is a
    ``memoryview``: then ``[]byte`` fields of at least ``views_from`` bytes come out as
    read-only views into it, not copies (shorter ones as ``bytes``). A server decoding a
    400 MB BatchStoreData thus holds the frame once instead of twice; the views keep the
    buffer alive, so they must not be kept beyond the request.
    """

    __slots__ = (
        "_cache",
        "_cdepth",
        "_engines",
        "_ignorers",
        "_keys",
        "_user",
        "data",
        "depth",
        "end",
        "err",
        "max_depth",
        "pos",
        "registry",
        "stop",
        "views_from",
    )

    def __init__(
        self,
        data: bytes | bytearray | memoryview,
        registry: InterfaceRegistry = _EMPTY_REGISTRY,
        *,
        start: int = 0,
        stop: int | None = None,
        max_depth: int = DEFAULT_MAX_DEPTH,
        cache: GobDecodeCache | None = None,
        views_from: int = 0,
    ) -> None:
        self.data: bytes | memoryview
        if views_from > 0 and isinstance(data, memoryview):
            self.data = data.cast("B").toreadonly() if data.format != "B" else data.toreadonly()
            self.views_from = views_from
        else:
            self.data = data if isinstance(data, bytes) else bytes(data)
            self.views_from = 0
        self.stop = len(self.data) if stop is None else min(stop, len(self.data))
        self.pos = self.end = max(0, min(start, self.stop))  # current gob message: [pos, end)
        self.registry = registry
        self.max_depth = max_depth
        self.depth = 0
        self._cdepth = 0
        self.err: ProtocolError | None = None  # Go's sticky dec.err
        self._user: dict[int, WireType] = {}
        self._keys: dict[int, tuple[Any, ...]] = {}
        self._cache = cache
        self._engines: dict[tuple[GoType, int], _EngineRef] = dict(_SEED_ENGINES)
        self._ignorers: dict[int, _EngineRef] = {}

    @property
    def wire_types(self) -> Mapping[int, WireType]:
        """The type definitions received so far, by id."""
        return self._user

    def decode(self, go_type: GoType) -> Any:
        """Read the next value into ``go_type`` (Go's ``DecodeValue``)."""
        self.pos = self.end  # Go resets the buffer: the rest of the last message is dropped
        self.err = None
        self.depth = self._cdepth = 0
        try:
            tid = self._type_sequence(False)
            if self.err is not None:
                raise self.err
            value = self._decode_value(tid, go_type)
            if self.err is not None:
                raise self.err
            return value
        except RecursionError:
            # Only reachable with a max_depth above what Python's stack allows.
            raise _err("gob: nesting too deep") from None

    # ---- reading ---------------------------------------------------------------------------

    def _read_uint(self) -> int:
        """state.decodeUint: a uint from the current message."""
        pos = self.pos
        if pos >= self.end:
            raise _err("EOF")
        data = self.data
        b = data[pos]
        if b < 0x80:
            self.pos = pos + 1
            return b
        n = 256 - b
        if n > 8:
            raise _err(_ERR_BAD_UINT)
        stop = pos + 1 + n
        if stop > self.end:
            raise _err(
                f"gob: invalid uint data length {n}: exceeds input size {self.end - pos - 1}"
            )
        self.pos = stop
        return int.from_bytes(data[pos + 1 : stop], "big")

    def _next_uint(self) -> int:
        """Decoder.nextUint: like _read_uint, but errors are recorded (Go's dec.err), not raised."""
        pos, end = self.pos, self.end
        if pos >= end:
            self.err = _err("EOF")
            return 0
        b = self.data[pos]
        if b < 0x80:
            self.pos = pos + 1
            return b
        n = 256 - b
        if n > 8:
            self.pos = pos + 1
            self.err = _err(_ERR_BAD_UINT)
            return 0
        if pos + 1 + n > end:
            self.pos = end
            self.err = _err("unexpected EOF")
            return 0
        self.pos = pos + 1 + n
        return int.from_bytes(self.data[pos + 1 : pos + 1 + n], "big")

    def _recv_message(self) -> bool:
        """Load the next gob message; the current one is exhausted (pos == end)."""
        data, stop = self.data, self.stop
        pos = self.end
        if pos >= stop:
            self.err = _err("EOF")
            return False
        b = data[pos]
        if b < 0x80:
            n = b
            pos += 1
        else:
            k = 256 - b
            if k > 8:
                self.err = _err(_ERR_BAD_UINT)
                return False
            if pos + 1 + k > stop:
                self.err = _err("unexpected EOF")
                return False
            n = int.from_bytes(data[pos + 1 : pos + 1 + k], "big")
            pos += 1 + k
        if n >= _TOO_BIG:
            self.err = _err("invalid message length")
            return False
        if n > stop - pos:
            self.err = _err("unexpected EOF")
            return False
        self.pos = pos
        self.end = pos + n
        return True

    def _error(self) -> ProtocolError:
        return self.err if self.err is not None else _err(_ERR_BAD_TYPE)

    def _type_sequence(self, is_interface: bool) -> int:
        """decodeTypeSequence: read definitions (pulling new messages) up to a value's type id."""
        first = True
        while self.err is None:
            if self.pos >= self.end and not self._recv_message():
                if not first and str(self.err) == "EOF":
                    self.err = _err("unexpected EOF")
                break
            tid = _int32(_to_int(self._next_uint()))
            if tid >= 0:
                return tid
            self._recv_type(_int32(-tid))
            if self.err is not None:
                break
            if self.pos < self.end:
                if not is_interface:
                    self.err = _err("extra data in buffer")
                    break
                self._next_uint()  # the byte count of a delimited definition that follows
            first = False
        return -1

    def _recv_type(self, tid: int) -> None:
        if tid < FIRST_USER_ID or tid in self._user:
            self.err = _err("gob: duplicate type received")
            return
        cache, start = self._cache, self.pos
        # A definition's parse depends only on the bytes from here to the end of the message.
        raw = (
            bytes(self.data[start : self.end])
            if cache and self.end - start <= _MAX_CACHED_DEF
            else b""
        )
        hit = cache._defs.get(raw) if cache and raw else None
        if hit is not None:
            wire, consumed, key = hit
            self.pos = start + consumed
        else:
            wire = self._decode_value(_T_WIRE_TYPE, _WIRE_T)
            if self.err is not None:
                return
            key = _wire_key(wire)
            if cache and raw:
                cache._put_def(raw, (wire, self.pos - start, key))
        self._user[tid] = wire
        self._keys[tid] = key

    def _decode_value(self, wire_id: int, local: GoType) -> Any:
        ref = self._dec_engine(wire_id, local)
        self.err = None  # Go assigns getDecEnginePtr's (nil) error to dec.err
        eng = ref.engine
        if isinstance(eng, _StructEngine):
            base = _base(local)
            assert isinstance(base, GoStruct)
            if eng.num_instr == 0 and base.fields:
                wt = self._user.get(wire_id)
                if wt is not None and wt.struct_t is not None and wt.struct_t.fields:
                    raise _err(
                        f"gob: type mismatch: no fields matched compiling decoder for {base.name}"
                    )
            return _decode_struct(self, eng)
        assert isinstance(eng, _SingleEngine)
        if self._read_uint() != 0:
            raise _err("gob: decode: corrupted data: non-zero delta for singleton")
        return eng.op(self)

    # ---- compiling (per stream, like Go's decoder caches) ---------------------------------

    def _enter_compile(self) -> None:
        self._cdepth += 1
        if self._cdepth > self.max_depth:
            raise _err("gob: invalid nesting depth")

    def _dec_engine(self, wire_id: int, local: GoType) -> _EngineRef:
        base = _base(local)
        key = (base, wire_id)
        ref = self._engines.get(key)
        if ref is not None:
            return ref
        cache = self._cache
        ckey: tuple[Any, ...] = ()
        if cache is not None:
            ckey = (base, wire_id, self.max_depth, self._signature(wire_id))
            ref = cache._engines.get(ckey)
            if ref is not None:
                self._engines[key] = ref
                return ref
        self._enter_compile()
        ref = _EngineRef()
        self._engines[key] = ref
        try:
            ref.engine = self._compile_dec(wire_id, base)
        except BaseException:
            del self._engines[key]
            raise
        self._cdepth -= 1
        if cache is not None:
            cache._put_engine(ckey, ref)
        return ref

    def _signature(self, wire_id: int) -> tuple[Any, ...]:
        """Every user definition reachable from ``wire_id``, with its id (None if undefined)."""
        sig: list[Any] = []
        seen: set[int] = set()
        stack = [wire_id]
        while stack:
            tid = stack.pop()
            if tid < FIRST_USER_ID or tid in seen:
                continue  # builtin ids never change
            seen.add(tid)
            sig.append((tid, self._keys.get(tid)))
            wire = self._user.get(tid)
            if wire is not None:
                stack.extend(_wire_refs(wire))
        return tuple(sig)

    def _builtin_or_user(self, wire_id: int) -> WireType | None:
        if 0 <= wire_id < FIRST_USER_ID:
            return _BUILTIN_WIRE.get(wire_id)
        return self._user.get(wire_id)

    def _compile_dec(self, wire_id: int, base: GoType) -> _StructEngine | _SingleEngine:
        if not isinstance(base, GoStruct):
            return self._compile_single(wire_id, base)
        if 0 <= wire_id < FIRST_USER_ID and wire_id in _BUILTIN_WIRE:
            ws = _BUILTIN_WIRE[wire_id].struct_t
        else:
            wire = self._user.get(wire_id)
            if wire is None:
                raise _err(_ERR_BAD_TYPE)
            ws = wire.struct_t
        if ws is None:
            raise _err(
                f"gob: type mismatch in decoder: want struct type {base.go_string()}; "
                "got non-struct"
            )
        instrs: list[tuple[_Op, str | None]] = []
        num = 0
        seen: dict[GoType, _Op] = {}  # shared by all fields, as in Go (see _dec_op)
        for wf in ws.fields:
            if not wf.name:
                raise _err(f"gob: empty name for remote field of type {ws.common.name}")
            lf = base.field(wf.name)
            if lf is None or not wf.name[:1].isupper():
                ref = self._ignore_op(wf.id, {})
                assert ref.op is not None
                instrs.append((ref.op, None))
                continue
            if not self._compatible(lf.type, wf.id, {}):
                raise _err(
                    f"gob: wrong type ({lf.type.go_string()}) for received field "
                    f"{ws.common.name}.{wf.name}"
                )
            instrs.append((self._dec_op(wf.id, lf.type, lf.name, seen), lf.attr))
            num += 1
        return _StructEngine(instrs, num, base.factory)

    def _compile_single(self, wire_id: int, local: GoType) -> _SingleEngine:
        if not self._compatible(local, wire_id, {}):
            remote = self._type_string(wire_id)
            if isinstance(_base(local), GoInterface):
                raise _err(
                    f"gob: local interface type {local.go_string()} can only be decoded from "
                    f"remote interface type; received concrete type {remote}"
                )
            raise _err(
                f"gob: decoding into local type {local.go_string()}, received remote type {remote}"
            )
        return _SingleEngine(self._dec_op(wire_id, local, local.go_string(), {}))

    def _type_string(self, wire_id: int) -> str:
        names = {1: "bool", 2: "int", 3: "uint", 4: "float", 5: "bytes", 6: "string"}
        if wire_id in names:
            return names[wire_id]
        if wire_id == _T_COMPLEX:
            return "complex"
        if wire_id == _T_INTERFACE:
            return "interface"
        wire = self._builtin_or_user(wire_id)
        return wire.name if wire is not None else "unknown type"

    def _dec_op(self, wire_id: int, local: GoType, name: str, seen: dict[GoType, _Op]) -> _Op:
        """decOpFor. ``seen`` is keyed by the local type only, so two fields of the same local
        composite type share the op compiled for the first one's wire type, exactly as Go does.
        """
        hit = seen.get(local)
        if hit is not None:
            return hit
        base = _base(local)
        prim = _primitive_op(base, name)
        if prim is not None:
            return prim
        op: _Op
        if isinstance(base, GoBytes):
            op = _op_bytes
        elif isinstance(base, GoArray):
            wire = self._user[wire_id]
            assert wire.array_t is not None
            elem = self._dec_op(wire.array_t.elem, base.elem, "element of " + name, seen)
            op = _make_array_op(elem, base.length)
        elif isinstance(base, GoMap):
            wire = self._user[wire_id]
            assert wire.map_t is not None
            key = self._dec_op(wire.map_t.key, base.key, "key of " + name, seen)
            elem = self._dec_op(wire.map_t.elem, base.elem, "element of " + name, seen)
            op = _make_map_op(key, elem)
        elif isinstance(base, GoSlice):
            sw = self._builtin_or_user(wire_id)
            assert sw is not None and sw.slice_t is not None
            op = _make_slice_op(
                self._dec_op(sw.slice_t.elem, base.elem, "element of " + name, seen)
            )
        elif isinstance(base, GoStruct):
            op = _make_struct_op(self._dec_engine(wire_id, base))
        elif isinstance(base, GoInterface):
            op = _op_interface
        else:
            raise _err(f"gob: decode can't handle type {local.go_string()}")
        seen[local] = op
        return op

    def _compatible(self, local: GoType, wire_id: int, in_progress: dict[GoType, int]) -> bool:
        """compatibleType: can a value of wire type ``wire_id`` go into ``local``?"""
        if local in in_progress:
            return in_progress[local] == wire_id
        in_progress[local] = wire_id
        wire = self._user.get(wire_id)
        if wire is not None and (
            wire.gob_encoder_t is not None
            or wire.binary_marshaler_t is not None
            or wire.text_marshaler_t is not None
        ):
            return False  # no local type implements a gob/binary/text decoder
        base = _base(local)
        if isinstance(base, GoStruct):
            return True
        if isinstance(base, GoBytes):
            return wire_id == _T_BYTES
        builtin = _BUILTIN_IDS.get(type(base))
        if builtin is not None:
            return wire_id == builtin
        if isinstance(base, GoArray):
            if wire is None or wire.array_t is None:
                return False
            return base.length == wire.array_t.len and self._compatible(
                base.elem, wire.array_t.elem, in_progress
            )
        if isinstance(base, GoMap):
            if wire is None or wire.map_t is None:
                return False
            return self._compatible(base.key, wire.map_t.key, in_progress) and self._compatible(
                base.elem, wire.map_t.elem, in_progress
            )
        if isinstance(base, GoSlice):
            sw = self._builtin_or_user(wire_id)
            if sw is None or sw.slice_t is None:
                return False
            return self._compatible(_base(base.elem), sw.slice_t.elem, in_progress)
        return False

    def _ignore_op(self, wire_id: int, in_progress: dict[int, _OpRef]) -> _OpRef:
        """decIgnoreOpFor: how to skip a value of a wire type the local side does not have."""
        self._enter_compile()
        try:
            hit = in_progress.get(wire_id)
            if hit is not None:
                return hit
            prim = _IGNORE_PRIMITIVE.get(wire_id)
            if prim is not None:
                return prim
            ref = _OpRef()
            in_progress[wire_id] = ref
            if wire_id == _T_INTERFACE:
                ref.op = _ignore_interface
                return ref
            wire = self._user.get(wire_id)
            if wire is None:
                raise _err(f"gob: bad data: undefined type {self._type_string(wire_id)}")
            if wire.array_t is not None:
                elem = self._ignore_op(wire.array_t.elem, in_progress)
                ref.op = _make_ignore_seq(elem, wire.array_t.len)
            elif wire.map_t is not None:
                key = self._ignore_op(wire.map_t.key, in_progress)
                val = self._ignore_op(wire.map_t.elem, in_progress)
                ref.op = _make_ignore_map(key, val)
            elif wire.slice_t is not None:
                ref.op = _make_ignore_seq(self._ignore_op(wire.slice_t.elem, in_progress), -1)
            elif wire.struct_t is not None:
                ref.op = _make_ignore_struct(self._ignore_engine(wire_id))
            elif (
                wire.gob_encoder_t is not None
                or wire.binary_marshaler_t is not None
                or wire.text_marshaler_t is not None
            ):
                ref.op = _ignore_gob_decoder
            else:
                raise _err(f"gob: bad data: ignore can't handle type {self._type_string(wire_id)}")
            return ref
        finally:
            self._cdepth -= 1

    def _ignore_engine(self, wire_id: int) -> _EngineRef:
        ref = self._ignorers.get(wire_id)
        if ref is None:
            ref = _EngineRef()
            self._ignorers[wire_id] = ref
            try:
                ref.engine = self._compile_dec(wire_id, _EMPTY_STRUCT)
            except BaseException:
                del self._ignorers[wire_id]
                raise
        return ref


def gob_decode(
    data: bytes | bytearray | memoryview,
    go_type: GoType,
    *,
    registry: InterfaceRegistry = _EMPTY_REGISTRY,
    max_depth: int = DEFAULT_MAX_DEPTH,
    cache: GobDecodeCache | None = None,
) -> Any:
    """Decode the first value of a gob stream into ``go_type`` (trailing data is ignored)."""
    return GobDecoder(data, registry, max_depth=max_depth, cache=cache).decode(go_type)


# --------------------------------------------------------------------------------------------
# gob's own types, described with the same descriptors (gob sends them with gob)
# --------------------------------------------------------------------------------------------

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
_WIRE_T: Final = GoStruct(
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


def _bootstrap_builtin_wire() -> dict[int, WireType]:
    """Ids 1-24 as Go's init builds them: the primitives, then wireType and its parts from 16."""
    table = TypeTable(first_id=_T_WIRE_TYPE)
    table.type_id(_WIRE_T)
    builtin = {tid: WireType() for tid in range(1, _T_WIRE_TYPE)}
    for gt in table._types.values():
        wire = gt.wire()
        if wire is not None:
            builtin[gt.id] = wire
    return builtin


_BUILTIN_WIRE: Final = _bootstrap_builtin_wire()


def _compile_wire_engine() -> Mapping[tuple[GoType, int], _EngineRef]:
    """The decoder for type definitions depends only on builtin ids, so it is built once."""
    return MappingProxyType({(_WIRE_T, _T_WIRE_TYPE): GobDecoder(b"")._dec_engine(16, _WIRE_T)})


# Rebound once, at import: decoders made before this line (only the one above) start empty.
_SEED_ENGINES = _compile_wire_engine()
