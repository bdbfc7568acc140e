"""eth_secp256k1 keys, addresses and signatures against the spec's vectors and rules."""

from __future__ import annotations

import contextlib
import hashlib

import blake3
import coincurve
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    decode_dss_signature,
    encode_dss_signature,
)
from hypothesis import given
from hypothesis import strategies as st

from lumera_p2p.errors import IdentityError, SignatureError
from lumera_p2p.identity import (
    KeyType,
    PrivateKey,
    PublicKey,
    address_from_bytes,
    address_to_bytes,
    keccak256,
    node_id,
    protowire,
    routing_id,
)
from lumera_p2p.identity.keys import SECP256K1_N, der_signature, derive_bip32

# chain-and-keys.md §2.2 [V]
MNEMONIC = (
    "odor kiss switch swarm spell make planet bundle skate ozone path planet exclude butter "
    "atom ahead angle royal shuffle door prevent merry alter robust"
)
PRIV = "f8edb08f20857cff9011b9ce2075fab3143a2bfbf7fa91919128e8c3a8575208"
PUB = "029dce146b7c35514dbad04204dca51de209da0cc1de77fb0a3d500b3867c605ab"
ADDR_HEX = "96390a20acd0de778d1e6fe4c60475c6cf6f0600"
ADDRESS = "lumera1jcus5g9v6r080rg7dljvvpr4cm8k7psqwg7tj8"
ROUTING = "d1cde1cd5308b2bf93a151c381d19584a08aed44b30223c20702dfadcc13d531"
ANY = (
    "0a292f636f736d6f732e65766d2e63727970746f2e76312e657468736563703235366b312e5075624b6579"
    "12230a21029dce146b7c35514dbad04204dca51de209da0cc1de77fb0a3d500b3867c605ab"
)
# The wrong (coin type 118) derivation named in the spec.
ADDRESS_COIN_118 = "lumera1em87kgrvgttrkvuamtetyaagjrhnu3vjy44at4"

secrets = st.integers(min_value=1, max_value=SECP256K1_N - 1).map(lambda k: k.to_bytes(32, "big"))


def test_mnemonic_vector() -> None:
    key = PrivateKey.from_mnemonic(MNEMONIC)
    assert key.secret.hex() == PRIV
    assert key.public_key.compressed.hex() == PUB
    assert key.public_key.address_bytes.hex() == ADDR_HEX
    assert key.address == ADDRESS
    assert key.public_key.to_any().hex() == ANY
    assert routing_id(ADDRESS).hex() == ROUTING
    assert node_id(ADDRESS) == ADDRESS.encode()


def test_mnemonic_whitespace_is_normalised() -> None:
    messy = "  " + MNEMONIC.replace(" ", "\n  ", 3) + "\n"
    assert PrivateKey.from_mnemonic(messy).address == ADDRESS


def test_legacy_coin_118_path_gives_a_different_address() -> None:
    legacy = PrivateKey.from_mnemonic(MNEMONIC, path="m/44'/118'/0'/0/0")
    pub = PublicKey(legacy.public_key.compressed, KeyType.SECP256K1)
    assert pub.address == ADDRESS_COIN_118
    assert legacy.address != ADDRESS


@pytest.mark.parametrize(
    "words",
    [
        MNEMONIC.rsplit(" ", 1)[0],  # 23 words
        MNEMONIC.replace("robust", "robots"),  # unknown word
        MNEMONIC.replace("odor", "kiss", 1),  # bad checksum
        "",
    ],
)
def test_bad_mnemonic_is_refused(words: str) -> None:
    with pytest.raises(IdentityError, match="mnemonic"):
        PrivateKey.from_mnemonic(words)


def test_bip32_published_vector_1() -> None:
    # BIP-0032 test vector 1 (seed 000102…0f).
    seed = bytes(range(16))
    assert derive_bip32(seed, "m").hex() == (
        "e8f32e723decf4051aefac8e2c93c9c5b214313817cdb01a1494b917c8436b35"
    )
    assert derive_bip32(seed, "m/0'").hex() == (
        "edb2e14f9ee77d26dd93b4ecede8d16ed408ce149b6cd80b0715a2d911a0afea"
    )
    assert derive_bip32(seed, "m/0'/1").hex() == (
        "3c6cb8d0f6a264c91ea8b5030fadaa8e538b020f0a387421a12de9319dc93368"
    )
    assert derive_bip32(seed, "m/0'/1/2'").hex() == (
        "cbce0d719ecf7431d88e6a89fa1483e02e35092af60c042b1df2ff59fa424dca"
    )


@pytest.mark.parametrize("path", ["44'/60'", "m/x", "m/2147483648", "m//1", "n/0"])
def test_bad_hd_path(path: str) -> None:
    with pytest.raises(IdentityError, match="path"):
        derive_bip32(b"\x01" * 64, path)


def test_address_round_trip_and_errors() -> None:
    raw = bytes.fromhex(ADDR_HEX)
    assert address_from_bytes(raw) == ADDRESS
    assert address_to_bytes(ADDRESS) == raw
    with pytest.raises(IdentityError, match="prefix"):
        address_to_bytes(address_from_bytes(raw, hrp="cosmos"))
    with pytest.raises(IdentityError, match="bech32"):
        address_to_bytes(ADDRESS[:-1] + ("q" if ADDRESS[-1] != "q" else "p"))
    with pytest.raises(IdentityError, match="20 bytes"):
        address_from_bytes(raw[:19])


def test_signature_layout_and_independent_verification() -> None:
    key = PrivateKey.from_mnemonic(MNEMONIC)
    message = b"handshake info bytes"
    sig = key.sign(message)
    assert len(sig) == 65
    assert sig[64] in (0, 1)
    digest = keccak256(message)
    # go-ethereum semantics: the recovery id recovers our public key.
    recovered = coincurve.PublicKey.from_signature_and_message(sig, digest, hasher=None)
    assert recovered.format(compressed=True).hex() == PUB
    # Verified independently with OpenSSL (via cryptography), over the Keccak-256 digest.
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big")
    assert s <= SECP256K1_N // 2
    ossl = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), bytes.fromhex(PUB))
    ossl.verify(encode_dss_signature(r, s), digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    # and by our verifier, with 65 or 64 bytes.
    key.public_key.verify(message, sig)
    key.public_key.verify(message, sig[:64])


def test_keccak_is_not_sha3() -> None:
    assert keccak256(b"").hex() == (
        "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    )
    assert keccak256(b"") != hashlib.sha3_256(b"").digest()


def test_high_s_signature_is_refused() -> None:
    key = PrivateKey.from_mnemonic(MNEMONIC)
    message = b"m"
    sig = key.sign(message)
    s = int.from_bytes(sig[32:64], "big")
    high = sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([sig[64] ^ 1])
    # The high-S twin is mathematically valid ECDSA (OpenSSL accepts it)...
    ossl = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), bytes.fromhex(PUB))
    ossl.verify(
        encode_dss_signature(int.from_bytes(sig[:32], "big"), SECP256K1_N - s),
        keccak256(message),
        ec.ECDSA(Prehashed(hashes.SHA256())),
    )
    # ...but the Go verifier (libsecp256k1) refuses it, and so do we.
    with pytest.raises(SignatureError, match="high S"):
        key.public_key.verify(message, high)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda s: s[:63], "64 or 65"),
        (lambda s: s + b"\x00", "64 or 65"),
        (lambda s: b"\x00" * 32 + s[32:], "out of range"),
        (lambda s: s[:40] + bytes([s[40] ^ 1]) + s[41:], "does not match"),
    ],
)
def test_malformed_signatures(mutate: object, match: str) -> None:
    key = PrivateKey.from_mnemonic(MNEMONIC)
    sig = key.sign(b"msg")
    assert callable(mutate)
    with pytest.raises(SignatureError, match=match):
        key.public_key.verify(b"msg", mutate(sig))


def test_signature_over_other_message_or_key_fails() -> None:
    key = PrivateKey.from_mnemonic(MNEMONIC)
    other = PrivateKey(b"\x01" * 32)
    sig = key.sign(b"a")
    with pytest.raises(SignatureError):
        key.public_key.verify(b"b", sig)
    with pytest.raises(SignatureError):
        other.public_key.verify(b"a", sig)


def test_legacy_secp256k1_verification() -> None:
    key = PrivateKey(b"\x07" * 32)
    pub = PublicKey(key.public_key.compressed, KeyType.SECP256K1)
    der = coincurve.PrivateKey(key.secret).sign(
        b"legacy", hasher=lambda m: hashlib.sha256(m).digest()
    )
    pk = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), pub.compressed)
    pk.verify(der, b"legacy", ec.ECDSA(hashes.SHA256()))  # sanity: DER is SHA-256 ECDSA
    r, s = decode_dss_signature(der)
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    pub.verify(b"legacy", raw)
    with pytest.raises(SignatureError, match="64 bytes"):
        pub.verify(b"legacy", raw + b"\x00")
    with pytest.raises(SignatureError):
        pub.verify(b"other", raw)
    # The legacy Any round-trips with its own type URL.
    assert PublicKey.from_any(pub.to_any()) == pub
    assert b"/cosmos.crypto.secp256k1.PubKey" in pub.to_any()


def test_private_key_any_round_trip_and_legacy_refusal() -> None:
    key = PrivateKey.from_mnemonic(MNEMONIC)
    assert PrivateKey.from_any(key.to_any()) == key
    legacy = protowire.encode_any(
        "/cosmos.crypto.secp256k1.PrivKey", protowire.field_bytes(1, key.secret)
    )
    with pytest.raises(IdentityError, match="legacy"):
        PrivateKey.from_any(legacy)


def test_private_key_repr_hides_secret() -> None:
    key = PrivateKey.from_mnemonic(MNEMONIC)
    assert PRIV not in repr(key)
    assert ADDRESS in repr(key)


@pytest.mark.parametrize(
    "secret", [b"", b"\x00" * 32, SECP256K1_N.to_bytes(32, "big"), b"\x01" * 33]
)
def test_invalid_private_keys(secret: bytes) -> None:
    with pytest.raises(IdentityError):
        PrivateKey(secret)


def test_invalid_public_keys() -> None:
    with pytest.raises(IdentityError):
        PublicKey(bytes.fromhex(PUB)[:32])
    with pytest.raises(IdentityError):
        PublicKey(b"\x04" + bytes(32))
    with pytest.raises(IdentityError):
        PublicKey(b"\x02" + b"\xff" * 32)  # x ≥ p: not on the curve


@given(secret=secrets, message=st.binary(max_size=300))
def test_sign_verify_property(secret: bytes, message: bytes) -> None:
    key = PrivateKey(secret)
    sig = key.sign(message)
    key.public_key.verify(message, sig)
    assert int.from_bytes(sig[32:64], "big") <= SECP256K1_N // 2
    # The address is keccak of the uncompressed point, computed here independently.
    ossl = ec.derive_private_key(int.from_bytes(secret, "big"), ec.SECP256K1())
    uncompressed = ossl.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    assert key.public_key.address_bytes == keccak256(uncompressed[1:])[-20:]
    assert routing_id(key.address) == blake3.blake3(key.address.encode()).digest()


@given(raw=st.binary(max_size=200))
def test_public_key_any_parser_fuzz(raw: bytes) -> None:
    with contextlib.suppress(IdentityError):
        PublicKey.from_any(raw)


@given(secret=secrets)
def test_tampered_any_is_refused_or_different(secret: bytes) -> None:
    pub = PrivateKey(secret).public_key
    raw = bytearray(pub.to_any())
    raw[-1] ^= 0x01
    try:
        other = PublicKey.from_any(bytes(raw))
    except IdentityError:
        return
    assert other != pub


def test_openssl_rejects_what_we_reject() -> None:
    """A sanity check that the high-S test above is not vacuous for OpenSSL itself."""
    key = PrivateKey(b"\x05" * 32)
    ossl = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), key.public_key.compressed)
    with pytest.raises(InvalidSignature):
        ossl.verify(
            encode_dss_signature(1, 1), keccak256(b"x"), ec.ECDSA(Prehashed(hashes.SHA256()))
        )


@given(st.integers(1, SECP256K1_N - 1), st.integers(1, SECP256K1_N - 1))
def test_der_signature_matches_openssl(r: int, s: int) -> None:
    assert der_signature(r, s) == encode_dss_signature(r, s)
