"""The generic codec: primitives, floats, arrays, named and nested types, nested interfaces.

``GO_HEX`` was produced by go1.26.8's encoding/gob (one fresh Encoder per value) from::

    type Inner struct { A int; B string }
    type Names []string
    type Leaf struct { V []int; W map[string]Inner }
    type Box struct { X interface{} }
    type Outer struct {
        F float64; G float32; Arr [3]uint8; M map[int]string; I interface{}; P *Inner
        L []Inner; N Names; U uint64; Neg int8; Ok bool; Zero Inner
    }
    gob.Register(&Inner{}); gob.Register(&Box{}); gob.Register(&Leaf{})

encoding the four values of ``VALUES`` below (package ``main``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from lumera_p2p.errors import ProtocolError
from lumera_p2p.wire.gob import (
    GoArray,
    GobDecoder,
    GobEncodeError,
    GobEncoder,
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
    GoUint,
    InterfaceRegistry,
    TypeTable,
    gob_decode,
    gob_encode,
)


@dataclass
class Inner:
    a: int = 0
    b: str = ""


@dataclass
class Box:
    x: object = None


@dataclass
class Leaf:
    v: list[int] = field(default_factory=list)
    w: dict[str, Inner] | None = None


@dataclass
class Outer:
    f: float = 0.0
    g: float = 0.0
    arr: list[int] = field(default_factory=lambda: [0, 0, 0])
    m: dict[int, str] | None = None
    i: object = None
    p: Inner | None = None
    items: list[Inner] = field(default_factory=list)
    n: list[str] = field(default_factory=list)
    u: int = 0
    neg: int = 0
    ok: bool = False
    zero: Inner = field(default_factory=Inner)


INNER = GoStruct(
    "Inner", "main", [GoField("A", GoInt(), "a"), GoField("B", GoString(), "b")], Inner
)
BOX = GoStruct("Box", "main", [GoField("X", GoInterface(), "x")], Box)
LEAF = GoStruct(
    "Leaf",
    "main",
    [GoField("V", GoSlice(GoInt()), "v"), GoField("W", GoMap(GoString(), INNER), "w")],
    Leaf,
)
OUTER = GoStruct(
    "Outer",
    "main",
    [
        GoField("F", GoFloat(), "f"),
        GoField("G", GoFloat(32, "float32"), "g"),
        GoField("Arr", GoArray(GoUint(8, "uint8"), 3), "arr"),
        GoField("M", GoMap(GoInt(), GoString()), "m"),
        GoField("I", GoInterface(), "i"),
        GoField("P", GoPtr(INNER), "p"),
        GoField("L", GoSlice(INNER), "items"),
        GoField("N", GoSlice(GoString(), name="Names", package="main"), "n"),
        GoField("U", GoUint(), "u"),
        GoField("Neg", GoInt(8, "int8"), "neg"),
        GoField("Ok", GoBool(), "ok"),
        GoField("Zero", INNER, "zero"),
    ],
    Outer,
)
REGISTRY = InterfaceRegistry(
    [("*main.Inner", GoPtr(INNER)), ("*main.Box", GoPtr(BOX)), ("*main.Leaf", GoPtr(LEAF))]
)
VALUES = [
    Outer(),
    Outer(
        f=17.5,
        g=-0.25,
        arr=[1, 200, 3],
        m={-3: "neg"},
        i=Box(Inner(1, "x")),
        p=Inner(a=-1),
        items=[Inner(), Inner(2, "b")],
        n=["p", ""],
        u=1 << 63,
        neg=-128,
        ok=True,
    ),
    Outer(i=Inner(a=7), m={}),
    Outer(i=Box(Leaf([1, -1], {"k": Inner(b="q")}))),
]
GO_HEX = [
    "687f030101054f7574657201ff8000010c010146010800010147010800010341727201ff820001014d01ff840001014901100001015001ff860001014c01ff880001014e01ff8a0001015501060001034e656701040001024f6b01020001045a65726f01ff8600000018ff81010101085b335d75696e743801ff82000106010600001eff830401010e6d61705b696e745d737472696e6701ff84000104010c00001fff8503010105496e6e657201ff86000102010141010400010142010c0000001bff870201010c5b5d6d61696e2e496e6e657201ff880001ff86000013ff89020101054e616d657301ff8a00010c00000aff800303000000090000",
    "687f030101054f7574657201ff8000010c010146010800010147010800010341727201ff820001014d01ff840001014901100001015001ff860001014c01ff880001014e01ff8a0001015501060001034e656701040001024f6b01020001045a65726f01ff8600000018ff81010101085b335d75696e743801ff82000106010600001eff830401010e6d61705b696e745d737472696e6701ff84000104010c00001fff8503010105496e6e657201ff86000102010141010400010142010c0000001bff870201010c5b5d6d61696e2e496e6e657201ff880001ff86000013ff89020101054e616d657301ff8a00010c00003aff8001fd80314001fed0bf010301ffc803010105036e656701092a6d61696e2e426f78ff8b03010103426f7801ff8c00010101015801100000003eff8c17010b2a6d61696e2e496e6e6572ff86060102010178000001010100010200010401016200010201700001f8800000000000000001ffff0101010000",
    "687f030101054f7574657201ff8000010c010146010800010147010800010341727201ff820001014d01ff840001014901100001015001ff860001014c01ff880001014e01ff8a0001015501060001034e656701040001024f6b01020001045a65726f01ff8600000018ff81010101085b335d75696e743801ff82000106010600001eff830401010e6d61705b696e745d737472696e6701ff84000104010c00001fff8503010105496e6e657201ff86000102010141010400010142010c0000001bff870201010c5b5d6d61696e2e496e6e657201ff880001ff86000013ff89020101054e616d657301ff8a00010c00001fff8003030000000100010b2a6d61696e2e496e6e6572ff8603010e00070000",
    "687f030101054f7574657201ff8000010c010146010800010147010800010341727201ff820001014d01ff840001014901100001015001ff860001014c01ff880001014e01ff8a0001015501060001034e656701040001024f6b01020001045a65726f01ff8600000018ff81010101085b335d75696e743801ff82000106010600001eff830401010e6d61705b696e745d737472696e6701ff84000104010c00001fff8503010105496e6e657201ff86000102010141010400010142010c0000001bff870201010c5b5d6d61696e2e496e6e657201ff880001ff86000013ff89020101054e616d657301ff8a00010c000029ff80030300000002092a6d61696e2e426f78ff8b03010103426f7801ff8c00010101015801100000007fff8c2c010a2a6d61696e2e4c656166ff8d030101044c65616601ff8e00010201015601ff900001015701ff9200000013ff8f020101055b5d696e7401ff90000104000026ff91040101156d61705b737472696e675d6d61696e2e496e6e657201ff9200010c01ff86000011ff8e0d010202010101016b020171000000070000",
]


@pytest.mark.parametrize("index", range(len(VALUES)))
def test_encodes_like_go(index: int) -> None:
    assert gob_encode(VALUES[index], OUTER, registry=REGISTRY).hex() == GO_HEX[index]


@pytest.mark.parametrize("index", range(len(VALUES)))
def test_decodes_go_output(index: int) -> None:
    value = gob_decode(bytes.fromhex(GO_HEX[index]), OUTER, registry=REGISTRY)
    assert value == VALUES[index]


@pytest.mark.parametrize(
    ("go_type", "value", "wire"),
    [
        (GoUint(), 4445, "fe115d"),
        (GoUint(), 128, "ff80"),
        (GoUint(), 127, "7f"),
        (GoUint(), (1 << 64) - 1, "f8ffffffffffffffff"),
        (GoInt(), 2, "04"),
        (GoInt(), 64, "ff80"),
        (GoInt(), -64, "7f"),
        (GoInt(), -65, "ff81"),
        (GoInt(), -(1 << 63), "f8ffffffffffffffff"),
        (GoBool(), True, "01"),
        (GoString(), "hi", "026869"),
        (GoBytes(), b"\x00\xff", "0200ff"),
        (GoFloat(), 17.5, "fd803140"),
        (GoFloat(), 17.0, "fe3140"),  # the example in gob's doc.go
        (GoFloat(), 2.0, "40"),
    ],
)
def test_singletons(go_type: GoInt, value: object, wire: str) -> None:
    """A non-struct top-level value is sent as a singleton: type id, then 00, then the value."""
    data = gob_encode(value, go_type)
    assert data[2:].hex() == "00" + wire  # data[0] is the length, data[1] the builtin type id
    assert gob_decode(data, go_type) == value


def test_type_ids_follow_go_order() -> None:
    """A struct takes its id before its fields, a slice or map after its elements."""
    table = TypeTable()
    assert table.type_id(OUTER) == 64
    assert table.type_id(GoArray(GoUint(8, "uint8"), 3)) == 65
    assert table.type_id(GoMap(GoInt(), GoString())) == 66
    assert table.type_id(INNER) == 67
    assert table.type_id(GoSlice(INNER)) == 68
    assert table.next_id == 70
    assert table.type_id(BOX) == 70
    wire = table.wire_type(GoSlice(INNER))
    assert wire is not None and wire.slice_t is not None
    assert wire.slice_t.common.name == "[]main.Inner"


def test_invalid_utf8_strings_round_trip() -> None:
    raw = b"\xff\xfeok\x80"
    value = gob_decode(gob_encode(raw.decode("utf-8", "surrogateescape"), GoString()), GoString())
    assert value.encode("utf-8", "surrogateescape") == raw


def test_decoder_reads_several_values_of_one_stream() -> None:
    enc = GobEncoder(registry=REGISTRY)
    stream = enc.encode(VALUES[1], OUTER) + enc.encode(VALUES[2], OUTER)
    dec = GobDecoder(stream, REGISTRY)
    assert dec.decode(OUTER) == VALUES[1]
    assert dec.decode(OUTER) == VALUES[2]  # its definitions were sent only once
    with pytest.raises(ProtocolError, match="EOF"):
        dec.decode(OUTER)


@pytest.mark.parametrize(
    ("go_type", "value"),
    [
        (GoInt(8, "int8"), 128),
        (GoUint(16, "uint16"), 1 << 16),
        (GoUint(), -1),
        (GoInt(), 1 << 63),
        (GoSlice(GoPtr(INNER)), [None]),
        (GoArray(GoInt(), 2), [1]),
        (GoFloat(32, "float32"), 1e300),
    ],
)
def test_unencodable_values(go_type: GoInt, value: object) -> None:
    with pytest.raises(GobEncodeError):
        gob_encode(value, go_type)


def test_unregistered_interface_value() -> None:
    with pytest.raises(GobEncodeError, match="not registered"):
        gob_encode(Box(x=Outer()), BOX, registry=REGISTRY)


def test_registry_rejects_duplicates_and_non_structs() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        InterfaceRegistry([("a", GoPtr(INNER)), ("b", GoPtr(INNER))])
    with pytest.raises(TypeError):
        InterfaceRegistry([("a", GoInt())])


def test_map_keys_must_be_hashable_primitives() -> None:
    with pytest.raises(TypeError):
        GoMap(INNER, GoInt())


def test_decode_range_checks() -> None:
    wire = gob_encode(300, GoInt())
    with pytest.raises(ProtocolError, match="out of range"):
        gob_decode(wire, GoInt(8, "int8"))
    with pytest.raises(ProtocolError, match="decoding into local type"):
        gob_decode(wire, GoString())
