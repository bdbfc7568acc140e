"""ASCII-armored private keys (``lumerad keys export``)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lumera_p2p.errors import IdentityError, KeyringError, WrongPassphrase
from lumera_p2p.identity import armor
from lumera_p2p.identity.keys import KeyType, PrivateKey

# From cosmos-sdk's client/keys import test (a Go-written export): legacy secp256k1 key,
# bcrypt KDF, passphrase "123456789".
SDK_ARMOR = """-----BEGIN TENDERMINT PRIVATE KEY-----
salt: A790BB721D1C094260EA84F5E5B72289
kdf: bcrypt

HbP+c6JmeJy9JXe2rbbF1QtCX1gLqGcDQPBXiCtFvP7/8wTZtVOPj8vREzhZ9ElO
3P7YnrzPQThG0Q+ZnRSbl9MAS8uFAM4mqm5r/Ys=
=f3l4
-----END TENDERMINT PRIVATE KEY-----
"""
SDK_PASSPHRASE = "123456789"
KEY = PrivateKey(bytes.fromhex("f8edb08f20857cff9011b9ce2075fab3143a2bfbf7fa91919128e8c3a8575208"))


def test_sdk_vector_decrypts_to_legacy_key() -> None:
    key_type, secret = armor.decrypt_armored_key(SDK_ARMOR, SDK_PASSPHRASE)
    assert key_type is KeyType.SECP256K1
    assert secret.hex() == "2485e33678db4175dc0ecef2d6e1fc493d4a0d7f7ce83324b6ed70afe77f3485"


def test_sdk_vector_import_refuses_legacy() -> None:
    with pytest.raises(IdentityError, match="legacy secp256k1"):
        armor.import_armored_key(SDK_ARMOR, SDK_PASSPHRASE)


def test_decode_armor_headers_and_crc() -> None:
    block = armor.decode_armor("leading garbage\n" + SDK_ARMOR)
    assert block.block_type == "TENDERMINT PRIVATE KEY"
    assert block.headers == {"salt": "A790BB721D1C094260EA84F5E5B72289", "kdf": "bcrypt"}
    assert len(block.data) == 24 + 16 + 37
    assert armor.crc24(block.data) == 0x7F7978  # "=f3l4"


def test_bad_crc_line() -> None:
    with pytest.raises(IdentityError, match="checksum"):
        armor.decode_armor(SDK_ARMOR.replace("=f3l4", "=f3l5"))


def test_damaged_body_fails_crc() -> None:
    with pytest.raises(IdentityError, match="checksum"):
        armor.decode_armor(SDK_ARMOR.replace("HbP+c6Jm", "HbP+c6Jn"))


def test_missing_crc_accepted_like_go() -> None:
    block = armor.decode_armor(SDK_ARMOR.replace("=f3l4\n", ""))
    assert len(block.data) == 77


@pytest.mark.parametrize("kdf", ["bcrypt", "scrypt"])
def test_export_import_round_trip(kdf: armor.Kdf) -> None:
    text = armor.export_armor(KEY, "export pass", kdf=kdf)
    block = armor.decode_armor(text)
    assert block.headers["kdf"] == kdf
    assert block.headers["type"] == "eth_secp256k1"
    assert len(bytes.fromhex(block.headers["salt"])) == 16
    if kdf == "scrypt":
        assert block.headers["kdfparams"] == "n=32768,r=8,p=1,dklen=32"
    assert all(len(line) <= 64 for line in text.splitlines())
    assert armor.import_armored_key(text, "export pass") == KEY


def test_wrong_passphrase() -> None:
    text = armor.export_armor(KEY, "right", kdf="scrypt")
    with pytest.raises(WrongPassphrase, match="wrong passphrase"):
        armor.import_armored_key(text, "wrong")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("n=33,r=8,p=1,dklen=32", "power of two"),
        ("n=4194304,r=8,p=1,dklen=32", "power of two"),
        ("n=1024,r=99,p=1,dklen=32", "out of range"),
        ("n=1024,r=8,p=1,dklen=16", "dklen"),
        ("n=1024", "malformed"),
    ],
)
def test_scrypt_params_bounded(params: str, message: str) -> None:
    text = armor.export_armor(KEY, "pw", kdf="scrypt").replace("n=32768,r=8,p=1,dklen=32", params)
    with pytest.raises(IdentityError, match=message):
        armor.import_armored_key(text, "pw")


def test_wrong_block_type_and_kdf() -> None:
    with pytest.raises(IdentityError, match="expected 'TENDERMINT PRIVATE KEY'"):
        armor.import_armored_key(SDK_ARMOR.replace("PRIVATE KEY", "PUBLIC KEY"), "x")
    with pytest.raises(IdentityError, match="unsupported armor kdf"):
        armor.import_armored_key(SDK_ARMOR.replace("kdf: bcrypt", "kdf: argon2"), "x")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_fuzz_random_text(text: str) -> None:
    with contextlib.suppress(IdentityError, KeyringError):
        armor.import_armored_key(text, "pw")


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["kdf", "salt", "kdfparams", "type"]),
        st.one_of(
            st.sampled_from(["scrypt", "argon", "n=2,r=1,p=1,dklen=32", "eth_secp256k1"]),
            st.binary(max_size=20).map(bytes.hex),
            st.text(max_size=20),
        ),
    ),
    st.lists(st.text(alphabet=_B64, max_size=70), max_size=4),
    st.one_of(st.none(), st.text(alphabet=_B64, min_size=4, max_size=4)),
)
def test_fuzz_structured_armor(headers: dict[str, str], body: list[str], crc: str | None) -> None:
    # "bcrypt" is left out of the KDF choices so no example costs a cost-12 bcrypt.
    lines = ["-----BEGIN TENDERMINT PRIVATE KEY-----"]
    lines += [f"{k}: {v}" for k, v in headers.items() if "\n" not in v and "\r" not in v]
    lines += ["", *body]
    if crc is not None:
        lines.append("=" + crc)
    lines.append("-----END TENDERMINT PRIVATE KEY-----")
    with contextlib.suppress(IdentityError, KeyringError):
        armor.import_armored_key("\n".join(lines), "pw")
