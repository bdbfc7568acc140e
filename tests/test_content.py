"""Content keys: base58(BLAKE3-256(data)) and its hex/bytes spellings."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lumera_p2p.content import (
    content_key,
    digest,
    hex_to_bytes,
    hex_to_key,
    key_from_bytes,
    key_to_bytes,
    key_to_hex,
    validate_key,
    verify_value,
)
from lumera_p2p.errors import InvalidContentKey

_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _b58_independent(raw: bytes) -> str:
    """Base58 (Bitcoin alphabet) written out here, independently of the library used."""
    n = int.from_bytes(raw, "big")
    out = ""
    while n:
        n, rem = divmod(n, 58)
        out = _ALPHABET[rem] + out
    zeros = len(raw) - len(raw.lstrip(b"\x00"))
    return "1" * zeros + out


def test_hello_world() -> None:
    # BLAKE3-256("Hello, world!"), pinned so a change of hashing library cannot go unnoticed.
    expected_digest = "ede5c0b10f2ec4979c69b52f61e42ff5b413519ce09be0f14d098dcfe5f6f98d"
    assert digest(b"Hello, world!").hex() == expected_digest
    key = content_key(b"Hello, world!")
    assert key == _b58_independent(bytes.fromhex(expected_digest))
    assert key == "H1epVXJ1BSfrSYKiZeqxqFqtgqPAVKUANVvNGoaXt9zC"
    assert key_to_hex(key) == expected_digest


def test_empty_value_has_the_blake3_empty_digest() -> None:
    assert digest(b"").hex() == "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"


@given(st.binary(max_size=2048))
def test_spellings_round_trip(data: bytes) -> None:
    key = content_key(data)
    raw = key_to_bytes(key)
    assert key == _b58_independent(raw)
    assert key_from_bytes(raw) == key
    assert hex_to_key(key_to_hex(key)) == key
    assert hex_to_bytes(key_to_hex(key).upper()) == raw
    assert validate_key(key) == key
    assert verify_value(key, data)
    assert verify_value(key_to_hex(key), data)
    assert verify_value(raw, data)
    assert not verify_value(key, data + b"x")


def test_leading_zero_digest_keeps_its_ones() -> None:
    raw = b"\x00\x00" + b"\xab" * 30
    key = key_from_bytes(raw)
    assert key.startswith("11")
    assert key_to_bytes(key) == raw


@pytest.mark.parametrize(
    ("key", "match"),
    [
        ("", "length"),
        ("1" * 45, "length"),
        ("H1epVXJ1BSfrSYKiZeqxqFqtgqPAVKUANVvNGoaXt9z0", "alphabet"),  # '0' is not base58
        ("H1epVXJ1BSfrSYKiZeqxqFqtgqPAVKUANVvNGoaXt9zI", "alphabet"),  # nor is 'I'
        ("abc", "decodes to"),
        ("zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", "decodes to"),  # 33 bytes
    ],
)
def test_malformed_keys(key: str, match: str) -> None:
    with pytest.raises(InvalidContentKey, match=match):
        key_to_bytes(key)


@pytest.mark.parametrize("hex_key", ["", "ab" * 31, "zz" * 32, "ab" * 33])
def test_malformed_hex(hex_key: str) -> None:
    with pytest.raises(InvalidContentKey):
        hex_to_bytes(hex_key)


def test_wrong_digest_length() -> None:
    with pytest.raises(InvalidContentKey):
        key_from_bytes(b"\x01" * 31)


def test_invalid_content_key_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        key_to_bytes("0")


@given(st.text(max_size=60))
def test_parser_fuzz(text: str) -> None:
    with contextlib.suppress(InvalidContentKey):
        assert len(key_to_bytes(text)) == 32


def test_errors_say_what_is_wrong() -> None:
    with pytest.raises(InvalidContentKey) as info:
        key_to_bytes(123)  # type: ignore[arg-type]
    assert str(info.value) == "content key must be a string, got int"
    with pytest.raises(InvalidContentKey) as info:
        key_to_bytes("H1epVXJ1BSfrSYKiZeqxqFqtgqPAVKUANVvNGoaXt0zI")
    assert str(info.value).endswith("outside the base58 alphabet: '0I'")
    with pytest.raises(InvalidContentKey) as info:
        key_from_bytes(b"\x01" * 31)
    assert str(info.value) == "a content digest has 32 bytes, got 31"
    with pytest.raises(InvalidContentKey) as info:
        hex_to_bytes("ab" * 31)
    assert str(info.value) == f"hex key must have 64 characters: {'ab' * 31!r}"
    with pytest.raises(InvalidContentKey) as info:
        hex_to_bytes("zz" * 32)
    assert str(info.value) == f"hex key has non-hex characters: {'zz' * 32!r}"


def test_verify_value_tells_the_spellings_apart() -> None:
    data = b"spelled three ways"
    hex_key = digest(data).hex()
    assert verify_value(hex_key.upper(), data)  # hex in either case
    # A base58 key whose every character also looks like hex is still read as base58.
    hexish = "2" + "1" * 43
    assert len(key_to_bytes(hexish)) == 32
    assert not verify_value(hexish, data)
    assert verify_value(key_from_bytes(digest(data)), data)
    # 64 characters that are not all hex are taken for a (too long) base58 key.
    with pytest.raises(InvalidContentKey, match="bad length"):
        verify_value("X" * 64, data)
