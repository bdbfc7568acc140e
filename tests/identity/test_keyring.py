"""The Cosmos SDK keyring: Go-format files read and written, errors that name the file."""

from __future__ import annotations

import base64
import contextlib
import json
import stat
from pathlib import Path

import bcrypt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lumera_p2p.errors import (
    IdentityError,
    JWEUnwrapError,
    KeyNotFound,
    KeyringError,
    WrongPassphrase,
)
from lumera_p2p.identity import jwe
from lumera_p2p.identity.keyring import (
    KeyInfo,
    Keyring,
    RecordKind,
    decode_record,
    filename_escape,
    filename_unescape,
    resolve_passphrase,
)
from lumera_p2p.identity.keys import KeyType, PrivateKey
from tests.identity import gofmt

FILE_PASS = "correct horse battery"


def _test_dir(root: Path) -> Path:
    return root / "keyring-test"


def _write_go_item(directory: Path, filename: str, key: str, data: bytes, password: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / filename).write_text(gofmt.go_jwe(gofmt.go_item_json(key, data), password))


def _go_vector_keyring(root: Path, password: str = "test", sub: str = "keyring-test") -> None:
    """The spec vector's key as lumerad would store it, built without the code under test."""
    priv_any = gofmt.any_msg(gofmt.ETH_PRIV_URL, gofmt.VECTOR_PRIV)
    record = gofmt.local_record("validator", gofmt.VECTOR_PUB_ANY, priv_any)
    directory = root / sub
    _write_go_item(directory, "validator.info", "validator.info", record, password)
    _write_go_item(
        directory,
        f"{gofmt.VECTOR_ADDRESS_HEX}.address",
        f"{gofmt.VECTOR_ADDRESS_HEX}.address",
        b"validator.info",
        password,
    )


# --- reading files built by hand in Go's format -------------------------------------------------


def test_reads_hand_built_go_test_keyring(tmp_path: Path) -> None:
    _go_vector_keyring(tmp_path)
    kr = Keyring(tmp_path, "test")
    [info] = kr.list()
    assert info.name == "validator"
    assert info.address == gofmt.VECTOR_ADDRESS
    assert info.kind is RecordKind.LOCAL
    assert info.key_type is KeyType.ETH_SECP256K1
    assert info.public_key.compressed == gofmt.VECTOR_PUB
    assert kr.get("validator") == info
    assert kr.private_key("validator").secret == gofmt.VECTOR_PRIV
    assert kr.key_by_address(gofmt.VECTOR_ADDRESS) == info
    assert kr.key_by_address(bytes.fromhex(gofmt.VECTOR_ADDRESS_HEX)) == info


def test_reads_hand_built_go_file_keyring_with_keyhash(tmp_path: Path) -> None:
    _go_vector_keyring(tmp_path, FILE_PASS, "keyring-file")
    keyhash = bcrypt.hashpw(FILE_PASS.encode(), bcrypt.gensalt(rounds=4, prefix=b"2a"))
    (tmp_path / "keyring-file" / "keyhash").write_bytes(keyhash)
    kr = Keyring(tmp_path, "file", FILE_PASS)
    assert kr.get("validator").address == gofmt.VECTOR_ADDRESS
    with pytest.raises(WrongPassphrase, match="wrong passphrase"):
        Keyring(tmp_path, "file", "not the passphrase")


def test_file_backend_without_keyhash_wrong_password(tmp_path: Path) -> None:
    _go_vector_keyring(tmp_path, FILE_PASS, "keyring-file")
    kr = Keyring(tmp_path, "file", "another passphrase")
    with pytest.raises(WrongPassphrase):
        kr.get("validator")
    with pytest.raises(WrongPassphrase):
        kr.list()
    # Nor may a write record a keyhash for a passphrase that does not open existing files.
    with pytest.raises(WrongPassphrase):
        kr.add("other", PrivateKey(b"\x01" * 32))
    assert not (tmp_path / "keyring-file" / "keyhash").exists()


def test_legacy_secp256k1_record_is_listed_but_not_usable(tmp_path: Path) -> None:
    key = PrivateKey(b"\x05" * 32)
    pub = key.public_key.compressed
    record = gofmt.local_record(
        "old",
        gofmt.any_msg(gofmt.LEGACY_PUB_URL, pub),
        gofmt.any_msg(gofmt.LEGACY_PRIV_URL, key.secret),
    )
    _write_go_item(_test_dir(tmp_path), "old.info", "old.info", record, "test")
    kr = Keyring(tmp_path, "test")
    [info] = kr.list()
    assert info.key_type is KeyType.SECP256K1
    assert info.address != key.address  # RIPEMD160(SHA256) address, not the keccak one
    with pytest.raises(IdentityError, match="legacy secp256k1"):
        kr.private_key("old")


def test_amino_legacy_info_gives_clear_error(tmp_path: Path) -> None:
    amino = bytes.fromhex("0dad153d") + b"\x0a\x03old" + b"\x00" * 40
    _write_go_item(_test_dir(tmp_path), "old.info", "old.info", amino, "test")
    kr = Keyring(tmp_path, "test")
    with pytest.raises(KeyringError, match=r"old\.info: legacy amino record.*re-import"):
        kr.get("old")
    infos, problems = kr.scan()
    assert infos == []
    assert len(problems) == 1
    assert "legacy amino" in str(problems[0])


def test_ledger_record_has_no_private_key(tmp_path: Path) -> None:
    record = gofmt.ld(1, b"hw") + gofmt.ld(2, gofmt.VECTOR_PUB_ANY) + gofmt.ld(4, b"")
    _write_go_item(_test_dir(tmp_path), "hw.info", "hw.info", record, "test")
    kr = Keyring(tmp_path, "test")
    assert kr.get("hw").kind is RecordKind.LEDGER
    with pytest.raises(KeyringError, match="ledger entry"):
        kr.private_key("hw")


# --- writing, and reading back with the spec's recipe --------------------------------------------


def test_round_trip_test_backend(tmp_path: Path) -> None:
    kr = Keyring(tmp_path, "test")
    info = kr.import_mnemonic("validator", gofmt.VECTOR_MNEMONIC)
    assert info.address == gofmt.VECTOR_ADDRESS
    other = kr.add("second", PrivateKey(b"\x11" * 32))
    again = Keyring(tmp_path, "test")
    assert again.list() == [other, info]  # Go sorts by file key: "second" < "validator"
    assert again.private_key("validator").secret == gofmt.VECTOR_PRIV
    assert again.key_by_address(other.address) == other


def test_written_files_match_go_layout(tmp_path: Path) -> None:
    Keyring(tmp_path, "test").import_mnemonic("validator", gofmt.VECTOR_MNEMONIC)
    directory = _test_dir(tmp_path)
    assert sorted(p.name for p in directory.iterdir()) == [
        f"{gofmt.VECTOR_ADDRESS_HEX}.address",
        "validator.info",
    ]
    token = (directory / "validator.info").read_text()
    header_segment = token.split(".")[0]
    header_json = gofmt.unb64u(header_segment).decode()
    # Go's json.Marshal of a map: sorted keys, no spaces, p2c a bare number.
    assert header_json.startswith('{"alg":"PBES2-HS256+A128KW","created":"')
    assert '","enc":"A256GCM","p2c":8192,"p2s":"' in header_json
    hdr, item = gofmt.spec_read_item(token, "test")
    assert len(gofmt.unb64u(str(hdr["p2s"]))) == 12
    assert list(item) == [
        "Key",
        "Data",
        "Label",
        "Description",
        "KeychainNotTrustApplication",
        "KeychainNotSynchronizable",
    ]
    assert item["Key"] == "validator.info"
    priv_any = gofmt.any_msg(gofmt.ETH_PRIV_URL, gofmt.VECTOR_PRIV)
    expected = gofmt.local_record("validator", gofmt.VECTOR_PUB_ANY, priv_any)
    assert base64.b64decode(str(item["Data"])) == expected
    _hdr, index = gofmt.spec_read_item(
        (directory / f"{gofmt.VECTOR_ADDRESS_HEX}.address").read_text(), "test"
    )
    assert index["Key"] == f"{gofmt.VECTOR_ADDRESS_HEX}.address"
    assert base64.b64decode(str(index["Data"])) == b"validator.info"


def test_permissions(tmp_path: Path) -> None:
    root = tmp_path / "home"
    Keyring(root, "test").add("a", PrivateKey(b"\x02" * 32))
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    directory = _test_dir(root)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for path in directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert not path.name.startswith(".tmp-")


def test_file_backend_round_trip_and_keyhash(tmp_path: Path) -> None:
    kr = Keyring(tmp_path, "file", FILE_PASS)
    assert not (tmp_path / "keyring-file").exists()  # nothing written until a key is added
    info = kr.add("k", PrivateKey(b"\x03" * 32))
    keyhash = (tmp_path / "keyring-file" / "keyhash").read_bytes()
    assert keyhash.startswith(b"$2a$10$")
    assert bcrypt.checkpw(FILE_PASS.encode(), keyhash)
    token = (tmp_path / "keyring-file" / "k.info").read_text()
    _hdr, item = gofmt.spec_read_item(token, FILE_PASS)
    assert item["Key"] == "k.info"
    assert Keyring(tmp_path, "file", FILE_PASS).get("k") == info
    with pytest.raises(WrongPassphrase):
        Keyring(tmp_path, "file", "wrong passphrase")


def test_file_backend_passphrase_rules(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="needs a passphrase"):
        Keyring(tmp_path, "file")
    with pytest.raises(KeyringError, match="at least 8"):
        Keyring(tmp_path, "file", "short").add("k", PrivateKey(b"\x03" * 32))


def test_backends_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="'os' keyring backend"):
        Keyring(tmp_path, "os")
    with pytest.raises(KeyringError, match="unsupported keyring backend"):
        Keyring(tmp_path, "kwallet")


def test_duplicates_refused(tmp_path: Path) -> None:
    kr = Keyring(tmp_path, "test")
    kr.import_mnemonic("a", gofmt.VECTOR_MNEMONIC)
    with pytest.raises(KeyringError, match="named 'a' already exists"):
        kr.add("a", PrivateKey(b"\x04" * 32))
    with pytest.raises(KeyringError, match="already in the keyring as 'a'"):
        kr.import_mnemonic("b", gofmt.VECTOR_MNEMONIC)
    assert [i.name for i in kr.list()] == ["a"]


def test_stale_address_index_is_replaced(tmp_path: Path) -> None:
    kr = Keyring(tmp_path, "test")
    kr.import_mnemonic("a", gofmt.VECTOR_MNEMONIC)
    (_test_dir(tmp_path) / "a.info").unlink()
    # As in Go's existsInDb: an index without its record does not block a re-import.
    info = kr.import_mnemonic("b", gofmt.VECTOR_MNEMONIC)
    assert kr.key_by_address(gofmt.VECTOR_ADDRESS) == info


def test_names_are_percent_escaped(tmp_path: Path) -> None:
    kr = Keyring(tmp_path, "test")
    info = kr.add("team/50%", PrivateKey(b"\x06" * 32))
    assert (_test_dir(tmp_path) / "team%2F50%25.info").exists()
    assert kr.get("team/50%") == info
    assert kr.list() == [info]
    assert kr.key_by_address(info.address) == info


@given(st.text(min_size=1, max_size=40))
def test_filename_escape_round_trips(name: str) -> None:
    escaped = filename_escape(name)
    assert "/" not in escaped
    assert filename_unescape(escaped) == name


def test_missing_keys(tmp_path: Path) -> None:
    kr = Keyring(tmp_path, "test")
    assert kr.list() == []
    with pytest.raises(KeyNotFound):
        kr.get("nobody")
    with pytest.raises(KeyNotFound):
        kr.key_by_address(gofmt.VECTOR_ADDRESS)
    with pytest.raises(KeyNotFound):
        kr.private_key("")


# --- damaged files ------------------------------------------------------------------------------


def _flip(text: str, index: int) -> str:
    char = text[index]
    return text[:index] + ("A" if char != "A" else "B") + text[index + 1 :]


@pytest.mark.parametrize("segment", [1, 2, 3, 4])
def test_tampered_file_is_keyring_error_naming_the_file(tmp_path: Path, segment: int) -> None:
    kr = Keyring(tmp_path, "test")
    kr.add("k", PrivateKey(b"\x07" * 32))
    path = _test_dir(tmp_path) / "k.info"
    parts = path.read_text().split(".")
    parts[segment] = _flip(parts[segment], 1)
    path.write_text(".".join(parts))
    with pytest.raises(KeyringError, match=r"k\.info") as caught:
        kr.get("k")
    assert not isinstance(caught.value, WrongPassphrase)


def test_tampered_header_fails_authentication(tmp_path: Path) -> None:
    kr = Keyring(tmp_path, "test")
    kr.add("k", PrivateKey(b"\x07" * 32))
    path = _test_dir(tmp_path) / "k.info"
    h64, *rest = path.read_text().split(".")
    header = gofmt.unb64u(h64).replace(b'"created":"', b'"created":"X')
    path.write_text(".".join([gofmt.b64u(header), *rest]))
    with pytest.raises(KeyringError, match="authentication failed"):
        kr.get("k")


@pytest.mark.parametrize(
    ("p2c", "message"),
    [("1300001", "exceeds"), ('"8192"', "not a number"), ("0", "below 1"), ("true", "number")],
)
def test_p2c_checked_before_any_work(tmp_path: Path, p2c: str, message: str) -> None:
    header = (
        '{"alg":"PBES2-HS256+A128KW","enc":"A256GCM","p2c":' + p2c + ',"p2s":"AAAAAAAAAAAAAAAA"}'
    )
    token = ".".join(
        [gofmt.b64u(header.encode()), gofmt.b64u(b"\0" * 40), gofmt.b64u(b"\0" * 12), "", "A" * 22]
    )
    directory = _test_dir(tmp_path)
    directory.mkdir(parents=True)
    (directory / "k.info").write_text(token)
    with pytest.raises(KeyringError, match=message):
        Keyring(tmp_path, "test").get("k")


def test_garbage_file_named_in_error(tmp_path: Path) -> None:
    directory = _test_dir(tmp_path)
    directory.mkdir(parents=True)
    (directory / "bad.info").write_bytes(b"\xff\xfe not a token")
    kr = Keyring(tmp_path, "test")
    with pytest.raises(KeyringError, match=r"bad\.info"):
        kr.get("bad")
    infos, problems = kr.scan()
    assert infos == [] and len(problems) == 1


def test_address_index_pointing_elsewhere(tmp_path: Path) -> None:
    kr = Keyring(tmp_path, "test")
    a = kr.add("a", PrivateKey(b"\x08" * 32))
    b = kr.add("b", PrivateKey(b"\x09" * 32))
    directory = _test_dir(tmp_path)
    (directory / f"{a.address_bytes.hex()}.address").write_bytes(
        (directory / f"{b.address_bytes.hex()}.address").read_bytes()
    )
    with pytest.raises(KeyringError, match="points to 'b'"):
        kr.key_by_address(a.address)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=600))
def test_fuzz_random_files_raise_only_keyring_errors(tmp_path: Path, data: bytes) -> None:
    directory = _test_dir(tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "f.info").write_bytes(data)
    with pytest.raises(KeyringError):
        Keyring(tmp_path, "test").get("f")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_jwe_parser(data: bytes) -> None:
    with contextlib.suppress(KeyringError):
        jwe.decrypt(data, "test")


_SEGMENT = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", max_size=80
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["alg", "enc", "p2c", "p2s", "zip", "created"]),
        st.one_of(
            st.sampled_from(["PBES2-HS256+A128KW", "A256GCM", "DEF"]),
            st.integers(-5, 2_000_000),
            st.floats(allow_nan=False),
            _SEGMENT,
            st.booleans(),
            st.none(),
        ),
    ),
    st.lists(_SEGMENT, min_size=4, max_size=4),
)
def test_fuzz_structured_tokens(header: dict[str, object], segments: list[str]) -> None:
    if isinstance(header.get("p2c"), int | float) and not isinstance(header.get("p2c"), bool):
        header["p2c"] = min(float(str(header["p2c"])), 64)  # keep any PBKDF2 work small
    token = ".".join([gofmt.b64u(json.dumps(header).encode()), *segments])
    with pytest.raises(KeyringError):
        jwe.decrypt(token, "test")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_record_decoder(data: bytes) -> None:
    with contextlib.suppress(KeyringError):
        decode_record(data)


def test_jwe_round_trip_and_pinned_vector() -> None:
    token = jwe.encrypt(b"payload", "pw", created="now", p2c=10)
    assert jwe.decrypt(token, "pw") == b"payload"
    with pytest.raises(JWEUnwrapError):
        jwe.decrypt(token, "other")
    # A token built by hand from the RFC steps decrypts to the same payload.
    assert jwe.decrypt(gofmt.go_jwe(b"hello", "pw", p2c=10), "pw") == b"hello"


# --- passphrase sources -------------------------------------------------------------------------


def test_resolve_passphrase_order(tmp_path: Path) -> None:
    pw_file = tmp_path / "pw"
    pw_file.write_text("  from-file\n")
    env = {"KR_PASS": "from-env"}
    assert resolve_passphrase("plain", None, None, env) == "plain"
    assert resolve_passphrase("plain", "KR_PASS", pw_file, env) == "plain"
    assert resolve_passphrase(None, "KR_PASS", pw_file, env) == "from-env"
    assert resolve_passphrase("", None, pw_file, env) == "from-file"
    assert resolve_passphrase(None, None, None, env) is None
    # Go reads the chosen value back through a prompt that trims it.
    assert resolve_passphrase(None, "E", None, {"E": " spaced \n"}) == "spaced"


def test_resolve_passphrase_misconfigured(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="'NOPE' is not set or is empty"):
        resolve_passphrase("plain", "NOPE", None, {})
    with pytest.raises(KeyringError, match="is not set or is empty"):
        resolve_passphrase(None, "BLANK", None, {"BLANK": "  "})
    with pytest.raises(KeyringError, match="cannot read"):
        resolve_passphrase(None, None, tmp_path / "missing", {})
    empty = tmp_path / "empty"
    empty.write_text("\n\n")
    with pytest.raises(KeyringError, match="is empty"):
        resolve_passphrase(None, None, empty, {})


def test_keyinfo_is_a_value() -> None:
    key = PrivateKey(b"\x0a" * 32)
    info = KeyInfo("x", key.public_key)
    assert info.address == key.address
    assert info.address_bytes == key.public_key.address_bytes
