"""Lumera account keys: eth_secp256k1 private and public keys, addresses and signatures.

Lumera (since its EVM upgrade) uses cosmos/evm ``eth_secp256k1`` keys: secp256k1 points whose
20-byte address is the Ethereum one (the last 20 bytes of Keccak-256 of the uncompressed public
key without its ``0x04`` prefix), written as bech32 with the human-readable part ``lumera``.
Signatures are go-ethereum's: 65 bytes ``r ‖ s ‖ v`` over Keccak-256 of the message, low S.

Legacy Cosmos ``secp256k1`` public keys (RIPEMD160(SHA-256) addresses, SHA-256 signatures of
exactly 64 bytes) are understood for verification only, because the Go handshake still accepts
them; this package never creates one.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass, field
from enum import Enum

import bech32
import blake3
import coincurve
from coincurve.ecdsa import cdata_to_der, deserialize_compact
from Crypto.Hash import RIPEMD160, keccak

from lumera_p2p.errors import IdentityError, ProtobufDecodeError, SignatureError
from lumera_p2p.identity import protowire

ACCOUNT_HRP = "lumera"
DEFAULT_HD_PATH = "m/44'/60'/0'/0/0"
ETH_PUBKEY_TYPE_URL = "/cosmos.evm.crypto.v1.ethsecp256k1.PubKey"
ETH_PRIVKEY_TYPE_URL = "/cosmos.evm.crypto.v1.ethsecp256k1.PrivKey"
LEGACY_PUBKEY_TYPE_URL = "/cosmos.crypto.secp256k1.PubKey"
LEGACY_PRIVKEY_TYPE_URL = "/cosmos.crypto.secp256k1.PrivKey"

#: Order of the secp256k1 group.
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = SECP256K1_N // 2
_HARDENED = 0x80000000


class KeyType(Enum):
    """The two secp256k1 key flavours a Lumera peer may present."""

    ETH_SECP256K1 = "eth_secp256k1"
    SECP256K1 = "secp256k1"


def keccak256(data: bytes) -> bytes:
    """Ethereum Keccak-256 (not ``hashlib.sha3_256``, whose padding differs)."""
    return keccak.new(digest_bits=256, data=data).digest()


# --- addresses -------------------------------------------------------------------------------


def address_from_bytes(raw: bytes, hrp: str = ACCOUNT_HRP) -> str:
    """Bech32-encode a 20-byte account address (``lumera1…``)."""
    if len(raw) != 20:
        raise IdentityError(f"an account address has 20 bytes, got {len(raw)}")
    data = bech32.convertbits(list(raw), 8, 5, True)
    assert data is not None  # 8→5 with padding always succeeds
    return str(bech32.bech32_encode(hrp, data))


def address_to_bytes(address: str, hrp: str = ACCOUNT_HRP) -> bytes:
    """Decode a bech32 account address, checking its HRP and that it holds 20 bytes."""
    got_hrp, data = bech32.bech32_decode(address)
    if got_hrp is None or data is None:
        raise IdentityError(f"not a valid bech32 address: {address!r}")
    if got_hrp != hrp:
        raise IdentityError(f"address {address!r} has prefix {got_hrp!r}, expected {hrp!r}")
    raw = bech32.convertbits(data, 5, 8, False)
    if raw is None or len(raw) != 20:
        raise IdentityError(f"address {address!r} does not hold 20 bytes")
    return bytes(raw)


def validate_address(address: str) -> str:
    """Return ``address`` if it is a well-formed ``lumera1…`` account address, else raise."""
    address_to_bytes(address)
    return address


def node_id(address: str) -> bytes:
    """The P2P node ID: the bech32 address string as ASCII bytes (as the Go node uses it)."""
    return address.encode("ascii")


def routing_id(address: str) -> bytes:
    """The 32-byte Kademlia routing ID: BLAKE3-256 of the node ID bytes."""
    return blake3.blake3(node_id(address)).digest()


# --- public keys -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PublicKey:
    """A secp256k1 public key in its 33-byte compressed form, with its key flavour."""

    compressed: bytes
    key_type: KeyType = KeyType.ETH_SECP256K1
    _point: coincurve.PublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.compressed) != 33 or self.compressed[0] not in (2, 3):
            raise IdentityError("a secp256k1 public key is 33 bytes, compressed (02/03 prefix)")
        try:
            point = coincurve.PublicKey(self.compressed)
        except ValueError as exc:
            raise IdentityError("public key is not a point on secp256k1") from exc
        object.__setattr__(self, "_point", point)

    @property
    def uncompressed(self) -> bytes:
        """The 65-byte SEC1 uncompressed form ``04 ‖ X ‖ Y``."""
        return bytes(self._point.format(compressed=False))

    @property
    def address_bytes(self) -> bytes:
        """The 20-byte account address of this key (depends on the key flavour)."""
        if self.key_type is KeyType.ETH_SECP256K1:
            return keccak256(self.uncompressed[1:])[-20:]
        sha = hashlib.sha256(self.compressed).digest()
        return RIPEMD160.new(sha).digest()

    @functools.cached_property
    def address(self) -> str:
        """The ``lumera1…`` bech32 account address (computed once: every handshake asks)."""
        return address_from_bytes(self.address_bytes)

    def to_any(self) -> bytes:
        """The key as a serialized ``google.protobuf.Any`` (what the handshake carries)."""
        url = (
            ETH_PUBKEY_TYPE_URL
            if self.key_type is KeyType.ETH_SECP256K1
            else LEGACY_PUBKEY_TYPE_URL
        )
        return protowire.encode_any(url, protowire.field_bytes(1, self.compressed))

    @classmethod
    def from_any(cls, raw: bytes) -> PublicKey:
        """Parse a ``google.protobuf.Any`` public key (eth_secp256k1 or legacy secp256k1)."""
        try:
            type_url, value = protowire.decode_any(raw)
            if type_url == ETH_PUBKEY_TYPE_URL:
                key_type = KeyType.ETH_SECP256K1
            elif type_url == LEGACY_PUBKEY_TYPE_URL:
                key_type = KeyType.SECP256K1
            else:
                raise IdentityError(f"unsupported public key type {type_url!r}")
            key = protowire.get_bytes(protowire.parse_fields(value), 1)
        except ProtobufDecodeError as exc:
            raise IdentityError(f"malformed public key Any: {exc}") from exc
        if key is None:
            raise IdentityError("public key Any holds no key bytes")
        return cls(key, key_type)

    def verify(self, message: bytes, signature: bytes) -> None:
        """Check ``signature`` over ``message`` as the Go node does; raise ``SignatureError``.

        eth_secp256k1: 64 bytes ``r ‖ s`` or 65 bytes ``r ‖ s ‖ v`` (``v`` is ignored), digest
        Keccak-256 of the message. Legacy secp256k1: exactly 64 bytes, digest SHA-256. Both
        refuse a high-S signature (S > n/2), as libsecp256k1 does.
        """
        if self.key_type is KeyType.ETH_SECP256K1:
            if len(signature) not in (64, 65):
                raise SignatureError(f"signature must be 64 or 65 bytes, got {len(signature)}")
            digest = keccak256(message)
        else:
            if len(signature) != 64:
                raise SignatureError(f"signature must be 64 bytes, got {len(signature)}")
            digest = hashlib.sha256(message).digest()
        r = int.from_bytes(signature[0:32], "big")
        s = int.from_bytes(signature[32:64], "big")
        if not (0 < r < SECP256K1_N and 0 < s < SECP256K1_N):
            raise SignatureError("signature r or s out of range")
        if s > _HALF_N:
            raise SignatureError("signature has a high S value (not canonical)")
        der = der_signature(r, s)
        if not self._point.verify(der, digest, hasher=None):
            raise SignatureError("signature does not match the key and message")


# --- private keys ----------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class PrivateKey:
    """An eth_secp256k1 private key (32 bytes). Its ``repr`` never shows the secret."""

    secret: bytes
    _key: coincurve.PrivateKey = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.secret) != 32:
            raise IdentityError(f"a private key has 32 bytes, got {len(self.secret)}")
        k = int.from_bytes(self.secret, "big")
        if not 0 < k < SECP256K1_N:
            raise IdentityError("private key is out of the secp256k1 range")
        object.__setattr__(self, "_key", coincurve.PrivateKey(self.secret))

    def __repr__(self) -> str:
        return f"PrivateKey(address={self.address!r})"

    @classmethod
    def from_mnemonic(
        cls, mnemonic: str, passphrase: str = "", path: str = DEFAULT_HD_PATH
    ) -> PrivateKey:
        """Derive the key of a BIP39 mnemonic at a BIP32 path (default ``m/44'/60'/0'/0/0``)."""
        words = " ".join(mnemonic.split())
        from mnemonic import Mnemonic  # noqa: PLC0415 (word lists only when asked)

        checker = Mnemonic("english")
        if not checker.check(words):
            raise IdentityError("invalid mnemonic: wrong word count, unknown word or bad checksum")
        seed = Mnemonic.to_seed(words, passphrase)
        return cls(derive_bip32(seed, path))

    @classmethod
    def generate(cls) -> tuple[PrivateKey, str]:
        """A new key from a fresh 24-word mnemonic; returns ``(key, mnemonic)``."""
        from mnemonic import Mnemonic  # noqa: PLC0415

        words = Mnemonic("english").generate(strength=256)
        return cls.from_mnemonic(words), words

    @functools.cached_property
    def public_key(self) -> PublicKey:
        """The matching eth_secp256k1 public key."""
        return PublicKey(bytes(self._key.public_key.format(compressed=True)))

    @property
    def address(self) -> str:
        """The ``lumera1…`` account address."""
        return self.public_key.address

    def sign(self, message: bytes) -> bytes:
        """Sign as the Go handshake does: 65 bytes ``r ‖ s ‖ v`` over Keccak-256, low S.

        cosmos/evm signs a message of exactly 32 bytes as if it were already a digest; Go
        verifiers always hash, so such a signature would not verify. We always hash.
        """
        sig = bytes(self._key.sign_recoverable(keccak256(message), hasher=None))
        return sig

    def to_any(self) -> bytes:
        """The key as a serialized ``Any`` (as stored in a keyring ``Record.Local``)."""
        return protowire.encode_any(ETH_PRIVKEY_TYPE_URL, protowire.field_bytes(1, self.secret))

    @classmethod
    def from_any(cls, raw: bytes) -> PrivateKey:
        """Parse an ``Any``-wrapped eth_secp256k1 private key; refuse legacy keys clearly."""
        try:
            type_url, value = protowire.decode_any(raw)
            key = protowire.get_bytes(protowire.parse_fields(value), 1)
        except ProtobufDecodeError as exc:
            raise IdentityError(f"malformed private key Any: {exc}") from exc
        if type_url == LEGACY_PRIVKEY_TYPE_URL:
            raise IdentityError(
                "this is a legacy secp256k1 (coin type 118) key; Lumera supernodes need an "
                "eth_secp256k1 key: re-import the mnemonic with coin type 60"
            )
        if type_url != ETH_PRIVKEY_TYPE_URL:
            raise IdentityError(f"unsupported private key type {type_url!r}")
        if key is None:
            raise IdentityError("private key Any holds no key bytes")
        return cls(key)


def _parse_path(path: str) -> list[int]:
    parts = path.split("/")
    if not parts or parts[0] != "m":
        raise IdentityError(f"HD path must start with 'm/': {path!r}")
    indexes = []
    for part in parts[1:]:
        hardened = part.endswith("'") or part.endswith("h")
        digits = part[:-1] if hardened else part
        if not digits.isdigit() or int(digits) >= _HARDENED:
            raise IdentityError(f"bad HD path component {part!r} in {path!r}")
        indexes.append(int(digits) + (_HARDENED if hardened else 0))
    return indexes


def derive_bip32(seed: bytes, path: str) -> bytes:
    """BIP32 secp256k1 private key derivation from a BIP39 seed along ``path``."""
    digest = hmac.digest(b"Bitcoin seed", seed, "sha512")
    key, chain = digest[:32], digest[32:]
    if not 0 < int.from_bytes(key, "big") < SECP256K1_N:
        raise IdentityError("seed gives an invalid master key")
    for index in _parse_path(path):
        if index & _HARDENED:
            data = b"\x00" + key + index.to_bytes(4, "big")
        else:
            pub = coincurve.PrivateKey(key).public_key.format(compressed=True)
            data = bytes(pub) + index.to_bytes(4, "big")
        digest = hmac.digest(chain, data, "sha512")
        tweak = int.from_bytes(digest[:32], "big")
        child = (tweak + int.from_bytes(key, "big")) % SECP256K1_N
        if tweak >= SECP256K1_N or child == 0:
            # Probability ~2^-127; BIP32 says skip to the next index, Go's library errors.
            raise IdentityError(f"HD derivation hit an invalid key at index {index}")
        key, chain = child.to_bytes(32, "big"), digest[32:]
    return key


def der_signature(r: int, s: int) -> bytes:
    """ASN.1 DER ``SEQUENCE { INTEGER r, INTEGER s }`` for ``0 < r, s < n`` (what coincurve's
    ``verify`` reads), by libsecp256k1 itself, so that verifying loads no second crypto library."""
    return bytes(cdata_to_der(deserialize_compact(r.to_bytes(32, "big") + s.to_bytes(32, "big"))))
