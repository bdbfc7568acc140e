"""Content keys: a value's key is the base58 (Bitcoin alphabet) BLAKE3-256 digest of its bytes.

The same 32-byte digest appears in three spellings: base58 for callers (what ``store`` returns),
lowercase hex in the database and on the wire, and raw bytes for XOR distance in the DHT.
"""

from __future__ import annotations

import binascii

import blake3

from lumera_p2p.b58 import ALPHABET as B58_ALPHABET
from lumera_p2p.b58 import decode as b58_decode
from lumera_p2p.b58 import encode as b58_encode
from lumera_p2p.errors import InvalidContentKey

DIGEST_SIZE = 32
_B58_ALPHABET = frozenset(B58_ALPHABET)
# 32 bytes never need more than 44 base58 digits; refuse longer input before decoding it.
_MAX_B58_LEN = 44


def digest(data: bytes | bytearray | memoryview) -> bytes:
    """BLAKE3-256 of ``data`` (32 bytes)."""
    return blake3.blake3(data).digest()


def content_key(data: bytes | bytearray | memoryview) -> str:
    """The base58 content key of ``data``: ``base58(BLAKE3-256(data))``."""
    return b58_encode(digest(data))


def key_to_bytes(key: str) -> bytes:
    """Decode a base58 content key to its 32 digest bytes; raise ``InvalidContentKey``."""
    if not isinstance(key, str):
        raise InvalidContentKey(f"content key must be a string, got {type(key).__name__}")
    if not key or len(key) > _MAX_B58_LEN:
        raise InvalidContentKey(f"content key {key!r} has a bad length ({len(key)})")
    try:
        raw = b58_decode(key)
    except ValueError:
        bad = set(key) - _B58_ALPHABET
        raise InvalidContentKey(
            f"content key {key!r} has characters outside the base58 alphabet: "
            f"{''.join(sorted(bad))!r}"
        ) from None
    if len(raw) != DIGEST_SIZE:
        raise InvalidContentKey(f"content key {key!r} decodes to {len(raw)} bytes, expected 32")
    return raw


def key_from_bytes(raw: bytes) -> str:
    """Encode 32 digest bytes as a base58 content key."""
    if len(raw) != DIGEST_SIZE:
        raise InvalidContentKey(f"a content digest has 32 bytes, got {len(raw)}")
    return b58_encode(raw)


def hex_to_bytes(hex_key: str) -> bytes:
    """Decode a 64-character hex key (either case) to 32 bytes; raise ``InvalidContentKey``."""
    if not isinstance(hex_key, str) or len(hex_key) != 2 * DIGEST_SIZE:
        raise InvalidContentKey(f"hex key must have 64 characters: {hex_key!r}")
    try:
        return binascii.unhexlify(hex_key)
    except (binascii.Error, ValueError) as exc:
        raise InvalidContentKey(f"hex key has non-hex characters: {hex_key!r}") from exc


def key_to_hex(key: str) -> str:
    """Base58 content key → lowercase hex (the database and wire spelling)."""
    return key_to_bytes(key).hex()


def hex_to_key(hex_key: str) -> str:
    """Hex key → base58 content key."""
    return key_from_bytes(hex_to_bytes(hex_key))


def validate_key(key: str) -> str:
    """Return ``key`` unchanged if it is a well-formed base58 content key, else raise."""
    key_to_bytes(key)
    return key


def verify_value(key: str | bytes, data: bytes | bytearray | memoryview) -> bool:
    """True if ``data`` hashes to ``key`` (base58 string, hex string or 32 raw bytes)."""
    if isinstance(key, bytes):
        expected = key
    elif len(key) == 2 * DIGEST_SIZE and all(c in "0123456789abcdefABCDEF" for c in key):
        expected = hex_to_bytes(key)
    else:
        expected = key_to_bytes(key)
    return digest(data) == expected
