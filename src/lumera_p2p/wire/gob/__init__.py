"""Go ``encoding/gob`` for Python, byte-exact with Go's encoder and verdict-exact with its decoder.

The Lumera supernode frames every Kademlia message as one gob stream, so this package follows
Go's ``encoding/gob`` (``type.go``, ``encoder.go``, ``encode.go``, ``decoder.go``, ``decode.go``)
step by step rather than the gob *format* description: the quirks a peer can observe (type-id
allocation order, the interface value split across gob messages, which malformed inputs Go
tolerates) all live in the algorithm, not in the format.

Go types are described once with small immutable descriptors (:class:`GoStruct`,
:class:`GoSlice`, :class:`GoMap`, :class:`GoPtr`, :class:`GoInterface` and the primitives).
Python values map as:

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
anything is allocated, value and type nesting are capped, what a value takes once decoded is
charged against an allowance tied to the stream's size (:mod:`.costs`, :class:`DecodeLimit`),
and every failure is a :class:`~lumera_p2p.errors.ProtocolError`.

Modules: :mod:`.types` (the Go type model), :mod:`.wiretypes` (gob's own type definitions),
:mod:`.typetable` (type ids), :mod:`.registry` (interface types), :mod:`.writers` and
:mod:`.encoder` (encoding), :mod:`.ops`, :mod:`.compiler` and :mod:`.decoder` (decoding),
:mod:`.costs` (what decoded values cost in memory),
:mod:`.cache` (what decoders share), :mod:`.codegen` and :mod:`.fast` (specialised codecs
generated for a fixed set of message types).
"""

from lumera_p2p.errors import GobEncodeError
from lumera_p2p.wire.gob.cache import GobDecodeCache
from lumera_p2p.wire.gob.costs import DEFAULT_DECODE_LIMIT, DecodeLimit
from lumera_p2p.wire.gob.decoder import DEFAULT_MAX_DEPTH, GobDecoder, gob_decode
from lumera_p2p.wire.gob.encoder import GobEncoder, gob_encode
from lumera_p2p.wire.gob.registry import InterfaceRegistry
from lumera_p2p.wire.gob.types import (
    GoArray,
    GoBool,
    GoBytes,
    GoField,
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
)
from lumera_p2p.wire.gob.typetable import TypeTable
from lumera_p2p.wire.gob.wiretypes import FIRST_USER_ID, WireType

__all__ = [
    "DEFAULT_DECODE_LIMIT",
    "DEFAULT_MAX_DEPTH",
    "FIRST_USER_ID",
    "DecodeLimit",
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
    "InterfaceRegistry",
    "TypeTable",
    "WireType",
    "gob_decode",
    "gob_encode",
]
