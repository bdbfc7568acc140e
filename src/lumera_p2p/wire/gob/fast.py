"""A fast codec for one root struct whose ``interface{}`` field carries registered types.

This is the shape of every Lumera frame: a ``*Message`` from a fresh encoder, with ``Data`` one
of the registered types. For each registered type the bytes a fresh Go encoder sends are mostly
fixed: the root's type definitions, the concrete type's name and definitions. Only the values
differ. :class:`FastCodec` works those fixed parts out once, with the general encoder, and
generates (:mod:`.codegen`) one encoder and one decoder per registered type for the rest.

Encoding is used for a fresh stream (the type ids of a fresh process). Decoding recognises the
definitions by comparing bytes: the fixed ones of a fresh encoder, or sequences it has learnt
(in a :class:`~lumera_p2p.wire.gob.cache.GobDecodeCache`) from a peer whose long-running process
numbers types differently; it learns a sequence only after checking that it defines exactly the
local types, field for field. Anything else returns ``None``: the caller then runs the general
codec, whose result is the reference (the tests check that both agree on every input).

The generated decoder charges what it builds exactly as the general decoder does
(:mod:`.costs`), and declines a value the general decoder would refuse for its size. The only
charges it does not make are for the type definitions it recognises by their bytes (the general
decoder decodes them); it sets aside :attr:`FastCodec.margin` for those, more than any frame it
accepts can hold, so that it never accepts what the general decoder refuses.

Struct types named in ``memo`` (the Kademlia ``Node``: two in every message, twenty per target
in a lookup answer, naming the same peers again and again) are memoised: the codec keeps the
encoding of each distinct value it wrote (keyed by its field values, of the exact types the
generated code was given), and a decoder's cache each distinct encoding it read (keyed by its
bytes, with the value's fields and what decoding it charged). A hit writes or reads exactly
what the generic code would, and is charged the same; both tables are bounded, and only values
of at most ``MEMO_MAX_BYTES`` encoded, and decoded ones that ended with their terminating 0, are
remembered (``codegen``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from lumera_p2p.wire.gob.cache import BoundedTable, GobDecodeCache
from lumera_p2p.wire.gob.codegen import (
    DecoderSource,
    EncoderSource,
    Fallback,
    Source,
    StructDecoder,
    StructDecoders,
    Unsupported,
    static_depth,
    uint_bytes,
)
from lumera_p2p.wire.gob.costs import (
    DEFAULT_DECODE_LIMIT,
    DecodeLimit,
    max_charge_per_byte,
    value_cost,
)
from lumera_p2p.wire.gob.decoder import parse_definition
from lumera_p2p.wire.gob.encoder import GobEncoder
from lumera_p2p.wire.gob.ops import DEFAULT_MAX_DEPTH, to_int
from lumera_p2p.wire.gob.registry import InterfaceRegistry, Registered
from lumera_p2p.wire.gob.types import (
    GoInterface,
    GoMap,
    GoSlice,
    GoStruct,
    GoType,
    base_type,
)
from lumera_p2p.wire.gob.typetable import TypeTable
from lumera_p2p.wire.gob.wiretypes import BUILTIN_IDS, FIRST_USER_ID, T_FLOAT, WIRE_T, WireType
from lumera_p2p.wire.gob.writers import TOO_BIG

__all__ = ["FastCodec", "Shape"]

#: Learnt definition sequences kept per (type name, first definition): peers that share a
#: concrete type's id but number its parts differently.
_SHAPES_PER_KEY: Final = 4
#: The most definition bytes (and definitions) a learnt sequence may hold. A Go peer's for the
#: largest Kademlia type is a few hundred bytes; anything longer is left to the general decoder,
#: so a peer cannot fill the cache with large entries.
_MAX_SHAPE_BYTES: Final = 4096
_MAX_SHAPE_DEFINITIONS: Final = 16

Parts = tuple[bytes | bytearray | memoryview, ...]
Encoder = Callable[[Any], tuple[Parts, int]]


def _int_bytes(i: int) -> bytes:
    return uint_bytes(i << 1 if i >= 0 else (~i << 1) | 1)


def _message(content: bytes) -> bytes:
    return uint_bytes(len(content)) + content


def _read_uint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """A uint at ``pos`` inside ``data[:end]`` and the position after it."""
    if pos >= end:
        raise Fallback
    u = data[pos]
    if u < 0x80:
        return u, pos + 1
    n = 257 - u
    if n > 9 or pos + n > end:
        raise Fallback
    return int.from_bytes(data[pos + 1 : pos + n], "big"), pos + n


def _read_message(data: bytes, pos: int, stop: int) -> tuple[int, int]:
    """The gob message whose length is at ``pos``: (start, end) of its contents."""
    n, pos = _read_uint(data, pos, stop)
    if n > stop - pos or n >= TOO_BIG:
        raise Fallback
    return pos, pos + n


@dataclass(frozen=True, slots=True)
class Shape:
    """How a concrete type's definitions look in a stream.

    ``first`` is the first definition (``-id`` and the ``wireType``), which fills the rest of the
    gob message that names the type; ``middle`` the gob messages of the other definitions, with
    their lengths; ``type_id`` the bytes that start the value's message (its id).
    """

    first: bytes
    middle: bytes
    type_id: bytes


def _value_message(data: bytes, shape: Shape, end: int, stop: int) -> tuple[int, int] | None:
    """After definitions of ``shape`` that end at ``end + len(shape.middle)``: the value's
    message, from after its type id to its end, or ``None`` if it does not start with the id
    (another definition follows: ``shape.middle`` was only a prefix of this stream's)."""
    after = end + len(shape.middle)
    if after > stop:
        return None
    pos, end = _read_message(data, after, stop)
    if end - pos < len(shape.type_id) or not data.startswith(shape.type_id, pos):
        return None
    return pos + len(shape.type_id), end


@dataclass(frozen=True, slots=True)
class _Concrete:
    entry: Registered
    fresh: Shape
    fresh_prefix: bytes  # fresh.first + fresh.middle, compared in one go
    encode: Encoder
    decode: StructDecoder
    cost: int  # what the general decoder charges for the value at the top (costs.value_cost)
    definitions: int  # in a fresh stream


class FastCodec:
    """Generated encoders and decoders for ``root`` values carrying ``registry``'s types.

    ``root`` must have exactly one ``interface{}`` field, and the root and the registered types
    must be made of bools, ints, uints, strings, ``[]byte``, pointers, non-recursive structs
    (dataclasses), slices and maps; registered types that are not are left to the general codec.
    """

    __slots__ = (
        "_by_class",
        "_by_name",
        "_fixed",
        "_head",
        "_iface_attr",
        "_memo",
        "_outer",
        "_outer_wire",
        "_root",
        "depth",
        "margin",
    )

    def __init__(
        self,
        root: GoStruct,
        registry: InterfaceRegistry,
        first_id: int = FIRST_USER_ID,
        *,
        memo: Iterable[GoStruct] = (),
        memo_entries: int = 4096,
    ) -> None:
        ifaces = [i for i, f in enumerate(root.fields) if isinstance(f.type, GoInterface)]
        if len(ifaces) != 1:
            raise Unsupported(f"{root.go_string()} needs exactly one interface field")
        self._root = root
        k = ifaces[0]
        self._iface_attr = root.fields[k].attr

        table = TypeTable(first_id)
        outer = GobEncoder(table, registry).definitions(root)
        self._outer = b"".join(_message(_int_bytes(-tid) + wire) for tid, wire in outer)
        root_tid = _int_bytes(table.type_id(root))
        outer_wire: dict[int, WireType] = {}
        for t, tid in table.numbered():
            wire = table.wire_type(t)
            if wire is not None:
                outer_wire[tid] = wire
        self._outer_wire: Mapping[int, WireType] = MappingProxyType(outer_wire)

        memo = tuple(memo)
        structs = StructDecoders(memo)  # checks that each can be memoised
        #: Encoded values of the memoised struct types, by their field values (bounded).
        tables: Mapping[GoStruct, BoundedTable[Any, bytes]] = MappingProxyType(
            {s: BoundedTable(memo_entries) for s in memo}
        )
        self._memo = tables
        head = _head_encoder(root, k, root_tid, tables)
        by_class: dict[type, Encoder] = {
            type(None): _root_encoder(root, k, None, self._outer, head, tables)
        }
        by_name: dict[bytes, _Concrete] = {}
        depths = [1]  # an interface holding nothing registered still counts as nested
        for entry in registry.entries():
            try:
                concrete = _concrete(
                    root, k, entry, registry, first_id, self._outer, head, structs, tables
                )
                depths.append(static_depth(entry.type))
            except Unsupported:
                continue
            factory = entry.struct.factory
            assert isinstance(factory, type)  # the registry admits only classes
            by_class[factory] = concrete.encode
            by_name[entry.name] = concrete
        self._by_class: Mapping[type, Encoder] = MappingProxyType(by_class)
        self._by_name: Mapping[bytes, _Concrete] = MappingProxyType(by_name)
        # The general decoder's nesting counter: the interface counts one, its value the rest.
        self.depth = static_depth(root, max(depths))
        self._head = _head_decoder(root, root_tid, self._interface, structs)
        # The definitions of an accepted frame are the root's (fixed bytes) and the concrete
        # type's: fixed, or a learnt sequence of at most _MAX_SHAPE_BYTES bytes and
        # _MAX_SHAPE_DEFINITIONS definitions. Each definition is charged its value's cost, and
        # its elements and strings at most max_charge_per_byte a byte.
        concretes = by_name.values()
        def_bytes = len(self._outer) + max(
            [_MAX_SHAPE_BYTES, *(len(c.fresh_prefix) for c in concretes)]
        )
        def_count = len(outer) + max([_MAX_SHAPE_DEFINITIONS, *(c.definitions for c in concretes)])
        #: Estimated bytes set aside for what the general decoder charges for the definitions.
        self.margin = def_bytes * max_charge_per_byte(WIRE_T) + def_count * value_cost(WIRE_T)
        self._fixed = self.margin + value_cost(root)  # the root is charged as it starts

    # ---- encoding ----------------------------------------------------------------------

    def memoised(self) -> int:
        """How many encoded values of the memoised struct types this codec holds now."""
        return sum(len(table) for table in self._memo.values())

    def encode(self, value: Any) -> tuple[Parts, int] | None:
        """The gob stream a fresh encoder writes for ``value`` (a root struct value), as chunks
        to join and their total length; ``None`` if the general encoder must do it (including
        every value it would refuse)."""
        try:
            fn = self._by_class.get(type(getattr(value, self._iface_attr)))
            return None if fn is None else fn(value)
        except Exception:
            return None

    # ---- decoding ----------------------------------------------------------------------

    def decode(
        self,
        data: bytes,
        start: int = 0,
        stop: int | None = None,
        max_depth: int = DEFAULT_MAX_DEPTH,
        cache: GobDecodeCache | None = None,
        limit: DecodeLimit = DEFAULT_DECODE_LIMIT,
    ) -> Any:
        """The root value in the gob stream ``data[start:stop]``, or ``None`` if the stream is
        not one this codec recognises (the general decoder then decides). ``max_depth`` is the
        general decoder's nesting cap: below :attr:`depth` this codec leaves every stream to it.
        ``cache`` holds what it learns of other processes' type numbering. ``limit`` is the
        general decoder's allowance: a value that may be over it is left to that decoder."""
        stop = len(data) if stop is None else min(stop, len(data))
        start = max(0, min(start, stop))
        if max_depth < self.depth or not data.startswith(self._outer, start):
            return None
        if start + len(self._outer) > stop:
            return None
        # limit.allowance(stop - start), less what the general decoder charges besides values
        left = limit.floor + limit.ratio * (stop - start) - self._fixed
        if left < 0:
            return None
        try:
            return self._head(data, start + len(self._outer), stop, cache, left)
        except Fallback:
            return None

    def _interface(
        self, data: bytes, pos: int, end: int, stop: int, cache: GobDecodeCache | None, left: int
    ) -> tuple[Any, int, int, int]:
        """The interface field: name, the concrete type's definitions, then its value (in a
        gob message of its own); returns the value, where the root continues and what is left
        of the allowance."""
        if pos >= end:
            raise Fallback
        nr = data[pos]
        if nr >= 0x80:
            raise Fallback
        pos += 1
        if not nr:
            return None, pos, end, left  # a nil interface sent explicitly
        if nr > end - pos:
            raise Fallback
        concrete = self._by_name.get(data[pos : pos + nr])
        if concrete is None:
            raise Fallback
        pos += nr
        shape = concrete.fresh
        found = None
        if end - pos == len(shape.first) and data.startswith(concrete.fresh_prefix, pos):
            found = _value_message(data, shape, end, stop)
        if found is None:
            found = self._learnt(concrete, data, pos, end, stop, cache)
        pos, end = found
        _, pos = _read_uint(data, pos, end)  # the value's byte count (Go ignores it too)
        left -= concrete.cost
        if left < 0:
            raise Fallback
        memo = cache.elements if cache is not None else None
        value, pos, left = concrete.decode(data, pos, end, left, memo)
        return value, pos, end, left

    def _learnt(
        self,
        concrete: _Concrete,
        data: bytes,
        pos: int,
        end: int,
        stop: int,
        cache: GobDecodeCache | None,
    ) -> tuple[int, int]:
        """Where the value's message starts and ends, after definitions seen before from this
        kind of peer, or learnt now."""
        if cache is None or end - pos > _MAX_SHAPE_BYTES:
            raise Fallback
        key = (concrete.entry.name, data[pos:end])
        known: tuple[Shape, ...] = cache.shapes.get(key) or ()
        for shape in known:
            if data.startswith(shape.middle, end):
                found = _value_message(data, shape, end, stop)
                if found is not None:
                    return found
        shape = self._learn(concrete, data, pos, end, stop)
        cache.shapes.put(key, (*known, shape)[-_SHAPES_PER_KEY:])
        found = _value_message(data, shape, end, stop)
        if found is None:  # cannot happen: the shape was read from these very bytes
            raise Fallback
        return found

    def _learn(self, concrete: _Concrete, data: bytes, pos: int, end: int, stop: int) -> Shape:
        """Read the definitions from ``pos``; a Shape if they define the local type exactly.

        Mirrors the general decoder's type sequence, but accepts only what a Go encoder writes:
        each definition fills its gob message, ids are new and at least ``FIRST_USER_ID``.
        """
        defs = dict(self._outer_wire)
        start, msg_end = pos, end
        for _ in range(_MAX_SHAPE_DEFINITIONS):
            if msg_end - start > _MAX_SHAPE_BYTES:
                raise Fallback
            u, pos = _read_uint(data, pos, msg_end)
            tid = to_int(u)
            if not -(1 << 31) < tid <= -FIRST_USER_ID or -tid in defs:
                raise Fallback  # not a definition Go would accept without a fuss
            parsed = parse_definition(data, pos, msg_end)
            if parsed is None or parsed[1] != msg_end:
                raise Fallback
            defs[-tid] = parsed[0]
            next_start, next_end = _read_message(data, msg_end, stop)
            u, after_id = _read_uint(data, next_start, next_end)
            if not u & 1:  # not another definition: the value's message
                break
            pos, msg_end = next_start, next_end
        else:
            raise Fallback
        cid = to_int(u)
        if cid >= 1 << 31 or not _defines(concrete.entry.type, cid, defs, set()):
            raise Fallback
        return Shape(data[start:end], data[end:msg_end], data[next_start:after_id])


def _defines(local: GoType, wid: int, defs: Mapping[int, WireType], seen: set[Any]) -> bool:
    """Whether wire type ``wid`` is exactly ``local`` (same fields, same order, same kinds), so
    that the generated decoder reads its values as the general decoder would."""
    base = base_type(local)
    builtin = BUILTIN_IDS.get(type(base))
    if builtin is not None:
        return wid == builtin and builtin != T_FLOAT and not isinstance(base, GoInterface)
    if (base, wid) in seen:
        return True
    seen.add((base, wid))
    wire = defs.get(wid)
    if wire is None:
        return False
    kinds = (wire.array_t, wire.slice_t, wire.struct_t, wire.map_t)
    if sum(k is not None for k in kinds) != 1 or wire.is_marshaler:
        return False
    if isinstance(base, GoStruct):
        st = wire.struct_t
        return (
            st is not None
            and len(st.fields) == len(base.fields)
            and all(
                wf.name == lf.name and _defines(lf.type, wf.id, defs, seen)
                for wf, lf in zip(st.fields, base.fields, strict=True)
            )
        )
    if isinstance(base, GoSlice):
        sl = wire.slice_t
        return sl is not None and _defines(base.elem, sl.elem, defs, seen)
    if isinstance(base, GoMap):
        m = wire.map_t
        return (
            m is not None
            and _defines(base.key, m.key, defs, seen)
            and _defines(base.elem, m.elem, defs, seen)
        )
    return False


# ---- generation ---------------------------------------------------------------------------


def _concrete(
    root: GoStruct,
    k: int,
    entry: Registered,
    registry: InterfaceRegistry,
    first_id: int,
    outer: bytes,
    head: Callable[[Any], tuple[bytearray, int]],
    structs: StructDecoders,
    memo: Mapping[GoStruct, BoundedTable[Any, bytes]],
) -> _Concrete:
    """The fixed bytes and generated functions for one registered type."""
    table = TypeTable(first_id)
    encoder = GobEncoder(table, registry)
    encoder.definitions(root)
    inner = encoder.definitions(entry.type)
    if not inner:
        raise Unsupported(f"{entry.name!r} is defined with the root")  # no split to reproduce
    (first_tid, first_wire), rest = inner[0], inner[1:]
    fresh = Shape(
        first=_int_bytes(-first_tid) + first_wire,
        middle=b"".join(_message(_int_bytes(-tid) + wire) for tid, wire in rest),
        type_id=_int_bytes(table.type_id(entry.type)),
    )
    named = uint_bytes(len(entry.name)) + entry.name
    encode = _root_encoder(root, k, (entry.struct, named + fresh.first, fresh), outer, head, memo)
    decode = structs.get(entry.struct)
    cost = value_cost(entry.type)
    return _Concrete(entry, fresh, fresh.first + fresh.middle, encode, decode, cost, len(inner))


def _head_encoder(
    root: GoStruct, k: int, root_tid: bytes, memo: Mapping[GoStruct, BoundedTable[Any, bytes]]
) -> Callable[[Any], tuple[bytearray, int]]:
    """Starts the root value's message: its type id and the fields before the interface;
    returns the buffer and the number of the last field written."""
    src = Source()
    src.line(f"h = bytearray({src.const(root_tid, 'T')})")
    src.line("last = -1")
    EncoderSource(src, memo).fields(root, "v", "h", None, "last", range(k))
    src.line("return h, last")
    return src.function("encode_head", "v")


def _root_encoder(
    root: GoStruct,
    k: int,
    concrete: tuple[GoStruct, bytes, Shape] | None,
    outer: bytes,
    head: Callable[[Any], tuple[bytearray, int]],
    memo: Mapping[GoStruct, BoundedTable[Any, bytes]],
) -> Encoder:
    """The encoder of root values whose interface holds ``concrete`` (``None``: holds nil).

    Go writes the root's fields up to the interface (``head``), the type's name and first
    definition in one gob message, the other definitions one per message, then the value (with
    its id and byte count) and the rest of the root in a last message.
    """
    src = Source()
    enc = EncoderSource(src, memo)
    ns = src.const
    src.line(f"h, last = {ns(head, 'H')}(v)")
    src.line(f"x = v.{root.fields[k].attr}")
    outer_name = ns(outer, "O")
    if concrete is None:
        src.line("if x is not None: raise FB")
        enc.fields(root, "v", "h", None, "last", range(k + 1, len(root.fields)))
        src.line("h.append(0)")
        src.line("lh = UB(len(h))")
        src.line(f"return ({outer_name}, lh, h), {len(outer)} + len(lh) + len(h)")
        return src.function("encode_nil", "v")
    struct, named_first, shape = concrete
    src.line(f"h.append({k} - last)")
    src.line(f"last = {k}")
    src.line(f"h += {ns(named_first, 'N')}")
    src.line("cur = bytearray()")
    src.line("parts = []")
    enc.struct(struct, "x", "cur", "parts")
    src.line("n = len(cur)")
    with src.block("for p in parts:"):
        src.line("n += len(p)")
    src.line(f"if n >= {TOO_BIG}: raise FB")  # the general encoder says "message too big"
    src.line(f"t = bytearray({ns(shape.type_id, 'I')})")
    enc.uint("t", "n")
    src.line("r = bytearray()")
    enc.fields(root, "v", "r", None, "last", range(k + 1, len(root.fields)))
    src.line("r.append(0)")
    src.line("n += len(t) + len(r)")
    src.line(f"if n >= {TOO_BIG}: raise FB")
    src.line("lh = UB(len(h))")
    src.line("lt = UB(n)")
    fixed = len(outer) + len(shape.middle)
    src.line(
        f"return ({outer_name}, lh, h, {ns(shape.middle, 'M')}, lt, t, *parts, cur, r), "
        f"{fixed} + len(lh) + len(h) + len(lt) + n"
    )
    return src.function("encode_" + struct.name, "v")


def _head_decoder(
    root: GoStruct,
    root_tid: bytes,
    interface: Callable[
        [bytes, int, int, int, GobDecodeCache | None, int], tuple[Any, int, int, int]
    ],
    structs: StructDecoders,
) -> Callable[[bytes, int, int, GobDecodeCache | None, int], Any]:
    """The decoder of the root value's message (from after the root's definitions)."""
    src = Source()
    dec = DecoderSource(src, structs)
    src.line("memo = cache.elements if cache is not None else None")
    src.line("end = stop")
    length = src.var("length")
    dec.uint(length)
    src.line(f"if {length} > stop - pos or {length} >= {TOO_BIG}: raise FB")
    src.line(f"end = pos + {length}")
    src.line(f"if {length} < {len(root_tid)}: raise FB")
    src.line(f"if not data.startswith({src.const(root_tid, 'T')}, pos): raise FB")
    src.line(f"pos += {len(root_tid)}")
    iface = src.const(interface, "IFACE")

    def hook(target: str) -> None:
        src.line(f"{target}, pos, end, left = {iface}(data, pos, end, stop, cache, left)")

    dec.struct(root, "value", interface=hook)
    src.line("return value")  # every charge was checked where it was made
    return src.function("decode_" + root.name, "data, pos, stop, cache, left")
