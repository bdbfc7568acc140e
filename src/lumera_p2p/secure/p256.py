"""The handshake's ephemeral P-256 ECDH and its HKDF-SHA256, on pycryptodome and the stdlib.

The node already loads pycryptodome (Keccak and RIPEMD-160 for addresses, AES for the
keyring), so the handshake uses its P-256 code too instead of ``cryptography``, whose
statically linked OpenSSL alone maps about 7 MiB into every node process. The bytes are the
same: SEC1 uncompressed public keys (Go ``ecdh.PublicKey.Bytes()``), the shared secret is the
32-byte big-endian x-coordinate (Go ``ecdh.PrivateKey.ECDH``), and HKDF is RFC 5869's.
"""

from __future__ import annotations

import hmac
from typing import Final

from Crypto.Protocol.DH import key_agreement
from Crypto.PublicKey import ECC

CURVE: Final = "p256"
#: SEC1 uncompressed point: ``04 ‖ X ‖ Y``.
POINT_SIZE: Final = 65
_SHA256_SIZE: Final = 32
#: The field prime of P-256.
_P: Final = 2**256 - 2**224 + 2**192 + 2**96 - 1


class PeerPublicKey:
    """A peer's ephemeral public key, checked to be a point on P-256."""

    __slots__ = ("_key",)

    def __init__(self, key: ECC.EccKey) -> None:
        self._key = key

    @classmethod
    def from_encoded_point(cls, data: bytes) -> PeerPublicKey:
        """Parse ``04 ‖ X ‖ Y``; ``ValueError`` for anything that is not such a point on P-256."""
        if len(data) != POINT_SIZE or data[0] != 0x04:
            raise ValueError("not an uncompressed P-256 point")
        if int.from_bytes(data[1:33], "big") >= _P or int.from_bytes(data[33:], "big") >= _P:
            raise ValueError("a P-256 coordinate is not below the field prime")
        key = ECC.import_key(bytes(data), curve_name=CURVE)  # ValueError when off the curve
        # pycryptodome reads (0, 0) as the point at infinity, which has no encoding in SEC1.
        if key.pointQ.is_point_at_infinity():
            raise ValueError("the point at infinity is not a public key")
        return cls(key)

    def encoded(self) -> bytes:
        """SEC1 uncompressed ``04 ‖ X ‖ Y``."""
        return bytes(self._key.export_key(format="raw"))


class EphemeralKey:
    """A P-256 private key for one handshake."""

    __slots__ = ("_key",)

    def __init__(self, key: ECC.EccKey) -> None:
        self._key = key

    @classmethod
    def generate(cls) -> EphemeralKey:
        """A fresh random key."""
        return cls(ECC.generate(curve=CURVE))

    @classmethod
    def from_scalar(cls, scalar: int) -> EphemeralKey:
        """The key with private scalar ``scalar`` (1 ≤ scalar < n; tests replay Go's)."""
        return cls(ECC.construct(curve=CURVE, d=scalar))

    def public_key(self) -> PeerPublicKey:
        """Its public half."""
        return PeerPublicKey(self._key.public_key())

    def public_bytes(self) -> bytes:
        """SEC1 uncompressed ``04 ‖ X ‖ Y``."""
        return self.public_key().encoded()

    def exchange(self, peer: PeerPublicKey) -> bytes:
        """ECDH: the 32-byte big-endian x-coordinate of ``scalar × peer``."""
        secret: bytes = key_agreement(static_priv=self._key, static_pub=peer._key, kdf=bytes)
        return secret


def hkdf_sha256(secret: bytes, info: bytes, length: int, salt: bytes = b"") -> bytes:
    """RFC 5869 HKDF-SHA256 (an empty ``salt`` is 32 zero bytes, as the RFC says).

    Not pycryptodome's ``Crypto.Protocol.KDF.HKDF``: that module loads every KDF it has
    (scrypt, bcrypt, ...), 3.7 MiB of RSS in each node process for these ten lines.
    """
    if length > 255 * _SHA256_SIZE:
        raise ValueError("HKDF-SHA256 yields at most 8160 bytes")
    prk = hmac.digest(salt or bytes(_SHA256_SIZE), secret, "sha256")
    out, block = b"", b""
    counter = 1
    while len(out) < length:
        block = hmac.digest(prk, block + info + bytes([counter]), "sha256")
        out += block
        counter += 1
    return out[:length]
