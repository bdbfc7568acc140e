"""The handshake's P-256 ECDH and HKDF against an independent implementation (OpenSSL through
``cryptography``), on random keys and inputs; the Go vectors pin them too (test_go_sessions)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from lumera_p2p.secure.p256 import EphemeralKey, PeerPublicKey, hkdf_sha256

P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
scalars = st.integers(min_value=1, max_value=P256_N - 1)


def _openssl_point(scalar: int) -> bytes:
    key = ec.derive_private_key(scalar, ec.SECP256R1())
    return key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


@settings(max_examples=40, deadline=None)
@given(ours=scalars, theirs=scalars)
def test_ecdh_matches_openssl(ours: int, theirs: int) -> None:
    mine = EphemeralKey.from_scalar(ours)
    assert mine.public_bytes() == _openssl_point(ours)
    peer = PeerPublicKey.from_encoded_point(_openssl_point(theirs))
    expected = ec.derive_private_key(ours, ec.SECP256R1()).exchange(
        ec.ECDH(),
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _openssl_point(theirs)),
    )
    assert mine.exchange(peer) == expected


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=100), st.binary(max_size=100), st.integers(1, 255 * 32))
def test_hkdf_matches_openssl(secret: bytes, info: bytes, length: int) -> None:
    expected = HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret)
    assert hkdf_sha256(secret, info, length) == expected


def test_hkdf_refuses_more_than_rfc_allows() -> None:
    with pytest.raises(ValueError, match="8160"):
        hkdf_sha256(b"s", b"", 255 * 32 + 1)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=65, max_size=65))
def test_point_parsing_agrees_with_openssl(raw: bytes) -> None:
    """Any 65 bytes (04-prefixed): accepted by both or refused by both, as the same point."""
    data = b"\x04" + raw[1:]
    try:
        ossl = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), data)
    except ValueError:
        with pytest.raises(ValueError):
            PeerPublicKey.from_encoded_point(data)
        return
    assert PeerPublicKey.from_encoded_point(data).encoded() == ossl.public_bytes(
        Encoding.X962, PublicFormat.UncompressedPoint
    )


@pytest.mark.parametrize(
    "data",
    [
        b"\x04" + bytes(64),  # (0, 0): pycryptodome's point at infinity
        b"\x04" + b"\xff" * 64,  # coordinates above the prime
        b"\x02" + bytes(32),  # compressed
        _openssl_point(7)[:64],  # short
    ],
)
def test_bad_points_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        PeerPublicKey.from_encoded_point(data)


def test_valid_points_off_by_one_coordinate_refused() -> None:
    """A real point with x or y moved by the field prime (same value mod p) is refused."""
    point = _openssl_point(12345)
    p = 2**256 - 2**224 + 2**192 + 2**96 - 1
    y = int.from_bytes(point[33:], "big")
    if y + p < 2**256:
        with pytest.raises(ValueError):
            PeerPublicKey.from_encoded_point(point[:33] + (y + p).to_bytes(32, "big"))
    with pytest.raises(ValueError):
        PeerPublicKey.from_encoded_point(point[:33] + bytes(31) + b"\x01")
