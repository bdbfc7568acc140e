"""Source generation: straight-line Python for encoding and decoding one value of a known type.

The general codec calls one function per field (a writer, or a decoding op), which is most of
its cost on small messages. For a fixed set of types, :class:`EncoderSource` and
:class:`DecoderSource` write out the same steps as the body of one function instead (structs,
slices and maps inlined, every field's check and write in place) and compile it with
``exec``. The text is built only from the type descriptors and constants bound by name, never
from data, so what runs is exactly what the descriptors say.

The generated code does *exactly* what the general codec does where that succeeds; anything
else (an out-of-range value, a malformed or unusual input) raises :class:`Fallback`, and the
caller then runs the general codec, whose verdict and error text are the reference. Types the
generator does not handle (floats, arrays, interfaces below the top level, recursive structs)
raise :class:`Unsupported` while generating.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any, Final

from lumera_p2p.wire.gob.cache import BoundedTable
from lumera_p2p.wire.gob.costs import element_cost, entry_cost
from lumera_p2p.wire.gob.types import (
    GoBool,
    GoBytes,
    GoField,
    GoInt,
    GoInterface,
    GoMap,
    GoPtr,
    GoSlice,
    GoString,
    GoStruct,
    GoType,
    GoUint,
)
from lumera_p2p.wire.gob.writers import BIG_CHUNK, INT64_SIGN, ZK_FALSY, ZK_NONE, zero_kind

__all__ = [
    "MEMO_KEY_BYTES",
    "MEMO_MAX_BYTES",
    "DecoderSource",
    "EncoderSource",
    "Fallback",
    "Source",
    "StructDecoder",
    "StructDecoders",
    "Unsupported",
    "memo_fields",
    "static_depth",
    "uint_bytes",
]


class Fallback(Exception):
    """Raised by generated code: this input is for the general codec."""


class Unsupported(Exception):
    """The generator cannot specialise this type (the general codec handles it)."""


_SMALL_UINTS: Final = tuple(bytes((i,)) for i in range(0x80))
_BYTE_UINTS: Final = tuple(bytes((0xFF, i)) for i in range(0x100))


def uint_bytes(u: int) -> bytes:
    """gob's encoding of the unsigned integer ``u`` (below 2**64)."""
    # Message lengths, ports and counts: one byte, or a length byte and one or two bytes.
    if u < 0x80:
        return _SMALL_UINTS[u]
    if u < 0x100:
        return _BYTE_UINTS[u]
    if u < 0x10000:
        return (0xFE0000 | u).to_bytes(3, "big")
    n = (u.bit_length() + 7) >> 3
    return bytes((256 - n,)) + u.to_bytes(n, "big")


#: A memoised struct is looked up by this many of its first bytes (a node's ID and host).
MEMO_KEY_BYTES: Final = 64
#: Memoised structs longer than this, encoded, are not remembered (a table entry stays small).
MEMO_MAX_BYTES: Final = 512


def memo_fields(s: GoStruct) -> list[type]:
    """The exact Python type of each field of a struct that may be memoised (its encoding is
    then a function of its field values alone); ``Unsupported`` if it has other fields."""
    kinds: list[type] = []
    for f in s.fields:
        t = f.type
        if isinstance(t, GoBool):
            kinds.append(bool)
        elif isinstance(t, GoInt | GoUint):
            kinds.append(int)
        elif isinstance(t, GoString):
            kinds.append(str)
        elif isinstance(t, GoBytes):
            kinds.append(bytes)
        else:
            raise Unsupported(f"{s.go_string()}.{f.name}: only scalar structs are memoised")
    return kinds


class _Missing:
    """Marks a struct field not seen on the wire whose default comes from a factory."""

    __slots__ = ()


_MISSING: Final = _Missing()


class Source:
    """Lines of one Python function, the constants it refers to, and fresh local names."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._level = 1
        self._count = 0
        self.namespace: dict[str, Any] = {
            "FB": Fallback,
            "MISSING": _MISSING,
            "UB": uint_bytes,
            "bytearray": bytearray,
            "NEW": object.__new__,
            "SZ": sys.getsizeof,
        }

    def var(self, stem: str) -> str:
        """A local name not used before in this function."""
        self._count += 1
        return f"{stem}_{self._count}"

    def const(self, value: object, stem: str = "K") -> str:
        """A global name bound to ``value`` in the function's namespace."""
        for name, bound in self.namespace.items():
            if bound is value and name.startswith(stem.upper() + "_"):
                return name
        self._count += 1
        name = f"{stem.upper()}_{self._count}"
        self.namespace[name] = value
        return name

    def line(self, text: str) -> None:
        """Append one line at the current indentation."""
        self._lines.append("    " * self._level + text)

    @contextmanager
    def block(self, header: str) -> Iterator[None]:
        """A compound statement: ``header`` and the lines emitted inside the ``with``."""
        self.line(header)
        self._level += 1
        try:
            yield
        finally:
            self._level -= 1

    def text(self, name: str, params: str) -> str:
        """The function's source."""
        return f"def {name}({params}):\n" + "\n".join(self._lines) + "\n"

    def function(self, name: str, params: str) -> Callable[..., Any]:
        """Compile the function and return it."""
        code = compile(self.text(name, params), f"<gob codec {name}>", "exec")
        exec(code, self.namespace)
        fn: Callable[..., Any] = self.namespace[name]
        return fn


def _struct_class(s: GoStruct) -> tuple[type, list[dataclasses.Field[Any]]]:
    """The dataclass behind ``s`` and its fields in ``s``'s order (positional construction)."""
    cls = s.factory
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise Unsupported(f"{s.go_string()}: the factory is not a dataclass")
    by_name = {f.name: f for f in dataclasses.fields(cls) if f.init}
    if [f.attr for f in s.fields] != list(by_name):
        raise Unsupported(f"{s.go_string()}: Go fields and dataclass fields differ")
    return cls, [by_name[f.attr] for f in s.fields]


def static_depth(
    t: GoType, interface_depth: int | None = None, stack: tuple[GoStruct, ...] = ()
) -> int:
    """How deep the general decoder nests at most while decoding a value of ``t`` (its
    ``depth`` counter: one per struct, slice, map and interface); ``interface_depth`` is that of
    an interface field's contents (``None``: no interface may occur)."""
    if isinstance(t, GoPtr):
        return static_depth(t.elem, interface_depth, stack)
    if isinstance(t, GoStruct):
        if t in stack:
            raise Unsupported(f"recursive struct {t.go_string()}")
        inner = (static_depth(f.type, interface_depth, (*stack, t)) for f in t.fields)
        return 1 + max(inner, default=0)
    if isinstance(t, GoSlice):
        return 1 + static_depth(t.elem, interface_depth, stack)
    if isinstance(t, GoMap):
        key = static_depth(t.key, None, stack)
        return 1 + max(key, static_depth(t.elem, interface_depth, stack))
    if isinstance(t, GoBool | GoInt | GoUint | GoString | GoBytes):
        return 0
    if isinstance(t, GoInterface) and interface_depth is not None:
        return 1 + interface_depth
    raise Unsupported(f"no specialised codec for {t.go_string()}")


# ---- encoding -----------------------------------------------------------------------------


class EncoderSource:
    """Writes code that appends the gob encoding of values to a ``bytearray`` local.

    With ``chunked``, a large ``[]byte`` is not copied: the current buffer and the value are
    appended by reference to the local list named by ``parts`` and a new buffer starts, so a
    frame of big values is copied once, when it is joined.

    Values of the struct types in ``memo`` are looked up in its tables by their field values,
    and their encoding remembered there (:meth:`struct`).
    """

    def __init__(
        self, src: Source, memo: Mapping[GoStruct, BoundedTable[Any, bytes]] | None = None
    ) -> None:
        self.src = src
        self.memo: Mapping[GoStruct, BoundedTable[Any, bytes]] = memo or {}

    def uint(self, buf: str, u: str) -> None:
        """Append the unsigned integer held in local ``u``."""
        src = self.src
        with src.block(f"if {u} < 0x80:"):
            src.line(f"{buf}.append({u})")
        with src.block("else:"):
            src.line(f"{buf} += UB({u})")

    def raw(self, buf: str, x: str, parts: str | None) -> None:
        """Append the counted byte string held in local ``x``."""
        src = self.src
        n = src.var("n")
        src.line(f"{n} = len({x})")
        with src.block(f"if {n} < 0x80:"):
            src.line(f"{buf}.append({n})")
            src.line(f"{buf} += {x}")
        with src.block("else:"):
            src.line(f"{buf} += UB({n})")
            if parts is None:
                src.line(f"{buf} += {x}")
                return
            # The join that ends the encoding happens before the caller gets control back, so a
            # mutable buffer is as safe to keep by reference as an immutable one.
            with src.block(f"if {n} >= {BIG_CHUNK}:"):
                src.line(f"{parts}.append({buf})")
                src.line(f"{parts}.append({x})")
                src.line(f"{buf} = bytearray()")
            with src.block("else:"):
                src.line(f"{buf} += {x}")

    def value(
        self, t: GoType, x: str, buf: str, parts: str | None, stack: tuple[GoStruct, ...] = ()
    ) -> None:
        """Write the value held in local ``x`` unconditionally (as a slice element is)."""
        src = self.src
        if isinstance(t, GoBool):
            src.line(f"{buf}.append(1 if {x} else 0)")
        elif isinstance(t, GoInt):
            lo, hi = -(1 << (t.bits - 1)), 1 << (t.bits - 1)
            src.line(f"if not {lo} <= {x} < {hi}: raise FB")
            u = src.var("u")
            src.line(f"{u} = {x} << 1 if {x} >= 0 else (~{x} << 1) | 1")
            self.uint(buf, u)
        elif isinstance(t, GoUint):
            src.line(f"if not 0 <= {x} < {1 << t.bits}: raise FB")
            self.uint(buf, x)
        elif isinstance(t, GoString):
            s = src.var("s")
            src.line(f"{s} = {x}.encode('utf-8', 'surrogateescape')")
            self.raw(buf, s, parts)
        elif isinstance(t, GoBytes):
            self.raw(buf, x, parts)
        elif isinstance(t, GoPtr):
            src.line(f"if {x} is None: raise FB")  # a nil element
            self.value(t.elem, x, buf, parts, stack)
        elif isinstance(t, GoStruct):
            self.struct(t, x, buf, parts, stack)
        elif isinstance(t, GoSlice):
            n = src.var("n")
            src.line(f"{n} = len({x})")
            self.uint(buf, n)
            item = src.var("item")
            with src.block(f"for {item} in {x}:"):
                self.value(t.elem, item, buf, parts, stack)
        elif isinstance(t, GoMap):
            with src.block(f"if {x} is None:"):
                src.line(f"{buf}.append(0)")  # a nil map element is sent as an empty map
            with src.block("else:"):
                n = src.var("n")
                src.line(f"{n} = len({x})")
                self.uint(buf, n)
                k, v = src.var("k"), src.var("v")
                with src.block(f"for {k}, {v} in {x}.items():"):
                    self.value(t.key, k, buf, parts, stack)
                    self.value(t.elem, v, buf, parts, stack)
        else:
            raise Unsupported(f"no specialised encoder for {t.go_string()}")

    def fields(
        self,
        s: GoStruct,
        v: str,
        buf: str,
        parts: str | None,
        last: str,
        indices: range,
        stack: tuple[GoStruct, ...] = (),
    ) -> None:
        """Write the fields ``indices`` of the struct in local ``v`` (delta from local ``last``),
        leaving out zero ones as Go does."""
        src = self.src
        for idx in indices:
            f = s.fields[idx]
            x = src.var("x")
            src.line(f"{x} = {v}.{f.attr}")
            zk = zero_kind(f.type)
            guard = (
                src.block(f"if {x}:")
                if zk == ZK_FALSY
                else src.block(f"if {x} is not None:")
                if zk == ZK_NONE
                else nullcontext()  # struct fields are sent even when zero
            )
            with guard:
                src.line(f"{buf}.append({idx} - {last})")
                src.line(f"{last} = {idx}")
                self.value(f.type, x, buf, parts, stack)

    def struct(
        self, s: GoStruct, v: str, buf: str, parts: str | None, stack: tuple[GoStruct, ...] = ()
    ) -> None:
        """Write the struct in local ``v``: its non-zero fields, then the terminating 0.

        A struct type in :attr:`memo` (scalar fields only: :func:`memo_fields`) is looked up
        there by its field values first; a miss is encoded and remembered. Some equal values of
        other types are not the same input (``1.0 == 1``, but a float is not written; a ``str``
        subclass may encode differently), so a hit also requires int and string fields to be of
        the exact type the generic code was given when it remembered; a value equal to a
        ``bytes`` (a hashable memoryview, a subclass) is written as it is, and a bool by its
        truth, which equal values share.
        """
        if s in stack:
            raise Unsupported(f"recursive struct {s.go_string()}")
        table = self.memo.get(s)
        if table is None:
            self._struct(s, v, buf, parts, stack)
            return
        src = self.src
        kinds = memo_fields(s)
        key, enc, nb = src.var("key"), src.var("enc"), src.var("nb")
        table_name = src.const(table, "ET")
        attrs = [f"{v}.{f.attr}" for f in s.fields]
        src.line(f"{key} = ({', '.join(attrs)},)")
        with src.block("try:"):
            src.line(f"{enc} = {table_name}.lookup({key})")
        with src.block("except TypeError:"):  # an unhashable field (a bytearray)
            src.line(f"{enc} = {key} = None")
        exact = " and ".join(
            [
                f"type({a}) is {src.const(k, 'TY')}"
                for a, k in zip(attrs, kinds, strict=True)
                if k is int or k is str
            ]
            or ["True"]
        )
        with src.block(f"if {enc} is not None and {exact}:"):
            src.line(f"{buf} += {enc}")
        with src.block("else:"):
            src.line(f"{nb} = bytearray()")
            self._struct(s, v, nb, None, stack)
            with src.block(f"if {key} is not None and {exact} and len({nb}) <= {MEMO_MAX_BYTES}:"):
                src.line(f"{table_name}.put({key}, bytes({nb}))")
            src.line(f"{buf} += {nb}")

    def _struct(
        self, s: GoStruct, v: str, buf: str, parts: str | None, stack: tuple[GoStruct, ...]
    ) -> None:
        last = self.src.var("last")
        self.src.line(f"{last} = -1")
        self.fields(s, v, buf, parts, last, range(len(s.fields)), (*stack, s))
        self.src.line(f"{buf}.append(0)")


# ---- decoding -----------------------------------------------------------------------------


class DecoderSource:
    """Writes code that decodes values from locals ``data`` (bytes), ``pos`` and ``end`` (the
    current gob message is ``data[pos:end]``), advancing ``pos``.

    Only the forms a Go encoder writes are handled in line (one-byte field deltas, counts that
    fit what is left); anything else raises ``Fallback`` so the general decoder gives its
    verdict. Every count is checked against the bytes left before anything is allocated, and
    the memory of what is built is charged to local ``left`` exactly as the general decoder
    charges it (:mod:`.costs`): once ``left`` is below 0 the code raises ``Fallback``, and the
    general decoder refuses the value.

    ``skip=1`` (a read that follows a field delta) means ``data[pos]`` is that delta, already
    checked, and ``pos + 1 < end``: the read starts one byte further without a bounds check.
    """

    def __init__(self, src: Source, structs: StructDecoders | None = None) -> None:
        self.src = src
        self.structs = structs
        self.memo: frozenset[GoStruct] = structs.memo if structs is not None else frozenset()

    def uint(self, target: str, skip: int = 0) -> None:
        """Read an unsigned integer into local ``target``."""
        src = self.src
        at = f"pos + {skip}" if skip else "pos"
        if not skip:
            src.line("if pos >= end: raise FB")
        src.line(f"{target} = data[{at}]")
        with src.block(f"if {target} < 0x80:"):
            src.line(f"pos += {skip + 1}")
        with src.block("else:"):
            n = src.var("n")
            src.line(f"{n} = {257 + skip} - {target}")  # up to the value's last byte
            src.line(f"if {n} > {9 + skip} or pos + {n} > end: raise FB")
            with src.block(f"if {n} == {3 + skip}:"):  # two bytes: ports, lengths up to 64 KiB
                src.line(f"{target} = data[pos + {skip + 1}] << 8 | data[pos + {skip + 2}]")
            with src.block("else:"):
                src.line(f"{target} = int.from_bytes(data[pos + {skip + 1} : pos + {n}], 'big')")
            src.line(f"pos += {n}")

    def raw(self, target: str, skip: int = 0) -> None:
        """Read a counted byte string into local ``target`` (a ``bytes``)."""
        n = self.src.var("n")
        self.uint(n, skip)
        self.src.line(f"{n} += pos")  # now where the string ends
        self.src.line(f"if {n} > end: raise FB")
        self.src.line(f"{target} = data[pos:{n}]")
        self.src.line(f"pos = {n}")

    def value(
        self,
        t: GoType,
        target: str,
        stack: tuple[GoStruct, ...] = (),
        interface: Callable[[str], None] | None = None,
        skip: int = 0,
    ) -> None:
        """Read a value of ``t`` into local ``target``."""
        src = self.src
        if isinstance(t, GoBool):
            u = src.var("u")
            self.uint(u, skip)
            src.line(f"{target} = {u} != 0")
        elif isinstance(t, GoInt):
            u = src.var("u")
            self.uint(u, skip)
            src.line(f"{target} = ~({u} >> 1) if {u} & 1 else {u} >> 1")
            if t.bits < 64:
                lo, hi = -(1 << (t.bits - 1)), (1 << (t.bits - 1)) - 1
                src.line(f"if not {lo} <= {target} <= {hi}: raise FB")
        elif isinstance(t, GoUint):
            self.uint(target, skip)
            if t.bits < 64:
                src.line(f"if {target} > {(1 << t.bits) - 1}: raise FB")
        elif isinstance(t, GoString):
            b = src.var("b")
            self.raw(b, skip)
            # ASCII is the common case and as fast as strict UTF-8; anything else (surrogate
            # escapes give the same string the general decoder makes) may take up to 4 bytes
            # a character, and is charged as it is there.
            with src.block("try:"):
                src.line(f"{target} = {b}.decode('ascii')")
            with src.block("except UnicodeDecodeError:"):
                src.line(f"{target} = {b}.decode('utf-8', 'surrogateescape')")
                src.line(f"left -= SZ({target})")
                src.line("if left < 0: raise FB")
        elif isinstance(t, GoBytes):
            self.raw(target, skip)
        elif isinstance(t, GoPtr):
            self.value(t.elem, target, stack, interface, skip)
        elif isinstance(t, GoSlice):
            n, out, item = src.var("n"), src.var("out"), src.var("item")
            self.uint(n, skip)
            # Each element takes at least one byte of this message; more than that can only
            # fail (the general decoder says how).
            src.line(f"if {n} > end - pos: raise FB")
            src.line(f"left -= {n} * {element_cost(t.elem)}")
            src.line("if left < 0: raise FB")
            src.line(f"{out} = []")
            with src.block(f"for _ in range({n}):"):
                src.line("if pos >= end: raise FB")
                elem = t.elem.elem if isinstance(t.elem, GoPtr) else t.elem
                if isinstance(elem, GoStruct):  # the hot loop of node lists: in line
                    self.struct(elem, item, stack)
                else:
                    self.value(t.elem, item, stack)
                src.line(f"{out}.append({item})")
            src.line(f"{target} = {out}")
        elif isinstance(t, GoMap):
            n, out, k, v = src.var("n"), src.var("out"), src.var("k"), src.var("v")
            self.uint(n, skip)
            # Go turns a count of 2**63 or more negative, and then reads no entry.
            src.line(f"if {n} >= {INT64_SIGN}: {n} = 0")
            src.line(f"if {n} > end - pos: raise FB")  # every key takes a byte at least
            src.line(f"left -= {n} * {entry_cost(t)}")
            src.line("if left < 0: raise FB")
            src.line(f"{out} = {{}}")
            with src.block(f"for _ in range({n}):"):
                self.value(t.key, k, stack)
                self.value(t.elem, v, stack)
                src.line(f"{out}[{k}] = {v}")
            src.line(f"{target} = {out}")
        elif isinstance(t, GoStruct):
            if skip:
                src.line(f"pos += {skip}")
            if self.structs is None or interface is not None:
                self.struct(t, target, stack, interface)
            else:  # a nested struct: one shared function per type keeps the code small
                fn = src.const(self.structs.get(t, stack), "S")
                src.line(f"{target}, pos, left = {fn}(data, pos, end, left, memo)")
        elif interface is not None:
            if skip:
                src.line(f"pos += {skip}")
            interface(target)
        else:
            raise Unsupported(f"no specialised decoder for {t.go_string()}")

    def struct(
        self,
        s: GoStruct,
        target: str,
        stack: tuple[GoStruct, ...] = (),
        interface: Callable[[str], None] | None = None,
    ) -> None:
        """Read a struct into local ``target``: fields by delta until a 0 or the end of the
        message (Go ends a struct there too); absent fields keep the class's defaults.

        Go sends the fields in order, so a struct without zero fields is a delta of 1 before
        each field and a 0 after the last: that is read straight through, and any other input
        continues in the general field loop from where it departs.
        """
        if s in stack:
            raise Unsupported(f"recursive struct {s.go_string()}")
        if s not in self.memo or interface is not None:
            self._struct(s, target, stack, interface)
            return
        # A memoised struct (see StructDecoders): looked up by its first MEMO_KEY_BYTES bytes in
        # the local ``memo`` table (or None), which holds (the struct's exact bytes, its field
        # values, what decoding them charged, the class). A hit needs those exact bytes here,
        # inside this message; a struct is remembered only if it ended with its 0 before the
        # message's end, so that the same bytes anywhere decode to the same value.
        src = self.src
        cls, dc_fields = _struct_class(s)
        memo_fields(s)
        key, hit, at, was = src.var("key"), src.var("hit"), src.var("at"), src.var("was")
        klass = src.const(cls, "C")
        src.line(f"{hit} = None")
        with src.block("if memo is not None:"):
            src.line(f"{key} = data[pos : pos + {MEMO_KEY_BYTES}]")
            src.line(f"{hit} = memo.lookup({key})")
            with src.block(
                f"if {hit} is not None and ({hit}[3] is not {klass} "
                f"or not data.startswith({hit}[0], pos, end)):"
            ):
                src.line(f"{hit} = None")
        with src.block(f"if {hit} is not None:"):
            src.line(f"pos += len({hit}[0])")
            with src.block(f"if {hit}[2]:"):
                src.line(f"left -= {hit}[2]")
                src.line("if left < 0: raise FB")
            src.line(f"{target} = NEW({klass})")
            src.line(f"{', '.join(f'{target}.{f.name}' for f in dc_fields)}, = {hit}[1]")
        with src.block("else:"):
            src.line(f"{at} = pos")
            src.line(f"{was} = left")
            self._struct(s, target, stack, interface)
            with src.block(
                f"if memo is not None and pos < end and pos - {at} <= {MEMO_MAX_BYTES}:"
            ):
                values = ", ".join(f"{target}.{f.name}" for f in dc_fields)
                src.line(f"memo.put({key}, (data[{at}:pos], ({values},), {was} - left, {klass}))")

    def _struct(
        self,
        s: GoStruct,
        target: str,
        stack: tuple[GoStruct, ...],
        interface: Callable[[str], None] | None,
    ) -> None:
        src = self.src
        cls, dc_fields = _struct_class(s)
        inner = (*stack, s)
        names = [src.var("f") for _ in s.fields]
        defaults: list[str] = []
        values: list[str] = []
        for name, dcf in zip(names, dc_fields, strict=True):
            if dcf.default is not dataclasses.MISSING:
                defaults.append(f"{name} = {src.const(dcf.default, 'D')}")
                values.append(name)
            elif dcf.default_factory is not dataclasses.MISSING:
                defaults.append(f"{name} = MISSING")
                factory = src.const(dcf.default_factory, "F")
                values.append(f"({factory}() if {name} is MISSING else {name})")
            else:
                raise Unsupported(f"{s.go_string()}.{dcf.name} has no default")
        count = len(s.fields)
        fieldnum = src.var("fn")

        def straight(i: int) -> None:
            if i == count:
                with src.block("if pos < end and data[pos] == 0:"):
                    src.line("pos += 1")
                    src.line(f"{fieldnum} = {count}")  # complete
                with src.block("else:"):
                    src.line(f"{fieldnum} = {count - 1}")
                return
            with src.block("if pos + 1 < end and data[pos] == 1:"):
                self._field(s.fields[i], names[i], inner, interface, skip=1)
                straight(i + 1)
            with src.block("else:"):
                for line in defaults[i:]:
                    src.line(line)
                src.line(f"{fieldnum} = {i - 1}")

        straight(0)
        delta = src.var("d")
        with src.block(f"if {fieldnum} < {count}:"), src.block("while pos < end:"):
            src.line(f"{delta} = data[pos]")
            src.line(f"if {delta} >= 0x80: raise FB")
            src.line("pos += 1")
            src.line(f"if not {delta}: break")
            src.line(f"{fieldnum} += {delta}")
            for i, (f, name) in enumerate(zip(s.fields, names, strict=True)):
                with src.block(f"{'if' if i == 0 else 'elif'} {fieldnum} == {i}:"):
                    self._field(f, name, inner, interface)
            with src.block("else:"):
                src.line("raise FB")
        klass = src.const(cls, "C")
        params = getattr(cls, "__dataclass_params__", None)
        if params is None or params.frozen or hasattr(cls, "__post_init__"):
            src.line(f"{target} = {klass}({', '.join(values)})")
            return
        # A plain dataclass: its __init__ only stores the fields, so store them directly.
        src.line(f"{target} = NEW({klass})")
        for dcf, value in zip(dc_fields, values, strict=True):
            src.line(f"{target}.{dcf.name} = {value}")

    def _field(
        self,
        f: GoField,
        target: str,
        stack: tuple[GoStruct, ...],
        interface: Callable[[str], None] | None,
        skip: int = 0,
    ) -> None:
        hook = interface if isinstance(f.type, GoInterface) else None
        self.value(f.type, target, stack, hook, skip)


StructDecoder = Callable[
    [bytes, int, int, int, "BoundedTable[bytes, Any] | None"], tuple[Any, int, int]
]
"""``(data, pos, end, left, memo) -> (value, pos, left)``: one struct value, and what is left
of the allowance after it (below 0: the caller raises ``Fallback``); ``memo`` is the table of
memoised structs (:class:`StructDecoders`), or ``None``."""


class StructDecoders:
    """One generated :data:`StructDecoder` per struct type, shared by every decoder that nests
    the type (a FindNode answer's nodes, a message's sender and receiver).

    Values of the struct types in ``memo`` (scalar fields only, plain dataclasses) are looked
    up by their bytes in the ``memo`` table the caller passes, and remembered there: decoding a
    node list is then mostly comparing bytes (a lookup answer names the same peers again)."""

    def __init__(self, memo: Iterable[GoStruct] = ()) -> None:
        self._functions: dict[GoStruct, StructDecoder] = {}
        self.memo = frozenset(memo)
        for s in self.memo:
            memo_fields(s)
            cls, _ = _struct_class(s)
            params = getattr(cls, "__dataclass_params__", None)
            if params is None or params.frozen or hasattr(cls, "__post_init__"):
                raise Unsupported(f"{s.go_string()}: only plain dataclasses are memoised")

    def get(self, s: GoStruct, stack: tuple[GoStruct, ...] = ()) -> StructDecoder:
        """The function decoding ``s`` (generated on first request)."""
        fn = self._functions.get(s)
        if fn is None:
            src = Source()
            DecoderSource(src, self).struct(s, "value", stack)
            src.line("return value, pos, left")
            fn = src.function("decode_" + s.name, "data, pos, end, left, memo")
            self._functions[s] = fn
        return fn
