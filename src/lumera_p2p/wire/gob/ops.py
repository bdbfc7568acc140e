"""Decoding operations: what reads one value of one type from the current gob message.

Each op takes the decoder (``d``), reads from ``d.data[d.pos:d.end]`` and returns the value. The
compiler (:mod:`.compiler`) picks and composes them for a pair of wire type and local type; struct
ops run an *engine* (the per-field ops in wire order). Every length is checked against the bytes
that remain before anything is allocated, and nesting is capped (``d.max_depth``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from lumera_p2p.errors import ProtocolError
from lumera_p2p.wire.gob.types import GoBool, GoFloat, GoInt, GoString, GoType, GoUint
from lumera_p2p.wire.gob.wiretypes import (
    T_BOOL,
    T_BYTES,
    T_COMPLEX,
    T_FLOAT,
    T_INT,
    T_STRING,
    T_UINT,
)
from lumera_p2p.wire.gob.writers import F32, F64, INT64_SIGN

if TYPE_CHECKING:
    from lumera_p2p.wire.gob.decoder import GobDecoder

Op = Callable[["GobDecoder"], Any]

DEFAULT_MAX_DEPTH: Final = 100
"""Nesting cap for values and for type definitions. Lumera messages nest 7 deep."""

MAX_F32: Final = 3.4028234663852886e38
ERR_RANGE: Final = "gob: bad data: field numbers out of bounds"
ERR_BAD_UINT: Final = "gob: encoded unsigned integer out of range"
ERR_BAD_TYPE: Final = "gob: unknown type id or corrupted data"


def err(text: str) -> ProtocolError:
    """The decoder's error for ``text`` (Go's words)."""
    return ProtocolError(text)


def too_deep() -> ProtocolError:
    """The error for values nested beyond ``max_depth``."""
    return ProtocolError("gob: nesting too deep")


def goq(name: bytes) -> str:
    """``name`` quoted as Go's ``%q`` does for printable text."""
    return json.dumps(name.decode("utf-8", "replace"))


def int32(x: int) -> int:
    """Go's conversion of an int64 to the int32 ``typeId``."""
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def to_int(u: int) -> int:
    """gob's signed integer from its unsigned form."""
    return ~(u >> 1) if u & 1 else u >> 1


# ---- engines --------------------------------------------------------------------------------


class OpRef:
    """A late-bound op, so recursive wire types (``74 = []74``) can refer to themselves."""

    __slots__ = ("op",)

    def __init__(self, op: Op | None = None) -> None:
        self.op = op

    def __call__(self, d: GobDecoder) -> Any:
        assert self.op is not None
        return self.op(d)


class StructEngine:
    """A struct's decoder: one (op, attribute) per wire field; ``None`` attributes are skipped."""

    __slots__ = ("factory", "instrs", "num_instr")

    def __init__(
        self, instrs: list[tuple[Op, str | None]], num_instr: int, factory: Callable[..., Any]
    ) -> None:
        self.instrs = instrs
        self.num_instr = num_instr
        self.factory = factory


class SingleEngine:
    """A non-struct value's decoder (the value travels as a singleton field 0)."""

    __slots__ = ("op",)

    def __init__(self, op: Op) -> None:
        self.op = op


class EngineRef:
    """Set after compilation; ops read it when they run, which closes recursive structs."""

    __slots__ = ("engine",)

    def __init__(self, engine: StructEngine | SingleEngine | None = None) -> None:
        self.engine = engine


# ---- primitive ops --------------------------------------------------------------------------


def op_bool(d: GobDecoder) -> bool:
    """bool: any non-zero uint is true (Go accepts 2)."""
    return d.read_uint() != 0


def op_int64(d: GobDecoder) -> int:
    """int64."""
    u = d.read_uint()
    return ~(u >> 1) if u & 1 else u >> 1


def op_uint64(d: GobDecoder) -> int:
    """uint64."""
    return d.read_uint()


def op_float64(d: GobDecoder) -> float:
    """float64 (byte-reversed bits)."""
    return float(F64.unpack(d.read_uint().to_bytes(8, "little"))[0])


def op_bytes(d: GobDecoder) -> bytes | memoryview:
    """[]byte: a count, then that many bytes of the current message (a view into them when
    the decoder hands out views and the field is long enough: ``GobDecoder``)."""
    pos = d.pos
    n = d.data[pos] if pos < d.end else 0x80
    if n < 0x80:
        pos += 1
    else:
        n = d.read_uint()
        pos = d.pos
    if n > d.end - pos:
        raise err("gob: bad []uint8 slice length: 0")
    d.pos = pos + n
    chunk = d.data[pos : pos + n]
    if n < d.views_from:
        return bytes(chunk)  # a short field from a view: bytes, as everywhere else
    return chunk


def op_string(d: GobDecoder) -> str:
    """string: as []byte; bytes that are not UTF-8 survive as surrogate escapes."""
    pos = d.pos
    n = d.data[pos] if pos < d.end else 0x80
    if n < 0x80:
        pos += 1
    else:
        n = d.read_uint()
        pos = d.pos
    if n > d.end - pos:
        raise err("gob: bad string slice length: 0")
    d.pos = pos + n
    return str(d.data[pos : pos + n], "utf-8", "surrogateescape")


def _make_op_int(bits: int, name: str) -> Op:
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1

    def op(d: GobDecoder) -> int:
        u = d.read_uint()
        v = ~(u >> 1) if u & 1 else u >> 1
        if not lo <= v <= hi:
            raise err(f'value for "{name}" out of range')
        return v

    return op


def _make_op_uint(bits: int, name: str) -> Op:
    hi = (1 << bits) - 1

    def op(d: GobDecoder) -> int:
        v = d.read_uint()
        if v > hi:
            raise err(f'value for "{name}" out of range')
        return v

    return op


def _make_op_float32(name: str) -> Op:
    def op(d: GobDecoder) -> float:
        v = float(F64.unpack(d.read_uint().to_bytes(8, "little"))[0])
        if abs(v) > MAX_F32 and v not in (float("inf"), float("-inf")):
            raise err(f'value for "{name}" out of range')
        return float(F32.unpack(F32.pack(v))[0])

    return op


def primitive_op(t: GoType, name: str) -> Op | None:
    """The op for a primitive local type (``name`` is used in range errors), or ``None``."""
    if isinstance(t, GoBool):
        return op_bool
    if isinstance(t, GoInt):
        return op_int64 if t.bits == 64 else _make_op_int(t.bits, name)
    if isinstance(t, GoUint):
        return op_uint64 if t.bits == 64 else _make_op_uint(t.bits, name)
    if isinstance(t, GoFloat):
        return op_float64 if t.bits == 64 else _make_op_float32(name)
    if isinstance(t, GoString):
        return op_string
    return None


# ---- composite ops --------------------------------------------------------------------------


def decode_struct(d: GobDecoder, eng: StructEngine) -> Any:
    """decodeStruct: fields by delta; a message that ends early simply ends the struct."""
    depth = d.depth + 1
    if depth > d.max_depth:
        raise too_deep()
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
            delta = d.read_uint()
            if delta >= INT64_SIGN:
                raise err("gob: decode: corrupted data: negative delta")
        if delta == 0:
            break
        fieldnum += delta
        if fieldnum >= n:
            raise err(ERR_RANGE)
        op, attr = instrs[fieldnum]
        if attr is None:
            op(d)
        else:
            kw[attr] = op(d)
    d.depth = depth - 1
    return eng.factory(**kw)


def _ignore_struct(d: GobDecoder, eng: StructEngine) -> None:
    depth = d.depth + 1
    if depth > d.max_depth:
        raise too_deep()
    d.depth = depth
    instrs = eng.instrs
    n = len(instrs)
    fieldnum = -1
    while d.pos < d.end:
        delta = d.read_uint()
        if delta >= INT64_SIGN:
            raise err("gob: ignore decode: corrupted data: negative delta")
        if delta == 0:
            break
        fieldnum += delta
        if fieldnum >= n:
            raise err(ERR_RANGE)
        instrs[fieldnum][0](d)
    d.depth = depth - 1


def make_struct_op(ref: EngineRef) -> Op:
    """The op for a struct field: runs the (possibly not yet compiled) engine in ``ref``."""

    def op(d: GobDecoder) -> Any:
        eng = ref.engine
        assert isinstance(eng, StructEngine)
        return decode_struct(d, eng)

    return op


def _check_elements(d: GobDecoder, n: int) -> None:
    # Every element takes at least one byte of the stream (Go checks per element that the
    # message is not exhausted), so a count above the bytes left can never succeed: refuse it
    # before looping or allocating.
    if n > d.stop - d.pos:
        raise err(f"gob: decoding array or slice: length exceeds input size ({n} elements)")


def make_slice_op(elem: Op) -> Op:
    """The op for ``[]T`` with ``elem`` reading one T."""

    def op(d: GobDecoder) -> list[Any]:
        n = d.read_uint()
        if n >= INT64_SIGN:
            raise err(f"gob: slice too big: {n} elements")
        _check_elements(d, n)
        depth = d.depth + 1
        if depth > d.max_depth:
            raise too_deep()
        d.depth = depth
        out: list[Any] = []
        append = out.append
        for _ in range(n):
            if d.pos >= d.end:
                raise err(f"gob: decoding array or slice: length exceeds input size ({n} elements)")
            append(elem(d))
        d.depth = depth - 1
        return out

    return op


def make_array_op(elem: Op, length: int) -> Op:
    """The op for ``[length]T``."""

    def op(d: GobDecoder) -> list[Any]:
        if d.read_uint() != length:
            raise err("gob: length mismatch in decodeArray")
        _check_elements(d, length)
        depth = d.depth + 1
        if depth > d.max_depth:
            raise too_deep()
        d.depth = depth
        out: list[Any] = []
        for _ in range(length):
            if d.pos >= d.end:
                raise err(
                    f"gob: decoding array or slice: length exceeds input size ({length} elements)"
                )
            out.append(elem(d))
        d.depth = depth - 1
        return out

    return op


def _map_count(u: int) -> int:
    # Go converts the count to int: a count >= 2^63 turns negative and the loop never runs.
    return u if u < INT64_SIGN else 0


def make_map_op(key: Op, elem: Op) -> Op:
    """The op for ``map[K]V``; a later duplicate key wins, as in Go."""

    def op(d: GobDecoder) -> dict[Any, Any]:
        n = _map_count(d.read_uint())
        depth = d.depth + 1
        if depth > d.max_depth:
            raise too_deep()
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


def op_interface(d: GobDecoder) -> Any:
    """decodeInterface: name, (inline type definitions), concrete id, byte count, value."""
    nr = d.read_uint()
    if nr > 1 << 31:
        raise err(f"gob: invalid type name length {nr}")
    pos = d.pos
    if nr > d.end - pos:
        raise err(f"gob: invalid type name length {nr}: exceeds input size")
    name = bytes(d.data[pos : pos + nr])  # the same object for bytes; a copy of a view's
    d.pos = pos + nr
    if not nr:
        return None
    if nr > 1024:
        raise err(f"gob: name too long ({nr} bytes): {goq(name[:20])}...")
    t = d.registry.type_for_name(name)
    if t is None:
        raise err(f"gob: name not registered for interface: {goq(name)}")
    depth = d.depth + 1
    if depth > d.max_depth:
        raise too_deep()
    d.depth = depth
    concrete = d.type_sequence(True)
    if concrete < 0:
        raise d.error()
    d.read_uint()  # the value's byte count; Go reads it and ignores it
    v = d.decode_value(concrete, t)
    if d.err is not None:
        raise d.err
    d.depth = depth - 1
    return v


# ---- ignore ops (fields the local type does not have) -------------------------------------


def _ignore_uint(d: GobDecoder) -> None:
    d.read_uint()


def _ignore_two_uints(d: GobDecoder) -> None:
    d.read_uint()
    d.read_uint()


def _ignore_uint8_array(d: GobDecoder) -> None:
    n = d.read_uint()
    if n >= INT64_SIGN or n > d.end - d.pos:
        raise err("gob: slice length too large")
    d.pos += n


def ignore_gob_decoder(d: GobDecoder) -> None:
    """Skip a value of a type with its own marshaller (a counted byte string)."""
    n = d.read_uint()
    if n >= INT64_SIGN or n > d.end - d.pos:
        raise err("gob: GobDecoder: length too large for buffer")
    d.pos += n


def ignore_interface(d: GobDecoder) -> None:
    """Skip an interface value: name, type sequence, counted value."""
    n = d.read_uint()
    if n >= INT64_SIGN or n > d.end - d.pos:
        raise err("gob: bad interface encoding: name too large for buffer")
    d.pos += n
    depth = d.depth + 1
    if depth > d.max_depth:
        raise too_deep()
    d.depth = depth
    # Go reads a type sequence even for a nil (empty-name) interface here.
    if d.type_sequence(True) < 0:
        raise d.error()
    n = d.read_uint()
    if n >= INT64_SIGN or n > d.end - d.pos:
        raise err("gob: bad interface encoding: data length too large for buffer")
    d.pos += n
    d.depth = depth - 1


def make_ignore_seq(elem: OpRef, length: int) -> Op:
    """ignoreSlice (``length < 0``) or ignoreArray."""

    def op(d: GobDecoder) -> None:
        u = d.read_uint()
        if length >= 0:
            if u != length:
                raise err("gob: length mismatch in ignoreArray")
            n = length
        else:
            n = _map_count(u)  # Go's int(u): a negative length skips nothing
        _check_elements(d, n)
        depth = d.depth + 1
        if depth > d.max_depth:
            raise too_deep()
        d.depth = depth
        for _ in range(n):
            if d.pos >= d.end:
                raise err(f"gob: decoding array or slice: length exceeds input size ({n} elements)")
            elem(d)
        d.depth = depth - 1

    return op


def make_ignore_map(key: OpRef, elem: OpRef) -> Op:
    """ignoreMap."""

    def op(d: GobDecoder) -> None:
        n = _map_count(d.read_uint())
        depth = d.depth + 1
        if depth > d.max_depth:
            raise too_deep()
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


def make_ignore_struct(ref: EngineRef) -> Op:
    """Skip a struct of a wire type with no local counterpart."""

    def op(d: GobDecoder) -> None:
        eng = ref.engine
        assert isinstance(eng, StructEngine)
        _ignore_struct(d, eng)

    return op


IGNORE_PRIMITIVE: Final[Mapping[int, OpRef]] = MappingProxyType(
    {
        T_BOOL: OpRef(_ignore_uint),
        T_INT: OpRef(_ignore_uint),
        T_UINT: OpRef(_ignore_uint),
        T_FLOAT: OpRef(_ignore_uint),
        T_BYTES: OpRef(_ignore_uint8_array),
        T_STRING: OpRef(_ignore_uint8_array),
        T_COMPLEX: OpRef(_ignore_two_uints),
    }
)
"""How to skip a value of each builtin type."""
