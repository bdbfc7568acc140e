"""The Go-generated vectors of ``shared/vectors/gob``: decode, re-encode byte for byte, history."""

from __future__ import annotations

from typing import Any

import pytest

from lumera_p2p.wire import GobDecodeCache, TypeTable, decode_message, encode_message
from lumera_p2p.wire.gob import GobDecoder, GoPtr
from lumera_p2p.wire.messages import GO_MESSAGE, REGISTRY

from .conftest import load_vectors
from .gojson import from_go_json, to_go_json

MESSAGE = GoPtr(GO_MESSAGE)
HISTORY_A = ("history_a_1_find_node_request", "history_a_2_store_data_response_ok")


def _vectors() -> list[dict[str, Any]]:
    return load_vectors("gob-vectors.json")


def _by_name() -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in _vectors()}


def _names() -> list[str]:
    try:
        return [v["name"] for v in _vectors()]
    except pytest.skip.Exception:
        return ["<vectors missing>"]


@pytest.fixture(scope="module")
def vectors() -> dict[str, dict[str, Any]]:
    return _by_name()


@pytest.mark.parametrize("name", _names())
def test_decodes_to_go_value(name: str, vectors: dict[str, dict[str, Any]]) -> None:
    vec = vectors[name]
    msg = decode_message(bytes.fromhex(vec["frame_hex"]))
    # Go itself reads empty slices back as nil; for those vectors the README gives what Go decoded.
    expected = vec["roundtrip"].get("decoded_go_value", vec["go_value"])
    assert to_go_json(msg, MESSAGE, REGISTRY) == expected


@pytest.mark.parametrize("name", _names())
def test_decodes_the_same_with_a_shared_cache(name: str, vectors: dict[str, Any]) -> None:
    cache = GobDecodeCache()
    frame = bytes.fromhex(vectors[name]["frame_hex"])
    first = decode_message(frame, cache=cache)
    assert decode_message(frame, cache=cache) == first == decode_message(frame)


@pytest.mark.parametrize("name", _names())
def test_reencodes_byte_for_byte(name: str, vectors: dict[str, dict[str, Any]]) -> None:
    vec = vectors[name]
    msg = from_go_json(vec["go_value"], MESSAGE, REGISTRY)
    if name in HISTORY_A:
        # One process encoded both: replay its history in one table.
        table = TypeTable()
        for earlier in HISTORY_A[: HISTORY_A.index(name)]:
            encode_message(
                from_go_json(vectors[earlier]["go_value"], MESSAGE, REGISTRY), types=table
            )
        frame = encode_message(msg, types=table)
    else:
        frame = encode_message(msg)
    assert frame.hex() == vec["frame_hex"]
    assert len(frame) == vec["frame_len"]


@pytest.mark.parametrize("name", [n for n in _names() if n not in HISTORY_A])
def test_reencodes_like_go_1_19(name: str, vectors: dict[str, dict[str, Any]]) -> None:
    """go1.19 numbered user types from 65; everything else is identical."""
    vec = vectors[name]
    msg = from_go_json(vec["go_value"], MESSAGE, REGISTRY)
    assert encode_message(msg, types=TypeTable(65)).hex() == vec["other_go_version"]["frame_hex"]


def test_history_a_second_frame_differs_from_fresh(vectors: dict[str, dict[str, Any]]) -> None:
    """A long-running process numbers StoreDataResponse after FindNodeRequest (67/68)."""
    table = TypeTable()
    first, second = (from_go_json(vectors[n]["go_value"], MESSAGE, REGISTRY) for n in HISTORY_A)
    encode_message(first, types=table)
    again = encode_message(second, types=table)
    assert again.hex() == vectors[HISTORY_A[1]]["frame_hex"]
    assert again != encode_message(second)
    assert again.hex() != vectors["store_data_response_ok"]["frame_hex"]


def test_history_c_decoding_assigns_no_ids(vectors: dict[str, dict[str, Any]]) -> None:
    """A server decodes a request, then encodes its response: decoding takes no type ids."""
    table = TypeTable()
    decode_message(bytes.fromhex(vectors["find_node_request"]["frame_hex"]))
    vec = vectors["history_c_find_node_response_after_decoding_request"]
    msg = from_go_json(vec["go_value"], MESSAGE, REGISTRY)
    assert encode_message(msg, types=table).hex() == vec["frame_hex"]
    assert table.next_id == 69


@pytest.mark.parametrize("name", _names())
def test_type_definitions_as_listed(name: str, vectors: dict[str, dict[str, Any]]) -> None:
    """The decoder sees exactly the definitions (ids, names, fields) the README lists."""
    vec = vectors[name]
    frame = bytes.fromhex(vec["frame_hex"])
    decoder = GobDecoder(frame, REGISTRY, start=8)
    decoder.decode(MESSAGE)
    seen: dict[int, tuple[str, str, object]] = {}
    for tid, wire in decoder.wire_types.items():
        if wire.struct_t is not None:
            fields = [{"name": f.name, "id": f.id} for f in wire.struct_t.fields]
            seen[tid] = ("struct", wire.struct_t.common.name, fields)
        elif wire.slice_t is not None:
            seen[tid] = ("slice", wire.slice_t.common.name, wire.slice_t.elem)
        elif wire.map_t is not None:
            seen[tid] = ("map", wire.map_t.common.name, (wire.map_t.key, wire.map_t.elem))
    expected: dict[int, tuple[str, str, object]] = {}
    for d in vec["type_defs"]:
        if d["kind"] == "struct":
            expected[d["id"]] = ("struct", d["name"], d["fields"])
        elif d["kind"] == "slice":
            expected[d["id"]] = ("slice", d["name"], d["elem"])
        else:
            expected[d["id"]] = ("map", d["name"], (d["key"], d["elem"]))
    assert seen == expected
    assert list(decoder.wire_types) == [d["id"] for d in vec["type_defs"]]  # stream order
