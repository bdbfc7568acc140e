"""The decoder compiler: a stream's received type definitions, and the engines built from them.

Go's decoder compiles, per (wire type id, local type), an engine that maps each wire field to an
op for the matching local field, or to an op that skips it (``decode.go``: ``compileDec``,
``decOpFor``, ``decIgnoreOpFor``, ``compatibleType``). The result, and every error it can give,
depends only on the definitions the stream has sent and on the local type, which is what lets a
:class:`~lumera_p2p.wire.gob.cache.GobDecodeCache` share engines between streams.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from lumera_p2p.wire.gob.cache import GobDecodeCache
from lumera_p2p.wire.gob.costs import element_cost, entry_cost, is_recursive, value_cost
from lumera_p2p.wire.gob.ops import (
    DEFAULT_MAX_DEPTH,
    ERR_BAD_TYPE,
    IGNORE_PRIMITIVE,
    EngineRef,
    Op,
    OpRef,
    SingleEngine,
    StructEngine,
    err,
    ignore_gob_decoder,
    ignore_interface,
    make_array_op,
    make_ignore_map,
    make_ignore_seq,
    make_ignore_struct,
    make_map_op,
    make_slice_op,
    make_struct_op,
    op_bytes,
    op_interface,
    primitive_op,
)
from lumera_p2p.wire.gob.types import (
    GoArray,
    GoBytes,
    GoInterface,
    GoMap,
    GoSlice,
    GoStruct,
    GoType,
    base_type,
)
from lumera_p2p.wire.gob.typetable import BUILTIN_WIRE
from lumera_p2p.wire.gob.wiretypes import (
    BUILTIN_IDS,
    FIRST_USER_ID,
    T_BYTES,
    T_COMPLEX,
    T_INTERFACE,
    T_WIRE_TYPE,
    WIRE_T,
    WireType,
    wire_refs,
)

__all__ = ["WIRE_ENGINES", "Compiler"]


def _none_factory(**_: Any) -> None:
    return None


_EMPTY_STRUCT: Final = GoStruct("", "", (), _none_factory)
_TYPE_NAMES: Final = MappingProxyType(
    {1: "bool", 2: "int", 3: "uint", 4: "float", 5: "bytes", 6: "string"}
)


class Compiler:
    """The definitions one stream has received and the engines compiled for them.

    ``engines`` seeds the per-stream engine table (the decoder passes :data:`WIRE_ENGINES`, the
    engine for type definitions themselves, which depends on builtin ids only).
    """

    __slots__ = (
        "_costs",
        "_engines",
        "_ignorers",
        "cache",
        "depth",
        "keys",
        "max_depth",
        "wire_types",
    )

    def __init__(
        self,
        max_depth: int,
        cache: GobDecodeCache | None = None,
        engines: Mapping[tuple[GoType, int], EngineRef] | None = None,
    ) -> None:
        self.max_depth = max_depth
        self.cache = cache
        self.depth = 0  # compile nesting, capped at max_depth like Go's
        self.wire_types: dict[int, WireType] = {}
        self.keys: dict[int, tuple[Any, ...]] = {}
        self._engines: dict[tuple[GoType, int], EngineRef] = dict(engines or {})
        self._ignorers: dict[int, EngineRef] = {}
        self._costs: dict[GoType, int] = {}  # value_cost by local type, for this stream

    def _cost(self, local: GoType) -> int:
        cost = self._costs.get(local)
        if cost is None:
            cost = self._costs[local] = value_cost(local)
        return cost

    def add(self, tid: int, wire: WireType, key: tuple[Any, ...]) -> None:
        """Record the definition of ``tid`` (``key`` is its :func:`wire_key`)."""
        self.wire_types[tid] = wire
        self.keys[tid] = key

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > self.max_depth:
            raise err("gob: invalid nesting depth")

    def dec_engine(self, wire_id: int, local: GoType) -> EngineRef:
        """getDecEnginePtr: the engine decoding wire type ``wire_id`` into ``local``."""
        base = base_type(local)
        key = (base, wire_id)
        ref = self._engines.get(key)
        if ref is not None:
            return ref
        cache = self.cache
        ckey: tuple[Any, ...] = ()
        if cache is not None:
            ckey = (base, wire_id, self.max_depth, self._signature(wire_id))
            ref = cache.engines.get(ckey)
            if ref is not None:
                self._engines[key] = ref
                return ref
        self._enter()
        ref = EngineRef()
        self._engines[key] = ref
        try:
            ref.engine = self._compile_dec(wire_id, base)
        except BaseException:
            del self._engines[key]
            raise
        self.depth -= 1
        if cache is not None:
            cache.engines.put(ckey, ref)
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
            sig.append((tid, self.keys.get(tid)))
            wire = self.wire_types.get(tid)
            if wire is not None:
                stack.extend(wire_refs(wire))
        return tuple(sig)

    def _builtin_or_user(self, wire_id: int) -> WireType | None:
        if 0 <= wire_id < FIRST_USER_ID:
            return BUILTIN_WIRE.get(wire_id)
        return self.wire_types.get(wire_id)

    def _compile_dec(self, wire_id: int, base: GoType) -> StructEngine | SingleEngine:
        if not isinstance(base, GoStruct):
            return self._compile_single(wire_id, base)
        if 0 <= wire_id < FIRST_USER_ID and wire_id in BUILTIN_WIRE:
            ws = BUILTIN_WIRE[wire_id].struct_t
        else:
            wire = self.wire_types.get(wire_id)
            if wire is None:
                raise err(ERR_BAD_TYPE)
            ws = wire.struct_t
        if ws is None:
            raise err(
                f"gob: type mismatch in decoder: want struct type {base.go_string()}; "
                "got non-struct"
            )
        instrs: list[tuple[Op, str | None]] = []
        num = 0
        seen: dict[GoType, Op] = {}  # shared by all fields, as in Go (see _dec_op)
        for wf in ws.fields:
            if not wf.name:
                raise err(f"gob: empty name for remote field of type {ws.common.name}")
            lf = base.field(wf.name)
            if lf is None or not wf.name[:1].isupper():
                ref = self._ignore_op(wf.id, {})
                assert ref.op is not None
                instrs.append((ref.op, None))
                continue
            if not self._compatible(lf.type, wf.id, {}):
                raise err(
                    f"gob: wrong type ({lf.type.go_string()}) for received field "
                    f"{ws.common.name}.{wf.name}"
                )
            instrs.append((self._dec_op(wf.id, lf.type, lf.name, seen), lf.attr))
            num += 1
        return StructEngine(instrs, num, base.factory, self._cost(base))

    def _compile_single(self, wire_id: int, local: GoType) -> SingleEngine:
        if not self._compatible(local, wire_id, {}):
            remote = self.type_string(wire_id)
            if isinstance(base_type(local), GoInterface):
                raise err(
                    f"gob: local interface type {local.go_string()} can only be decoded from "
                    f"remote interface type; received concrete type {remote}"
                )
            raise err(
                f"gob: decoding into local type {local.go_string()}, received remote type {remote}"
            )
        op = self._dec_op(wire_id, local, local.go_string(), {})
        return SingleEngine(op, self._cost(local))

    def type_string(self, wire_id: int) -> str:
        """How Go names a wire type in error messages."""
        if wire_id in _TYPE_NAMES:
            return _TYPE_NAMES[wire_id]
        if wire_id == T_COMPLEX:
            return "complex"
        if wire_id == T_INTERFACE:
            return "interface"
        wire = self._builtin_or_user(wire_id)
        return wire.name if wire is not None else "unknown type"

    def _dec_op(self, wire_id: int, local: GoType, name: str, seen: dict[GoType, Op]) -> Op:
        """decOpFor. ``seen`` is keyed by the local type only, so two fields of the same local
        composite type share the op compiled for the first one's wire type, exactly as Go does.
        """
        hit = seen.get(local)
        if hit is not None:
            return hit
        base = base_type(local)
        prim = primitive_op(base, name)
        if prim is not None:
            return prim
        op: Op
        if isinstance(base, GoBytes):
            op = op_bytes
        elif isinstance(base, GoArray):
            wire = self.wire_types[wire_id]
            assert wire.array_t is not None
            elem = self._dec_op(wire.array_t.elem, base.elem, "element of " + name, seen)
            op = make_array_op(elem, base.length, element_cost(base.elem))
        elif isinstance(base, GoMap):
            wire = self.wire_types[wire_id]
            assert wire.map_t is not None
            key = self._dec_op(wire.map_t.key, base.key, "key of " + name, seen)
            elem = self._dec_op(wire.map_t.elem, base.elem, "element of " + name, seen)
            op = make_map_op(key, elem, entry_cost(base))
        elif isinstance(base, GoSlice):
            sw = self._builtin_or_user(wire_id)
            assert sw is not None and sw.slice_t is not None
            elem = self._dec_op(sw.slice_t.elem, base.elem, "element of " + name, seen)
            op = make_slice_op(elem, element_cost(base.elem))
        elif isinstance(base, GoStruct):
            cost = self._cost(base) if is_recursive(base) else 0
            op = make_struct_op(self.dec_engine(wire_id, base), cost)
        elif isinstance(base, GoInterface):
            op = op_interface
        else:
            raise err(f"gob: decode can't handle type {local.go_string()}")
        seen[local] = op
        return op

    def _compatible(self, local: GoType, wire_id: int, in_progress: dict[GoType, int]) -> bool:
        """compatibleType: can a value of wire type ``wire_id`` go into ``local``?"""
        if local in in_progress:
            return in_progress[local] == wire_id
        in_progress[local] = wire_id
        wire = self.wire_types.get(wire_id)
        if wire is not None and wire.is_marshaler:
            return False  # no local type implements a gob/binary/text decoder
        base = base_type(local)
        if isinstance(base, GoStruct):
            return True
        if isinstance(base, GoBytes):
            return wire_id == T_BYTES
        builtin = BUILTIN_IDS.get(type(base))
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
            return self._compatible(base_type(base.elem), sw.slice_t.elem, in_progress)
        return False

    def _ignore_op(self, wire_id: int, in_progress: dict[int, OpRef]) -> OpRef:
        """decIgnoreOpFor: how to skip a value of a wire type the local side does not have."""
        self._enter()
        try:
            hit = in_progress.get(wire_id)
            if hit is not None:
                return hit
            prim = IGNORE_PRIMITIVE.get(wire_id)
            if prim is not None:
                return prim
            ref = OpRef()
            in_progress[wire_id] = ref
            if wire_id == T_INTERFACE:
                ref.op = ignore_interface
                return ref
            wire = self.wire_types.get(wire_id)
            if wire is None:
                raise err(f"gob: bad data: undefined type {self.type_string(wire_id)}")
            if wire.array_t is not None:
                elem = self._ignore_op(wire.array_t.elem, in_progress)
                ref.op = make_ignore_seq(elem, wire.array_t.len)
            elif wire.map_t is not None:
                key = self._ignore_op(wire.map_t.key, in_progress)
                val = self._ignore_op(wire.map_t.elem, in_progress)
                ref.op = make_ignore_map(key, val)
            elif wire.slice_t is not None:
                ref.op = make_ignore_seq(self._ignore_op(wire.slice_t.elem, in_progress), -1)
            elif wire.struct_t is not None:
                ref.op = make_ignore_struct(self._ignore_engine(wire_id))
            elif wire.is_marshaler:
                ref.op = ignore_gob_decoder
            else:
                raise err(f"gob: bad data: ignore can't handle type {self.type_string(wire_id)}")
            return ref
        finally:
            self.depth -= 1

    def _ignore_engine(self, wire_id: int) -> EngineRef:
        ref = self._ignorers.get(wire_id)
        if ref is None:
            ref = EngineRef()
            self._ignorers[wire_id] = ref
            try:
                ref.engine = self._compile_dec(wire_id, _EMPTY_STRUCT)
            except BaseException:
                del self._ignorers[wire_id]
                raise
        return ref


def _compile_wire_engines() -> Mapping[tuple[GoType, int], EngineRef]:
    """The decoder for type definitions depends only on builtin ids, so it is built once."""
    ref = Compiler(max_depth=DEFAULT_MAX_DEPTH).dec_engine(T_WIRE_TYPE, WIRE_T)
    return MappingProxyType({(WIRE_T, T_WIRE_TYPE): ref})


WIRE_ENGINES: Final = _compile_wire_engines()
"""The seed of every stream's engine table: how to decode a ``wireType`` (id 16)."""
