"""ASCII-armored private keys as ``lumerad keys export`` writes them.

The format is Cosmos SDK ``crypto/armor.go`` on top of Go's OpenPGP armor::

    -----BEGIN TENDERMINT PRIVATE KEY-----
    kdf: bcrypt                      (or scrypt, with "kdfparams: n=32768,r=8,p=1,dklen=32")
    salt: A790BB721D1C094260EA84F5E5B72289
    type: eth_secp256k1

    <base64 of nonce(24) ‖ secretbox(xsalsa20-poly1305)>
    =f3l4                            (CRC-24 of the body, RFC 4880 §6.1)
    -----END TENDERMINT PRIVATE KEY-----

The secretbox key comes from the passphrase: ``bcrypt`` is Tendermint's fork (cost 12, ``$2a$``,
the 16 header salt bytes as the bcrypt salt) hashed once more with SHA-256; ``scrypt`` uses the
header's parameters directly. The plaintext is the amino encoding of the key: a 4-byte type
prefix, a length byte ``0x20`` and the 32 secret bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import Literal

import bcrypt
import nacl.exceptions
import nacl.secret

from lumera_p2p.errors import IdentityError, WrongPassphrase
from lumera_p2p.identity.keys import KeyType, PrivateKey

BLOCK_TYPE_PRIVATE_KEY = "TENDERMINT PRIVATE KEY"

#: Amino prefix of cosmos/evm ``os/PrivKeyEthSecp256k1``.
AMINO_PREFIX_ETH = bytes.fromhex("2a5ece93")
#: Amino prefix of ``tendermint/PrivKeySecp256k1`` (legacy Cosmos key).
AMINO_PREFIX_LEGACY = bytes.fromhex("e1b0f79b")

#: Tendermint's ``BcryptSecurityParameter``; the header does not carry it.
BCRYPT_COST = 12
#: Cosmos SDK ``ScryptDefaultParams``.
SCRYPT_DEFAULT = (1 << 15, 8, 1, 32)

MAX_ARMOR_CHARS = 64 * 1024
_MAX_LINE = 96  # Go's armor reader refuses longer body lines
_NONCE_BYTES = nacl.secret.SecretBox.NONCE_SIZE
_MAC_BYTES = nacl.secret.SecretBox.MACBYTES
_BEGIN = "-----BEGIN "
_END = "-----END "
_DASHES = "-----"
_CRC24_INIT = 0xB704CE
_CRC24_POLY = 0x1864CFB
# Upper bounds on scrypt work from an untrusted header: n=2^20 with r=8 is already 1 GiB.
_SCRYPT_MAX_N = 1 << 20
_SCRYPT_MAX_R = 32
_SCRYPT_MAX_P = 16
_SCRYPT_MAX_MEM = 512 * 1024 * 1024
_MAX_SALT_BYTES = 1024

_STD_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_BCRYPT_B64 = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_TO_BCRYPT = str.maketrans(_STD_B64, _BCRYPT_B64)
_SCRYPT_PARAMS = re.compile(r"n=(\d{1,10}),r=(\d{1,10}),p=(\d{1,10}),dklen=(\d{1,10})")
_B64_BODY = re.compile(r"[A-Za-z0-9+/]*={0,2}")

Kdf = Literal["bcrypt", "scrypt"]


@dataclass(frozen=True)
class ArmorBlock:
    """One decoded armor block: its type line, its headers and its body bytes."""

    block_type: str
    headers: dict[str, str] = field(default_factory=dict)
    data: bytes = b""


def crc24(data: bytes) -> int:
    """The OpenPGP CRC-24 (RFC 4880 §6.1)."""
    crc = _CRC24_INIT
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= _CRC24_POLY
    return crc & 0xFFFFFF


def decode_armor(text: str) -> ArmorBlock:
    """Parse the first armor block in ``text``; verify its CRC-24 when present.

    Like Go's reader, leading text before ``-----BEGIN`` is skipped and a missing checksum line
    is accepted (the secretbox MAC still authenticates the body).
    """
    if len(text) > MAX_ARMOR_CHARS:
        raise IdentityError(f"armored key is longer than {MAX_ARMOR_CHARS} characters")
    lines = text.splitlines()
    pos = 0
    while pos < len(lines):
        line = lines[pos].strip()
        pos += 1
        if line.startswith(_BEGIN) and line.endswith(_DASHES) and len(line) > 16:
            block_type = line[len(_BEGIN) : -len(_DASHES)]
            break
    else:
        raise IdentityError("no '-----BEGIN ...-----' armor line found")

    headers: dict[str, str] = {}
    while True:
        if pos >= len(lines):
            raise IdentityError("armor ends inside its headers")
        line = lines[pos].strip()
        pos += 1
        if not line:
            break
        key, sep, value = line.partition(": ")
        if not sep:
            raise IdentityError(f"malformed armor header line {line[:40]!r}")
        headers[key] = value

    body: list[str] = []
    checksum: bytes | None = None
    while True:
        if pos >= len(lines):
            raise IdentityError("armor has no '-----END' line")
        line = lines[pos].rstrip()
        pos += 1
        if line.startswith(_END):
            break
        if len(line) == 5 and line.startswith("="):
            checksum = _b64decode(line[1:], "armor checksum")
            if len(checksum) != 3:
                raise IdentityError("armor checksum line is malformed")
            if pos >= len(lines) or not lines[pos].startswith(_END):
                raise IdentityError("armor checksum line is not followed by '-----END'")
            break
        if len(line) > _MAX_LINE:
            raise IdentityError("armor body line is too long")
        body.append(line)
    data = _b64decode("".join(body), "armor body")
    if checksum is not None and int.from_bytes(checksum, "big") != crc24(data):
        raise IdentityError("armor checksum (CRC-24) does not match: the text is damaged")
    return ArmorBlock(block_type, headers, data)


def encode_armor(block_type: str, headers: dict[str, str], data: bytes) -> str:
    """Armor ``data`` as Go's OpenPGP writer does (64-column body, CRC-24 line)."""
    out = [f"{_BEGIN}{block_type}{_DASHES}"]
    out += [f"{key}: {value}" for key, value in sorted(headers.items())]
    out.append("")
    encoded = base64.b64encode(data).decode("ascii")
    out += [encoded[i : i + 64] for i in range(0, len(encoded), 64)]
    out.append("=" + base64.b64encode(crc24(data).to_bytes(3, "big")).decode("ascii"))
    out.append(f"{_END}{block_type}{_DASHES}")
    return "\n".join(out) + "\n"


def _b64decode(text: str, what: str) -> bytes:
    if not _B64_BODY.fullmatch(text):
        raise IdentityError(f"{what} is not base64")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise IdentityError(f"{what} is not base64") from exc


def _password_bytes(passphrase: str) -> bytes:
    return passphrase.encode("utf-8")


def _bcrypt_salt(salt: bytes) -> bytes:
    # bcrypt's own base64 alphabet, no padding: 16 bytes → 22 characters.
    std = base64.b64encode(salt).decode("ascii").rstrip("=")
    return std.translate(_TO_BCRYPT).encode("ascii")


def _parse_scrypt_params(text: str | None) -> tuple[int, int, int, int]:
    if text is None:
        raise IdentityError("scrypt armor lacks its 'kdfparams' header")
    match = _SCRYPT_PARAMS.fullmatch(text.strip())
    if match is None:
        raise IdentityError(f"malformed scrypt kdfparams {text[:60]!r}")
    n, r, p, dklen = (int(g) for g in match.groups())
    if n < 2 or n & (n - 1) or n > _SCRYPT_MAX_N:
        raise IdentityError(f"scrypt n={n} must be a power of two between 2 and {_SCRYPT_MAX_N}")
    if not 1 <= r <= _SCRYPT_MAX_R or not 1 <= p <= _SCRYPT_MAX_P:
        raise IdentityError(f"scrypt r={r}, p={p} are out of range")
    if 128 * n * r + 128 * r * p > _SCRYPT_MAX_MEM:
        raise IdentityError("scrypt parameters would need too much memory")
    if dklen != 32:
        # xsalsa20symmetric needs exactly a 32-byte key; Go fails the same way later.
        raise IdentityError(f"scrypt dklen must be 32, got {dklen}")
    return n, r, p, dklen


def derive_key(headers: dict[str, str], passphrase: str) -> bytes:
    """The 32-byte secretbox key for an armor's ``kdf``/``salt``/``kdfparams`` headers."""
    kdf = headers.get("kdf")
    salt_hex = headers.get("salt", "")
    if len(salt_hex) > 2 * _MAX_SALT_BYTES:
        raise IdentityError("armor salt is too long")
    try:
        salt = bytes.fromhex(salt_hex)
    except ValueError as exc:
        raise IdentityError("armor salt is not hex") from exc
    password = _password_bytes(passphrase)
    if kdf == "bcrypt":
        if len(salt) != 16:
            raise IdentityError(f"bcrypt armor salt must be 16 bytes, got {len(salt)}")
        # Go's bcrypt reads at most 72 bytes of the password; the Python binding refuses
        # longer ones instead of truncating, so truncate here to get the same key.
        setting = f"$2a${BCRYPT_COST:02d}$".encode("ascii") + _bcrypt_salt(salt)
        hashed = bcrypt.hashpw(password[:72], setting)
        return hashlib.sha256(hashed).digest()
    if kdf == "scrypt":
        n, r, p, dklen = _parse_scrypt_params(headers.get("kdfparams"))
        maxmem = 128 * r * (n + p + 2) + (1 << 20)
        return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=maxmem)
    raise IdentityError(f"unsupported armor kdf {kdf!r} (expected bcrypt or scrypt)")


def decrypt_armored_key(text: str, passphrase: str) -> tuple[KeyType, bytes]:
    """Open an armored private key; return its key flavour and the 32 secret bytes.

    Raises :class:`IdentityError` for damaged or unsupported armor and
    :class:`WrongPassphrase` when the passphrase does not open it.
    """
    block = decode_armor(text)
    if block.block_type != BLOCK_TYPE_PRIVATE_KEY:
        raise IdentityError(
            f"armor block is {block.block_type!r}, expected {BLOCK_TYPE_PRIVATE_KEY!r}"
        )
    # Check the body's shape before paying for the KDF.
    if len(block.data) <= _NONCE_BYTES + _MAC_BYTES:
        raise IdentityError("armored key body is too short")
    key = derive_key(block.headers, passphrase)
    try:
        plain = nacl.secret.SecretBox(key).decrypt(block.data)
    except nacl.exceptions.CryptoError as exc:
        raise WrongPassphrase(
            "wrong passphrase for the armored key (or the key text is corrupt)"
        ) from exc
    return _decode_amino_private_key(plain)


def _decode_amino_private_key(plain: bytes) -> tuple[KeyType, bytes]:
    if len(plain) != 37 or plain[4] != 0x20:
        raise IdentityError("decrypted armor does not hold an amino-encoded 32-byte key")
    prefix, secret = plain[:4], plain[5:]
    if prefix == AMINO_PREFIX_ETH:
        return KeyType.ETH_SECP256K1, secret
    if prefix == AMINO_PREFIX_LEGACY:
        return KeyType.SECP256K1, secret
    raise IdentityError(f"unsupported amino key type prefix {prefix.hex()}")


def import_armored_key(text: str, passphrase: str) -> PrivateKey:
    """Open an armored eth_secp256k1 private key; refuse a legacy secp256k1 one clearly."""
    key_type, secret = decrypt_armored_key(text, passphrase)
    if key_type is KeyType.SECP256K1:
        raise IdentityError(
            "the armored key is a legacy secp256k1 (coin type 118) key; Lumera supernodes need "
            "an eth_secp256k1 key: export it from a keyring that holds the coin-type-60 key, "
            "or import its mnemonic instead"
        )
    return PrivateKey(secret)


def export_armor(key: PrivateKey, passphrase: str, kdf: Kdf = "bcrypt") -> str:
    """Armor and encrypt ``key`` as ``lumerad keys export`` does (``type: eth_secp256k1``)."""
    salt = os.urandom(16)
    headers = {"kdf": kdf, "salt": salt.hex().upper(), "type": KeyType.ETH_SECP256K1.value}
    if kdf == "scrypt":
        n, r, p, dklen = SCRYPT_DEFAULT
        headers["kdfparams"] = f"n={n},r={r},p={p},dklen={dklen}"
    elif kdf != "bcrypt":
        raise IdentityError(f"unsupported armor kdf {kdf!r} (expected bcrypt or scrypt)")
    box = nacl.secret.SecretBox(derive_key(headers, passphrase))
    plain = AMINO_PREFIX_ETH + b"\x20" + key.secret
    sealed = bytes(box.encrypt(plain, os.urandom(_NONCE_BYTES)))
    return encode_armor(BLOCK_TYPE_PRIVATE_KEY, headers, sealed)
