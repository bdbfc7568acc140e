"""``lumera_p2p.b58``: the same spelling as the ``base58`` package, on any bytes and text."""

from __future__ import annotations

import re

import base58
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lumera_p2p import b58


@given(st.binary(max_size=300))
def test_encode_spells_as_the_library(raw: bytes) -> None:
    assert b58.encode(raw) == base58.b58encode(raw).decode()


@given(st.integers(0, 40), st.binary(max_size=40))
def test_leading_zero_bytes_are_leading_ones(zeros: int, tail: bytes) -> None:
    raw = b"\0" * zeros + tail
    text = b58.encode(raw)
    assert text == base58.b58encode(raw).decode()
    assert b58.decode(text) == raw


@given(st.text(alphabet=b58.ALPHABET, max_size=120))
def test_decode_reads_as_the_library(text: str) -> None:
    assert b58.decode(text) == base58.b58decode(text)


@given(st.binary(max_size=300))
def test_decode_undoes_encode(raw: bytes) -> None:
    assert b58.decode(b58.encode(raw)) == raw


@pytest.mark.parametrize("bad", ["0", "O", "I", "l", "abc+", " 1", "é"])
def test_a_character_outside_the_alphabet_is_named(bad: str) -> None:
    with pytest.raises(ValueError, match="not a base58 digit"):
        b58.decode(bad)


def test_edges() -> None:
    assert b58.encode(b"") == "" and b58.decode("") == b""
    assert b58.encode(b"\0") == "1" and b58.decode("1") == b"\0"
    assert b58.encode(b"\0\0\x01") == "112" and b58.decode("112") == b"\0\0\x01"
    assert b58.encode(bytes([57])) == "z" and b58.encode(bytes([58])) == "21"


@given(st.text(alphabet=st.characters(max_codepoint=300), max_size=60))
def test_any_text_decodes_as_the_base58_package_does_or_names_a_stranger(text: str) -> None:
    if all(c in b58.ALPHABET for c in text):
        assert b58.decode(text) == base58.b58decode(text)
        return
    first = next(c for c in text if c not in b58.ALPHABET)
    with pytest.raises(ValueError, match=f"^{re.escape(repr(first))} is not a base58 digit$"):
        b58.decode(text)
