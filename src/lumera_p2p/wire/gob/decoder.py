"""The decoder: one Go ``gob.Decoder`` over a stream held in memory (``decoder.go``).

It reads gob messages, receives type definitions (``decodeTypeSequence``), and runs the engines
the :class:`~lumera_p2p.wire.gob.compiler.Compiler` builds. It is verdict-exact with Go: the same
inputs are accepted, and refused inputs raise :class:`~lumera_p2p.errors.ProtocolError` with
Go's words, except that nesting is capped (Go recurses without limit and can be killed by a
deep frame).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from lumera_p2p.errors import ProtocolError
from lumera_p2p.wire.gob.cache import GobDecodeCache
from lumera_p2p.wire.gob.compiler import WIRE_ENGINES, Compiler
from lumera_p2p.wire.gob.ops import (
    DEFAULT_MAX_DEPTH,
    ERR_BAD_TYPE,
    ERR_BAD_UINT,
    SingleEngine,
    StructEngine,
    decode_struct,
    err,
    int32,
    to_int,
)
from lumera_p2p.wire.gob.registry import EMPTY_REGISTRY, InterfaceRegistry
from lumera_p2p.wire.gob.types import GoStruct, GoType, base_type
from lumera_p2p.wire.gob.wiretypes import (
    FIRST_USER_ID,
    T_WIRE_TYPE,
    WIRE_T,
    WireType,
    wire_key,
)
from lumera_p2p.wire.gob.writers import TOO_BIG

__all__ = ["DEFAULT_MAX_DEPTH", "GobDecoder", "gob_decode", "parse_definition"]

MAX_CACHED_DEF: Final = 4096
"""Definitions longer than this (with what follows them in their message) are not cached."""


class GobDecoder:
    """One Go ``gob.Decoder`` over a stream held in memory (``data[start:stop]``).

    Each :meth:`decode` call reads one value, as Go's ``Decode``; type definitions persist for
    the life of the decoder. Any input error raises :class:`ProtocolError`. A
    :class:`GobDecodeCache` shared between decoders saves re-parsing and re-compiling the type
    definitions that every frame repeats.

    ``data``, ``pos``, ``end`` (the current gob message is ``data[pos:end]``), ``stop``,
    ``depth`` and ``err`` are the state the decoding ops work on.

    ``data`` is copied to ``bytes`` unless ``views_from`` is set and ``data`` is a
    ``memoryview``: then ``[]byte`` fields of at least ``views_from`` bytes come out as
    read-only views into it, not copies (shorter ones as ``bytes``). A server decoding a
    400 MB BatchStoreData thus holds the frame once instead of twice; the views keep the
    buffer alive, so they must not be kept beyond the request.
    """

    __slots__ = (
        "_compiler",
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
        registry: InterfaceRegistry = EMPTY_REGISTRY,
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
        self.err: ProtocolError | None = None  # Go's sticky dec.err
        self._compiler = Compiler(max_depth, cache, WIRE_ENGINES)

    @property
    def wire_types(self) -> Mapping[int, WireType]:
        """The type definitions received so far, by id."""
        return self._compiler.wire_types

    def decode(self, go_type: GoType) -> Any:
        """Read the next value into ``go_type`` (Go's ``DecodeValue``)."""
        self.pos = self.end  # Go resets the buffer: the rest of the last message is dropped
        self.err = None
        self.depth = self._compiler.depth = 0
        try:
            tid = self.type_sequence(False)
            if self.err is not None:
                raise self.err
            value = self.decode_value(tid, go_type)
            if self.err is not None:
                raise self.err
            return value
        except RecursionError:
            # Only reachable with a max_depth above what Python's stack allows.
            raise err("gob: nesting too deep") from None

    # ---- reading ---------------------------------------------------------------------------

    def read_uint(self) -> int:
        """state.decodeUint: a uint from the current message."""
        pos = self.pos
        if pos >= self.end:
            raise err("EOF")
        data = self.data
        b = data[pos]
        if b < 0x80:
            self.pos = pos + 1
            return b
        n = 256 - b
        if n > 8:
            raise err(ERR_BAD_UINT)
        stop = pos + 1 + n
        if stop > self.end:
            raise err(f"gob: invalid uint data length {n}: exceeds input size {self.end - pos - 1}")
        self.pos = stop
        return int.from_bytes(data[pos + 1 : stop], "big")

    def _next_uint(self) -> int:
        """Decoder.nextUint: like read_uint, but errors are recorded (Go's dec.err), not raised."""
        pos, end = self.pos, self.end
        if pos >= end:
            self.err = err("EOF")
            return 0
        b = self.data[pos]
        if b < 0x80:
            self.pos = pos + 1
            return b
        n = 256 - b
        if n > 8:
            self.pos = pos + 1
            self.err = err(ERR_BAD_UINT)
            return 0
        if pos + 1 + n > end:
            self.pos = end
            self.err = err("unexpected EOF")
            return 0
        self.pos = pos + 1 + n
        return int.from_bytes(self.data[pos + 1 : pos + 1 + n], "big")

    def _recv_message(self) -> bool:
        """Load the next gob message; the current one is exhausted (pos == end)."""
        data, stop = self.data, self.stop
        pos = self.end
        if pos >= stop:
            self.err = err("EOF")
            return False
        b = data[pos]
        if b < 0x80:
            n = b
            pos += 1
        else:
            k = 256 - b
            if k > 8:
                self.err = err(ERR_BAD_UINT)
                return False
            if pos + 1 + k > stop:
                self.err = err("unexpected EOF")
                return False
            n = int.from_bytes(data[pos + 1 : pos + 1 + k], "big")
            pos += 1 + k
        if n >= TOO_BIG:
            self.err = err("invalid message length")
            return False
        if n > stop - pos:
            self.err = err("unexpected EOF")
            return False
        self.pos = pos
        self.end = pos + n
        return True

    def error(self) -> ProtocolError:
        """The recorded error, or Go's generic one for a failed type sequence."""
        return self.err if self.err is not None else err(ERR_BAD_TYPE)

    def type_sequence(self, is_interface: bool) -> int:
        """decodeTypeSequence: read definitions (pulling new messages) up to a value's type id."""
        first = True
        while self.err is None:
            if self.pos >= self.end and not self._recv_message():
                if not first and str(self.err) == "EOF":
                    self.err = err("unexpected EOF")
                break
            tid = int32(to_int(self._next_uint()))
            if tid >= 0:
                return tid
            self._recv_type(int32(-tid))
            if self.err is not None:
                break
            if self.pos < self.end:
                if not is_interface:
                    self.err = err("extra data in buffer")
                    break
                self._next_uint()  # the byte count of a delimited definition that follows
            first = False
        return -1

    def _recv_type(self, tid: int) -> None:
        compiler = self._compiler
        if tid < FIRST_USER_ID or tid in compiler.wire_types:
            self.err = err("gob: duplicate type received")
            return
        cache, start = compiler.cache, self.pos
        # A definition's parse depends only on the bytes from here to the end of the message.
        raw = (
            bytes(self.data[start : self.end])  # a cache key: never a view into a frame
            if cache and self.end - start <= MAX_CACHED_DEF
            else b""
        )
        hit = cache.defs.get(raw) if cache and raw else None
        if hit is not None:
            wire, consumed, key = hit
            self.pos = start + consumed
        else:
            wire = self.decode_value(T_WIRE_TYPE, WIRE_T)
            if self.err is not None:
                return
            key = wire_key(wire)
            if cache and raw:
                cache.defs.put(raw, (wire, self.pos - start, key))
        compiler.add(tid, wire, key)

    def decode_value(self, wire_id: int, local: GoType) -> Any:
        """decodeValue: one value of wire type ``wire_id`` into ``local``, from ``pos``."""
        compiler = self._compiler
        ref = compiler.dec_engine(wire_id, local)
        self.err = None  # Go assigns getDecEnginePtr's (nil) error to dec.err
        eng = ref.engine
        if isinstance(eng, StructEngine):
            base = base_type(local)
            assert isinstance(base, GoStruct)
            if eng.num_instr == 0 and base.fields:
                wt = compiler.wire_types.get(wire_id)
                if wt is not None and wt.struct_t is not None and wt.struct_t.fields:
                    raise err(
                        f"gob: type mismatch: no fields matched compiling decoder for {base.name}"
                    )
            return decode_struct(self, eng)
        assert isinstance(eng, SingleEngine)
        if self.read_uint() != 0:
            raise err("gob: decode: corrupted data: non-zero delta for singleton")
        return eng.op(self)


def parse_definition(data: bytes, start: int, end: int) -> tuple[WireType, int] | None:
    """The ``wireType`` encoded in ``data[start:end]`` and where it ends, or ``None`` if those
    bytes are not one (for callers that recognise definitions on their own)."""
    d = GobDecoder(data, stop=end)
    d.pos, d.end = start, end
    try:
        wire = d.decode_value(T_WIRE_TYPE, WIRE_T)
    except ProtocolError:
        return None
    return wire, d.pos


def gob_decode(
    data: bytes | bytearray | memoryview,
    go_type: GoType,
    *,
    registry: InterfaceRegistry = EMPTY_REGISTRY,
    max_depth: int = DEFAULT_MAX_DEPTH,
    cache: GobDecodeCache | None = None,
) -> Any:
    """Decode the first value of a gob stream into ``go_type`` (trailing data is ignored)."""
    return GobDecoder(data, registry, max_depth=max_depth, cache=cache).decode(go_type)
