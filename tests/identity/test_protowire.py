"""The minimal protobuf reader/writer: round trips, and only its own error on bad input."""

from __future__ import annotations

import pytest
from google.protobuf import any_pb2
from hypothesis import given
from hypothesis import strategies as st

from lumera_p2p.errors import ProtobufDecodeError
from lumera_p2p.identity import protowire


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_varint_round_trip(value: int) -> None:
    raw = protowire.encode_varint(value)
    assert protowire.decode_varint(raw, 0) == (value, len(raw))


def test_varint_limits() -> None:
    with pytest.raises(ValueError):
        protowire.encode_varint(-1)
    with pytest.raises(ProtobufDecodeError, match="10 bytes"):
        protowire.decode_varint(b"\xff" * 11, 0)
    with pytest.raises(ProtobufDecodeError, match="overflows"):
        protowire.decode_varint(b"\xff" * 9 + b"\x7f", 0)
    with pytest.raises(ProtobufDecodeError, match="truncated"):
        protowire.decode_varint(b"\x80", 0)


@given(type_url=st.text(max_size=60), value=st.binary(max_size=200))
def test_any_matches_google_protobuf(type_url: str, value: bytes) -> None:
    ours = protowire.encode_any(type_url, value)
    theirs = any_pb2.Any(type_url=type_url, value=value).SerializeToString(deterministic=True)
    assert ours == theirs
    assert protowire.decode_any(theirs) == (type_url, value)


def test_length_beyond_message_is_refused() -> None:
    with pytest.raises(ProtobufDecodeError, match="exceeds"):
        list(protowire.iter_fields(b"\x0a\xff\xff\xff\xff\x0f"))


@given(st.binary(max_size=120))
def test_reader_fuzz(raw: bytes) -> None:
    try:
        for _ in protowire.iter_fields(raw):
            pass
    except ProtobufDecodeError:
        pass
