"""``shared/vectors/gob/gob-bad.json``: every malformed or edge frame gets Go's verdict."""

from __future__ import annotations

import hashlib
import tracemalloc
from typing import Any

import pytest

from lumera_p2p.errors import ProtocolError
from lumera_p2p.wire import decode_message
from lumera_p2p.wire.gob import GoPtr
from lumera_p2p.wire.messages import GO_MESSAGE, REGISTRY
from tests.support import python_calls

from .conftest import load_vectors
from .gojson import to_go_json

GO = "go1.26.2"


def _bad() -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in load_vectors("gob-bad.json")}


def _names(outcome: str) -> list[str]:
    try:
        return [n for n, v in _bad().items() if v["go_outcome"] == outcome]
    except pytest.skip.Exception:
        return ["<vectors missing>"]


@pytest.fixture(scope="module")
def bad() -> dict[str, dict[str, Any]]:
    return _bad()


def _frame(vec: dict[str, Any]) -> bytes:
    if vec["frame_hex"] is not None:
        return bytes.fromhex(str(vec["frame_hex"]))
    recipe = vec["frame_recipe"]
    repeat: int = recipe["repeat_count"]
    frame = (
        bytes.fromhex(recipe["prefix_hex"])
        + bytes.fromhex(recipe["repeat_byte_hex"]) * repeat
        + bytes.fromhex(recipe["suffix_hex"])
    )
    assert hashlib.sha256(frame).hexdigest() == recipe["frame_sha256"]
    return frame


@pytest.mark.parametrize("name", _names("error"))
def test_go_errors_are_protocol_errors(name: str, bad: dict[str, dict[str, Any]]) -> None:
    vec = bad[name]
    with pytest.raises(ProtocolError) as info:
        decode_message(_frame(vec))
    # Not required, but we follow Go's decoder closely enough to give its very words.
    assert str(info.value) == vec["go_error"]


@pytest.mark.parametrize("name", _names("ok"))
def test_go_accepts_we_accept(name: str, bad: dict[str, dict[str, Any]]) -> None:
    vec = bad[name]
    msg = decode_message(_frame(vec))
    assert (
        to_go_json(msg, GoPtr(GO_MESSAGE), REGISTRY) == vec["by_go_version"][GO]["decoded_go_value"]
    )


@pytest.mark.parametrize("name", _names("crash"))
def test_go_crashes_we_refuse_cheaply(name: str, bad: dict[str, dict[str, Any]]) -> None:
    """8,000,000 nested levels kill Go with a stack overflow; the depth cap stops us at 100."""
    frame = _frame(bad[name])
    tracemalloc.start()
    with pytest.raises(ProtocolError, match="nesting too deep"):
        decode_message(frame)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1 << 20
    # Work counted in Python calls, not seconds (a busy machine changes only the latter):
    # ~1,000 at the cap; following the 8M levels would be millions.
    assert python_calls(lambda: decode_message(frame)) < 10_000
