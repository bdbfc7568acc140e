"""Writing values: the output buffer, one writer per Go type, and the struct encoding rule.

These are the pieces of Go's ``encode.go`` that do not depend on a stream: how a uint, a string,
a slice or a struct turns into bytes. The stream logic (which type definitions to send, how an
interface value is split over gob messages) is in :mod:`.encoder`; the type table uses the struct
writer to encode type definitions.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, Final, Protocol

from lumera_p2p.errors import GobEncodeError
from lumera_p2p.wire.gob.types import (
    GoArray,
    GoBool,
    GoBytes,
    GoFloat,
    GoInt,
    GoInterface,
    GoMap,
    GoPtr,
    GoSlice,
    GoString,
    GoStruct,
    GoType,
    GoUint,
    base_type,
)

__all__ = [
    "BIG_CHUNK",
    "INT64_SIGN",
    "TOO_BIG",
    "ZK_FALSY",
    "ZK_NEVER",
    "ZK_NONE",
    "Buffer",
    "GobEncodeError",
    "InterfaceWriter",
    "StructPlan",
    "encode_struct",
    "struct_plan",
    "writer_for",
    "zero_kind",
]

TOO_BIG: Final = 1 << 33
"""Go's tooBig on 64-bit platforms: the largest gob message it reads or writes."""
INT64_SIGN: Final = 1 << 63
BIG_CHUNK: Final = 2048
"""``[]byte`` at least this long is kept by reference in the output, not copied."""
F64: Final = struct.Struct(">d")
F32: Final = struct.Struct(">f")


class Buffer:
    """An output buffer that keeps large ``bytes`` by reference, so payloads are copied once."""

    __slots__ = ("chunks", "cur", "flushed")

    def __init__(self) -> None:
        self.chunks: list[bytes | bytearray | memoryview] = []
        self.cur = bytearray()
        self.flushed = 0

    def size(self) -> int:
        """Bytes written so far."""
        return self.flushed + len(self.cur)

    def uint(self, x: int) -> None:
        """gob's unsigned integer: one byte below 0x80, else ``256-n`` and n big-endian bytes."""
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
        """gob's signed integer: the sign moves to bit 0."""
        self.uint(i << 1 if i >= 0 else (~i << 1) | 1)

    def raw(self, data: bytes) -> None:
        """Append ``data`` (a large ``bytes`` or read-only view by reference)."""
        if len(data) >= BIG_CHUNK and (
            isinstance(data, bytes) or (isinstance(data, memoryview) and data.readonly)
        ):
            if self.cur:
                self.chunks.append(self.cur)
                self.flushed += len(self.cur)
                self.cur = bytearray()
            self.chunks.append(data)
            self.flushed += len(data)
        else:
            self.cur += data

    def take(self, other: Buffer) -> None:
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

    def parts(self) -> list[bytes | bytearray | memoryview]:
        """The contents as chunks to join."""
        return [*self.chunks, self.cur] if self.cur else list(self.chunks)

    def getvalue(self) -> bytes:
        """The contents as one ``bytes``."""
        return b"".join(self.parts())


class InterfaceWriter(Protocol):
    """What the interface writer needs from its encoder (a ``GobEncoder``)."""

    def encode_interface(self, b: Buffer, v: Any) -> None:
        """Write the non-nil interface value ``v`` (name, definitions, value) to ``b``."""
        ...


Writer = Callable[[InterfaceWriter | None, Buffer, Any], None]


def _w_bool(enc: InterfaceWriter | None, b: Buffer, v: Any) -> None:
    b.cur.append(1 if v else 0)


def _w_int64(enc: InterfaceWriter | None, b: Buffer, v: Any) -> None:
    if not -INT64_SIGN <= v < INT64_SIGN:
        raise GobEncodeError(f"gob: {v} out of range for a 64-bit int")
    b.uint(v << 1 if v >= 0 else (~v << 1) | 1)


def _w_uint64(enc: InterfaceWriter | None, b: Buffer, v: Any) -> None:
    if not 0 <= v < 1 << 64:
        raise GobEncodeError(f"gob: {v} out of range for a 64-bit uint")
    b.uint(v)


def _w_string(enc: InterfaceWriter | None, b: Buffer, v: Any) -> None:
    data = v.encode("utf-8", "surrogateescape")
    if len(data) < 0x80:
        cur = b.cur
        cur.append(len(data))
        cur += data
    else:
        b.uint(len(data))
        b.raw(data)


def _w_bytes(enc: InterfaceWriter | None, b: Buffer, v: Any) -> None:
    if len(v) < 0x80:
        cur = b.cur
        cur.append(len(v))
        cur += v
    else:
        b.uint(len(v))
        b.raw(v)


def _w_float64(enc: InterfaceWriter | None, b: Buffer, v: Any) -> None:
    # Go sends float bits byte-reversed so that small integers and halves encode short.
    b.uint(int.from_bytes(F64.pack(v), "little"))


def _w_float32(enc: InterfaceWriter | None, b: Buffer, v: Any) -> None:
    try:
        narrowed = F32.unpack(F32.pack(v))[0]
    except OverflowError:
        raise GobEncodeError(f"gob: {v} out of range for float32") from None
    b.uint(int.from_bytes(F64.pack(narrowed), "little"))


def _w_interface(enc: InterfaceWriter | None, b: Buffer, v: Any) -> None:
    if v is None:
        b.cur.append(0)
        return
    if enc is None:
        raise GobEncodeError("gob: interface value outside an encoder")
    enc.encode_interface(b, v)


def _make_w_int(bits: int) -> Writer:
    lo, hi = -(1 << (bits - 1)), 1 << (bits - 1)

    def w(enc: InterfaceWriter | None, b: Buffer, v: Any) -> None:
        if not lo <= v < hi:
            raise GobEncodeError(f"gob: {v} out of range for int{bits}")
        b.uint(v << 1 if v >= 0 else (~v << 1) | 1)

    return w


def _make_w_uint(bits: int) -> Writer:
    hi = 1 << bits

    def w(enc: InterfaceWriter | None, b: Buffer, v: Any) -> None:
        if not 0 <= v < hi:
            raise GobEncodeError(f"gob: {v} out of range for uint{bits}")
        b.uint(v)

    return w


def writer_for(t: GoType) -> Writer:
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
        inner = writer_for(t.elem)

        def w_ptr(enc: InterfaceWriter | None, b: Buffer, v: Any) -> None:
            if v is None:
                raise GobEncodeError("gob: encodeArray: nil element")
            inner(enc, b, v)

        return w_ptr
    if isinstance(t, GoSlice | GoArray):
        ew = writer_for(t.elem)
        length = t.length if isinstance(t, GoArray) else -1

        def w_seq(enc: InterfaceWriter | None, b: Buffer, v: Any) -> None:
            if length >= 0 and len(v) != length:
                raise GobEncodeError(f"gob: array of length {len(v)} for [{length}]")
            b.uint(len(v))
            for item in v:
                ew(enc, b, item)

        return w_seq
    if isinstance(t, GoMap):
        kw, vw = writer_for(t.key), writer_for(t.elem)

        def w_map(enc: InterfaceWriter | None, b: Buffer, v: Any) -> None:
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

        def w_struct(enc: InterfaceWriter | None, b: Buffer, v: Any) -> None:
            encode_struct(enc, b, v, s)

        return w_struct
    raise TypeError(f"gob cannot encode {t!r}")


# How a struct field decides it is zero and is left out: never, when falsy, or when None.
ZK_NEVER: Final = 0
ZK_FALSY: Final = 1
ZK_NONE: Final = 2


def zero_kind(t: GoType) -> int:
    """How a struct field of type ``t`` is found to be zero (and then not sent)."""
    if isinstance(t, GoPtr):
        inner = zero_kind(base_type(t))
        return ZK_FALSY if inner == ZK_FALSY else ZK_NONE
    if isinstance(t, GoStruct | GoArray):
        return ZK_NEVER  # Go sends struct and array fields even when zero
    if isinstance(t, GoMap | GoInterface):
        return ZK_NONE  # an empty non-nil map is sent
    return ZK_FALSY


StructPlan = tuple[tuple[int, str, Writer, int], ...]
"""Per field: its number, Python attribute, writer and zero kind."""


def struct_plan(s: GoStruct) -> StructPlan:
    """The encoder's plan for ``s``, built on first use and kept on the descriptor."""
    plan: StructPlan | None = s.encoder_plan
    if plan is None:
        plan = tuple(
            (i, f.attr, writer_for(f.type), zero_kind(f.type)) for i, f in enumerate(s.fields)
        )
        s.encoder_plan = plan
    return plan


def encode_struct(enc: InterfaceWriter | None, b: Buffer, v: Any, s: GoStruct) -> None:
    """encodeStruct: (delta, value)* for the non-zero fields, then 0."""
    last = -1
    for idx, attr, writer, zk in struct_plan(s):
        x = getattr(v, attr)
        if zk == ZK_FALSY:
            if not x:
                continue
        elif zk == ZK_NONE and x is None:
            continue
        b.cur.append(idx - last)  # structs never have 128 fields; see GoStruct.define
        last = idx
        writer(enc, b, x)
    b.cur.append(0)
