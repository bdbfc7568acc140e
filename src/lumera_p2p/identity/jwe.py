"""JWE compact tokens exactly as the Go keyring's file backend writes them.

99designs/keyring stores every item as a jose2go JWE: ``alg`` PBES2-HS256+A128KW, ``enc``
A256GCM, a fresh 12-byte ``p2s`` salt and ``p2c`` = 8192, plus a ``created`` header holding Go's
``time.Now().String()``. The token is five base64url segments (no padding)::

    header . AES-KW(KEK, CEK) . iv(12) . ciphertext . tag(16)

with ``KEK = PBKDF2-HMAC-SHA256(password, alg ‖ 0x00 ‖ p2s, p2c, 16 bytes)`` and the
AES-256-GCM additional data being the ASCII header segment itself (RFC 7516/7518).

Only that one algorithm pair is accepted: this is not a general JOSE library, and refusing
anything else keeps a hostile file from choosing its own work factor or cipher. Every size is
checked before any key derivation runs, so a malformed file costs microseconds, not PBKDF2.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import re
from dataclasses import dataclass
from typing import Any

from Crypto.Cipher import AES
from Crypto.Hash import SHA256
from Crypto.Protocol.KDF import PBKDF2

from lumera_p2p.errors import JWEAuthError, JWEError, JWEUnwrapError

ALG = "PBES2-HS256+A128KW"
ENC = "A256GCM"
#: Iteration count jose2go uses when it writes a token.
DEFAULT_P2C = 8192
#: jose2go v1.7 refuses to decode a PBES2-HS256 token with a larger ``p2c``.
MAX_P2C = 1_300_000
#: Salt size jose2go writes.
SALT_BYTES = 12

# Keyring items are a few hundred bytes; these caps only exist to refuse garbage early.
MAX_TOKEN_CHARS = 1 << 20
_MAX_HEADER_CHARS = 4096
_MAX_P2S_BYTES = 1024
_KEK_BYTES = 16  # A128KW
_CEK_BYTES = 32  # A256GCM
_WRAPPED_CEK_BYTES = _CEK_BYTES + 8  # RFC 3394 adds one 64-bit block
_IV_BYTES = 12
_TAG_BYTES = 16

_B64URL = re.compile(r"[A-Za-z0-9_-]*")


@dataclass(frozen=True)
class ParsedToken:
    """A token split and checked, before any key derivation."""

    header: dict[str, Any]
    header_segment: bytes
    p2c: int
    p2s: bytes
    encrypted_key: bytes
    iv: bytes
    ciphertext: bytes
    tag: bytes


def b64url_encode(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(segment: str, what: str) -> bytes:
    """Decode unpadded base64url strictly (only the URL alphabet, no padding)."""
    if not _B64URL.fullmatch(segment) or len(segment) % 4 == 1:
        raise JWEError(f"JWE {what} is not base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - regex already filters
        raise JWEError(f"JWE {what} is not base64url") from exc


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN/Infinity; Go's does not, so neither do we.
    raise JWEError(f"JWE header holds the non-JSON constant {name}")


def _p2c_value(raw: Any) -> int:
    # Go decodes every JSON number as float64 and truncates it with int(); a bool or a string is
    # refused. We additionally refuse p2c < 1, which only a hand-made file could hold.
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise JWEError("JWE header 'p2c' is missing or not a number")
    if isinstance(raw, float) and not math.isfinite(raw):
        raise JWEError("JWE header 'p2c' is not finite")
    if raw > MAX_P2C:
        raise JWEError(f"JWE header 'p2c' = {raw} exceeds the limit of {MAX_P2C}")
    count = int(raw)
    if count < 1:
        raise JWEError(f"JWE header 'p2c' = {raw} is below 1")
    return count


def parse(token: str | bytes) -> ParsedToken:
    """Split and validate a token without doing any cryptography."""
    if isinstance(token, bytes):
        if len(token) > MAX_TOKEN_CHARS:
            raise JWEError(f"JWE token is longer than {MAX_TOKEN_CHARS} bytes")
        try:
            token = token.decode("ascii")
        except UnicodeDecodeError as exc:
            raise JWEError("JWE token is not ASCII") from exc
    if len(token) > MAX_TOKEN_CHARS:
        raise JWEError(f"JWE token is longer than {MAX_TOKEN_CHARS} characters")
    token = token.strip()
    parts = token.split(".")
    if len(parts) != 5:
        raise JWEError(f"JWE compact token needs 5 segments, found {len(parts)}")
    h64, ek64, iv64, ct64, tag64 = parts
    if len(h64) > _MAX_HEADER_CHARS:
        raise JWEError("JWE header is too long")
    header_raw = b64url_decode(h64, "header")
    try:
        header = json.loads(header_raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, JWEError):
            raise
        raise JWEError("JWE header is not JSON") from exc
    if not isinstance(header, dict):
        raise JWEError("JWE header is not a JSON object")
    if header.get("alg") != ALG:
        raise JWEError(f"JWE 'alg' must be {ALG!r}, found {header.get('alg')!r}")
    if header.get("enc") != ENC:
        raise JWEError(f"JWE 'enc' must be {ENC!r}, found {header.get('enc')!r}")
    if "zip" in header:
        # jose2go could inflate DEFLATE payloads, but 99designs never compresses; refusing it
        # also rules out decompression bombs.
        raise JWEError("compressed JWE payloads ('zip') are not supported")
    p2c = _p2c_value(header.get("p2c"))
    p2s_text = header.get("p2s")
    if not isinstance(p2s_text, str):
        raise JWEError("JWE header 'p2s' is missing or not a string")
    p2s = b64url_decode(p2s_text, "'p2s'")
    if len(p2s) > _MAX_P2S_BYTES:
        raise JWEError("JWE header 'p2s' is too long")
    encrypted_key = b64url_decode(ek64, "encrypted key")
    if len(encrypted_key) != _WRAPPED_CEK_BYTES:
        raise JWEError(
            f"JWE encrypted key must be {_WRAPPED_CEK_BYTES} bytes, found {len(encrypted_key)}"
        )
    iv = b64url_decode(iv64, "iv")
    if len(iv) != _IV_BYTES:
        raise JWEError(f"JWE iv must be {_IV_BYTES} bytes, found {len(iv)}")
    tag = b64url_decode(tag64, "tag")
    if len(tag) != _TAG_BYTES:
        raise JWEError(f"JWE tag must be {_TAG_BYTES} bytes, found {len(tag)}")
    ciphertext = b64url_decode(ct64, "ciphertext")
    return ParsedToken(
        header=header,
        header_segment=h64.encode("ascii"),
        p2c=p2c,
        p2s=p2s,
        encrypted_key=encrypted_key,
        iv=iv,
        ciphertext=ciphertext,
        tag=tag,
    )


def derive_kek(password: str, p2s: bytes, p2c: int) -> bytes:
    """PBKDF2-HMAC-SHA256 over ``alg ‖ 0x00 ‖ p2s`` (RFC 7518 §4.8.1.1), 16 bytes."""
    salt = ALG.encode("ascii") + b"\x00" + p2s
    # pycryptodome's, not hashlib's: that one needs OpenSSL, which node processes leave out.
    kek: bytes = PBKDF2(
        password.encode("utf-8"), salt, _KEK_BYTES, count=p2c, hmac_hash_module=SHA256
    )
    return kek


def decrypt(token: str | bytes, password: str) -> bytes:
    """Decrypt a keyring token; return the payload bytes.

    Raises :class:`JWEError` for a malformed token, :class:`JWEUnwrapError` when the password
    does not unwrap the content key, :class:`JWEAuthError` when the ciphertext was altered.
    """
    parsed = parse(token)
    return decrypt_parsed(parsed, password)


def decrypt_parsed(parsed: ParsedToken, password: str) -> bytes:
    """Decrypt a token already checked by :func:`parse`."""
    kek = derive_kek(password, parsed.p2s, parsed.p2c)
    try:
        cek = AES.new(kek, AES.MODE_KW).unseal(parsed.encrypted_key)
    except ValueError as exc:  # RFC 3394's integrity check failed
        raise JWEUnwrapError("the password does not unwrap the JWE content key") from exc
    gcm = AES.new(cek, AES.MODE_GCM, nonce=parsed.iv, mac_len=_TAG_BYTES)
    gcm.update(parsed.header_segment)
    try:
        return gcm.decrypt_and_verify(parsed.ciphertext, parsed.tag)
    except ValueError as exc:  # the tag does not match
        raise JWEAuthError("JWE authentication failed: the token was modified") from exc


def encrypt(
    payload: bytes,
    password: str,
    *,
    created: str,
    p2c: int = DEFAULT_P2C,
    p2s: bytes | None = None,
    cek: bytes | None = None,
    iv: bytes | None = None,
) -> str:
    """Encrypt ``payload`` into a token jose2go (and so the Go keyring) decodes.

    The header is Go's ``json.Marshal`` of a map: keys sorted, no spaces, ``p2c`` a JSON
    number. ``p2s``, ``cek`` and ``iv`` are random unless given (tests pin them).
    """
    if not 1 <= p2c <= MAX_P2C:
        raise JWEError(f"p2c must be between 1 and {MAX_P2C}")
    p2s = os.urandom(SALT_BYTES) if p2s is None else p2s
    cek = os.urandom(_CEK_BYTES) if cek is None else cek
    iv = os.urandom(_IV_BYTES) if iv is None else iv
    if len(cek) != _CEK_BYTES or len(iv) != _IV_BYTES:
        raise JWEError("A256GCM needs a 32-byte key and a 12-byte iv")
    header = {"alg": ALG, "created": created, "enc": ENC, "p2c": p2c, "p2s": b64url_encode(p2s)}
    h64 = b64url_encode(
        json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )
    encrypted_key = AES.new(derive_kek(password, p2s, p2c), AES.MODE_KW).seal(cek)
    gcm = AES.new(cek, AES.MODE_GCM, nonce=iv, mac_len=_TAG_BYTES)
    gcm.update(h64.encode("ascii"))
    ciphertext, tag = gcm.encrypt_and_digest(payload)
    return ".".join(
        [
            h64,
            b64url_encode(encrypted_key),
            b64url_encode(iv),
            b64url_encode(ciphertext),
            b64url_encode(tag),
        ]
    )
