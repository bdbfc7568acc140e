"""Go-format keyring bytes built by hand, independently of the code under test.

These helpers follow the byte layout in ``chain-and-keys.md`` §2.5–2.6 directly with
``cryptography`` primitives and hand-written protobuf, so a test that reads their output checks
the keyring reader against the spec rather than against its own writer.
"""

from __future__ import annotations

import base64
import json

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap, aes_key_wrap

# The spec's test vector (chain-and-keys.md §2.2).
VECTOR_MNEMONIC = (
    "odor kiss switch swarm spell make planet bundle skate ozone path planet exclude butter "
    "atom ahead angle royal shuffle door prevent merry alter robust"
)
VECTOR_PRIV = bytes.fromhex("f8edb08f20857cff9011b9ce2075fab3143a2bfbf7fa91919128e8c3a8575208")
VECTOR_PUB = bytes.fromhex("029dce146b7c35514dbad04204dca51de209da0cc1de77fb0a3d500b3867c605ab")
VECTOR_ADDRESS = "lumera1jcus5g9v6r080rg7dljvvpr4cm8k7psqwg7tj8"
VECTOR_ADDRESS_HEX = "96390a20acd0de778d1e6fe4c60475c6cf6f0600"
VECTOR_PUB_ANY = bytes.fromhex(
    "0a292f636f736d6f732e65766d2e63727970746f2e76312e657468736563703235366b312e5075624b6579"
    "12230a21029dce146b7c35514dbad04204dca51de209da0cc1de77fb0a3d500b3867c605ab"
)

ETH_PRIV_URL = b"/cosmos.evm.crypto.v1.ethsecp256k1.PrivKey"
LEGACY_PUB_URL = b"/cosmos.crypto.secp256k1.PubKey"
LEGACY_PRIV_URL = b"/cosmos.crypto.secp256k1.PrivKey"


def ld(field: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (payloads here are all < 128 bytes)."""
    assert len(payload) < 128
    return bytes([field << 3 | 2, len(payload)]) + payload


def any_msg(type_url: bytes, key: bytes) -> bytes:
    """``google.protobuf.Any{type_url, value = {key = 1 : bytes}}``."""
    return ld(1, type_url) + ld(2, ld(1, key))


def local_record(name: str, pub_any: bytes, priv_any: bytes) -> bytes:
    """``Record{name = 1, pub_key = 2, local = 3 {priv_key = 1}}``."""
    return ld(1, name.encode()) + ld(2, pub_any) + ld(3, ld(1, priv_any))


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def go_item_json(key: str, data: bytes) -> bytes:
    """99designs ``Item`` as Go's json.Marshal writes it."""
    return (
        '{"Key":"' + key + '","Data":"' + base64.b64encode(data).decode() + '","Label":"",'
        '"Description":"","KeychainNotTrustApplication":false,"KeychainNotSynchronizable":false}'
    ).encode()


def go_jwe(payload: bytes, password: str, *, p2s: bytes = b"\x07" * 12, p2c: int = 8192) -> str:
    """A jose2go PBES2-HS256+A128KW / A256GCM compact token, built from the RFC steps."""
    header = (
        '{"alg":"PBES2-HS256+A128KW","created":"2025-05-06 10:11:12.123456789 +0200 CEST '
        'm=+0.004511201","enc":"A256GCM","p2c":' + str(p2c) + ',"p2s":"' + b64u(p2s) + '"}'
    )
    h64 = b64u(header.encode())
    salt = b"PBES2-HS256+A128KW\x00" + p2s
    kek = PBKDF2HMAC(hashes.SHA256(), 16, salt, p2c).derive(password.encode())
    cek = bytes(range(32))
    iv = bytes(range(100, 112))
    sealed = AESGCM(cek).encrypt(iv, payload, h64.encode())
    return ".".join(
        [h64, b64u(aes_key_wrap(kek, cek)), b64u(iv), b64u(sealed[:-16]), b64u(sealed[-16:])]
    )


def spec_read_item(token: str, password: str) -> tuple[dict[str, object], dict[str, object]]:
    """The spec's §2.6 recipe: return (JWE header, Item JSON)."""
    h64, ek, iv, ct, tag = token.strip().split(".")
    hdr = json.loads(unb64u(h64))
    salt = hdr["alg"].encode() + b"\0" + unb64u(hdr["p2s"])
    kek = PBKDF2HMAC(hashes.SHA256(), 16, salt, int(hdr["p2c"])).derive(password.encode())
    cek = aes_key_unwrap(kek, unb64u(ek))
    item = json.loads(AESGCM(cek).decrypt(unb64u(iv), unb64u(ct) + unb64u(tag), h64.encode()))
    return hdr, item
