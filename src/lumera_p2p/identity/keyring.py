"""Cosmos SDK keyring directories (``test`` and ``file`` backends), read and written like Go.

Layout (cosmos-sdk v0.53 ``crypto/keyring`` on 99designs/keyring v1.2.2)::

    <dir>/keyring-test/          password is the literal "test"
    <dir>/keyring-file/          user passphrase; "keyhash" = bcrypt ($2a$10$) of it
        <name>.info              JWE(Item{Key: "<name>.info", Data: Record protobuf})
        <hex address>.address    JWE(Item{Key: "<hex>.address", Data: b"<name>.info"})

File names are the item keys with ``%`` and ``/`` percent-escaped (mtibben/percent). Every file
is a JWE token (:mod:`lumera_p2p.identity.jwe`) whose payload is the JSON of the 99designs
``Item``. The ``Record`` is ``cosmos.crypto.keyring.v1.Record``: ``name = 1``, ``pub_key = 2``
(Any), and one of ``local = 3 {priv_key = 1 (Any)}``, ``ledger = 4``, ``multi = 5``,
``offline = 6``.

Keys written here are read by ``lumerad``/``supernode`` and the other way round. The ``os``
backend (an OS secret service) is refused: it cannot be read portably.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
import stat
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

import bcrypt

from lumera_p2p.errors import (
    IdentityError,
    JWEAuthError,
    JWEUnwrapError,
    KeyNotFound,
    KeyringError,
    ProtobufDecodeError,
    WrongPassphrase,
)
from lumera_p2p.identity import jwe, protowire
from lumera_p2p.identity.keys import (
    DEFAULT_HD_PATH,
    KeyType,
    PrivateKey,
    PublicKey,
    address_from_bytes,
    address_to_bytes,
)

_log = logging.getLogger(__name__)

TEST_PASSWORD = "test"
BACKEND_DIRS = {"test": "keyring-test", "file": "keyring-file"}
KEYHASH_FILE = "keyhash"
INFO_SUFFIX = ".info"
ADDRESS_SUFFIX = ".address"
#: Go's ``input.GetPassword`` refuses shorter keyring passphrases.
MIN_PASSPHRASE_LEN = 8
#: golang.org/x/crypto/bcrypt refuses to hash longer passwords.
MAX_PASSPHRASE_BYTES = 72
#: Go writes the keyhash with ``bcrypt.GenerateFromPassword(pass, 2)``; x/crypto raises a cost
#: below its minimum to ``DefaultCost`` = 10, which is what lands on disk.
KEYHASH_COST = 10

MAX_ITEM_FILE_BYTES = jwe.MAX_TOKEN_CHARS
_MAX_KEYHASH_BYTES = 1024
_MAX_FILENAME_BYTES = 255
_TEMP_PREFIX = ".tmp-"  # never ends in .info/.address, so Go ignores a leftover one

# Amino prefixes of the pre-0.46 LegacyInfo types (sha256-derived, see amino's registration).
_LEGACY_AMINO_PREFIXES = {
    bytes.fromhex("0dad153d"): "crypto/keys/localInfo",
    bytes.fromhex("a08cb0fb"): "crypto/keys/ledgerInfo",
    bytes.fromhex("1f4d3ed6"): "crypto/keys/offlineInfo",
    bytes.fromhex("34878fb8"): "crypto/keys/multiInfo",
}


class RecordKind(Enum):
    """Which item a keyring ``Record`` holds."""

    LOCAL = "local"
    LEDGER = "ledger"
    MULTI = "multi"
    OFFLINE = "offline"


_KIND_FIELDS = {
    3: RecordKind.LOCAL,
    4: RecordKind.LEDGER,
    5: RecordKind.MULTI,
    6: RecordKind.OFFLINE,
}


@dataclass(frozen=True)
class KeyInfo:
    """What a keyring holds about one key, without its secret."""

    name: str
    public_key: PublicKey
    kind: RecordKind = RecordKind.LOCAL

    @property
    def address(self) -> str:
        """The ``lumera1…`` bech32 account address."""
        return self.public_key.address

    @property
    def address_bytes(self) -> bytes:
        """The 20-byte account address."""
        return self.public_key.address_bytes

    @property
    def key_type(self) -> KeyType:
        """``eth_secp256k1`` (current) or ``secp256k1`` (legacy, needs migration)."""
        return self.public_key.key_type


# Aliases so annotations inside Keyring are not shadowed by its ``list`` method.
_KeyInfos = list[KeyInfo]
_Problems = list[KeyringError]
_Files = list[tuple[str, Path]]


@dataclass(frozen=True)
class _Record:
    info: KeyInfo
    priv_any: bytes | None


# --- passphrases -----------------------------------------------------------------------------


def resolve_passphrase(
    plain: str | None,
    env_name: str | None,
    file_path: str | os.PathLike[str] | None,
    environ: Mapping[str, str],
) -> str | None:
    """Pick the keyring passphrase as the Go supernode does; ``None`` when none is configured.

    The first non-empty of ``plain``, ``environ[env_name]`` and the contents of ``file_path``
    wins, trimmed of surrounding whitespace: the Go node feeds the chosen value to the SDK's
    prompt through a pipe, and the prompt reads it back with ``strings.TrimSpace``. A configured
    variable that is unset or blank, or a configured file that is unreadable or blank, is an
    error even when ``plain`` is also set (Go validates each configured source before
    choosing). ``environ`` is passed in so that no module reads the process environment itself.
    """
    env_value: str | None = None
    if env_name:
        env_value = environ.get(env_name)
        if env_value is None or not env_value.strip():
            raise KeyringError(
                f"keyring passphrase environment variable {env_name!r} is not set or is empty"
            )
    file_value: str | None = None
    if file_path:
        try:
            with open(file_path, "rb") as handle:
                raw = handle.read(64 * 1024 + 1)
        except OSError as exc:
            raise KeyringError(
                f"cannot read keyring passphrase file {os.fspath(file_path)!r}: {exc.strerror}"
            ) from exc
        if len(raw) > 64 * 1024:
            raise KeyringError(f"keyring passphrase file {os.fspath(file_path)!r} is too large")
        try:
            file_value = raw.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise KeyringError(
                f"keyring passphrase file {os.fspath(file_path)!r} is not UTF-8 text"
            ) from exc
        if not file_value:
            raise KeyringError(f"keyring passphrase file {os.fspath(file_path)!r} is empty")
    for candidate in (plain, env_value, file_value):
        if candidate and candidate.strip():
            return candidate.strip()
    return None


def os_backend_advice(key_name: str = "<key_name>", directory: str = "<dir>") -> str:
    """What to do with a key in the ``os`` backend, which this program cannot read.

    One line, shared by ``config check`` and ``run`` so both say the same thing.
    """
    return (
        "the 'os' keyring backend keeps keys in the operating system's secret store, which "
        f"this program cannot read: export the key with 'lumerad keys export {key_name} "
        f"--keyring-backend os > {key_name}.armor', import it with 'lumera-p2p keys import "
        f"{key_name} {key_name}.armor --keyring-dir {directory} --keyring-backend file', "
        "then set keyring.backend: file (or test, on a local network)"
    )


# --- file names ------------------------------------------------------------------------------


def filename_escape(key: str) -> str:
    """99designs' ``percent.Encode(key, "/")``: ``%`` and ``/`` become ``%25`` and ``%2F``."""
    return key.replace("%", "%25").replace("/", "%2F")


def filename_unescape(filename: str) -> str:
    """``percent.Decode``: every ``%XX`` (either hex case) becomes that byte; nothing else."""
    raw = os.fsencode(filename)
    out = bytearray()
    i = 0
    hexdigits = b"0123456789abcdefABCDEF"
    while i < len(raw):
        if raw[i] == 0x25 and i + 2 < len(raw):
            pair = raw[i + 1 : i + 3]
            if pair[0] in hexdigits and pair[1] in hexdigits:
                out.append(int(pair, 16))
                i += 3
                continue
        out.append(raw[i])
        i += 1
    return out.decode("utf-8", "replace")


def address_key(address_bytes: bytes) -> str:
    """The item key of the address index: lowercase hex of the 20 bytes + ``.address``."""
    return address_bytes.hex() + ADDRESS_SUFFIX


def go_time_string(now_ns: int | None = None) -> str:
    """Local time formatted like Go's ``time.Time.String()`` (without the monotonic suffix)."""
    ns = time.time_ns() if now_ns is None else now_ns
    moment = datetime.fromtimestamp(ns // 1_000_000_000).astimezone()
    frac = f"{ns % 1_000_000_000:09d}".rstrip("0")
    zone = moment.tzname() or moment.strftime("%z")
    base = moment.strftime("%Y-%m-%d %H:%M:%S")
    return f"{base}{'.' + frac if frac else ''} {moment.strftime('%z')} {zone}"


# --- items and records -----------------------------------------------------------------------


def encode_item(key: str, data: bytes) -> bytes:
    """JSON of a 99designs ``Item`` as Go's ``json.Marshal`` writes it (field order, no spaces)."""
    item = {
        "Key": key,
        "Data": base64.b64encode(data).decode("ascii"),
        "Label": "",
        "Description": "",
        "KeychainNotTrustApplication": False,
        "KeychainNotSynchronizable": False,
    }
    text = json.dumps(item, separators=(",", ":"), ensure_ascii=False)
    # Go escapes these for HTML safety; matching it keeps the bytes identical.
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return text.encode("utf-8")


def _item_field(item: dict[str, Any], name: str) -> Any:
    # Go's json.Unmarshal matches struct fields case-insensitively; an exact match wins.
    if name in item:
        return item[name]
    lowered = name.lower()
    for key, value in item.items():
        if key.lower() == lowered:
            return value
    return None


def decode_item(payload: bytes) -> tuple[str, bytes]:
    """Parse a decrypted ``Item`` JSON; return ``(Key, Data)``."""
    try:
        item = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise KeyringError("keyring item is not JSON") from exc
    if not isinstance(item, dict):
        raise KeyringError("keyring item is not a JSON object")
    key = _item_field(item, "Key")
    data = _item_field(item, "Data")
    if not isinstance(key, str):
        raise KeyringError("keyring item has no string 'Key'")
    if data is None:
        return key, b""
    if not isinstance(data, str):
        raise KeyringError("keyring item 'Data' is not a base64 string")
    try:
        return key, base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyringError("keyring item 'Data' is not base64") from exc


def encode_record(name: str, public_key: PublicKey, private_key: PrivateKey) -> bytes:
    """A local ``cosmos.crypto.keyring.v1.Record`` (gogoproto field order)."""
    local = protowire.field_bytes(1, private_key.to_any())
    return (
        protowire.field_bytes(1, name.encode("utf-8"))
        + protowire.field_bytes(2, public_key.to_any())
        + protowire.field_bytes(3, local)
    )


def _len_field(number: int, wire: int, value: int | bytes, what: str) -> bytes:
    if wire != protowire.WIRE_LEN or not isinstance(value, bytes):
        raise KeyringError(f"record field {what} (#{number}) has the wrong wire type")
    return value


def decode_record(data: bytes) -> tuple[str, bytes, RecordKind, bytes | None]:
    """Parse a ``Record``; return ``(name, pub_key Any, kind, priv_key Any or None)``.

    An amino ``LegacyInfo`` (written by Cosmos SDK < 0.46) is refused with a clear message:
    the Go keyring migrates such records on first read, we do not.
    """
    legacy = _LEGACY_AMINO_PREFIXES.get(data[:4])
    if legacy is not None:
        raise KeyringError(
            f"legacy amino record ({legacy}, written by Cosmos SDK < 0.46); re-import the key "
            "(mnemonic or armored export), or open the keyring once with a current lumerad "
            "so it migrates the record to protobuf"
        )
    name: bytes | None = None
    pub_any: bytes | None = None
    kind: RecordKind | None = None
    item: bytes = b""
    try:
        for number, wire, value in protowire.iter_fields(data):
            if number == 1:
                name = _len_field(number, wire, value, "name")
            elif number == 2:
                pub_any = _len_field(number, wire, value, "pub_key")
            elif number in _KIND_FIELDS:
                item = _len_field(number, wire, value, _KIND_FIELDS[number].value)
                kind = _KIND_FIELDS[number]
        priv_any: bytes | None = None
        if kind is RecordKind.LOCAL:
            for number, wire, value in protowire.iter_fields(item):
                if number == 1:
                    priv_any = _len_field(number, wire, value, "local.priv_key")
    except ProtobufDecodeError as exc:
        raise KeyringError(f"record is not a valid protobuf Record: {exc}") from exc
    if name is None or pub_any is None:
        raise KeyringError("record lacks its name or public key")
    if kind is None:
        raise KeyringError("record holds no local, ledger, multi or offline item")
    if kind is RecordKind.LOCAL and priv_any is None:
        raise KeyringError("local record holds no private key")
    try:
        name_text = name.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise KeyringError("record name is not UTF-8") from exc
    return name_text, pub_any, kind, priv_any


# --- the keyring -----------------------------------------------------------------------------


def _check_name(name: str) -> None:
    if not name:
        raise KeyringError("a key name must not be empty")
    if any(ord(c) < 0x20 or c == "\x7f" for c in name):
        raise KeyringError(f"key name {name!r} contains control characters")
    if len(filename_escape(name + INFO_SUFFIX).encode("utf-8")) > _MAX_FILENAME_BYTES:
        raise KeyringError(f"key name {name[:40]!r}… is too long for a file name")


class Keyring:
    """A Cosmos SDK keyring directory, ``test`` or ``file`` backend.

    ``directory`` is the keyring's home (lumerad's ``--home``, e.g. ``~/.lumera``); the files
    live in ``<directory>/keyring-<backend>/``. The ``file`` backend needs ``passphrase``; when
    a ``keyhash`` exists the passphrase is checked against it at once.
    """

    def __init__(
        self, directory: str | os.PathLike[str], backend: str, passphrase: str | None = None
    ) -> None:
        backend = backend.strip().lower()
        if backend == "os":
            raise KeyringError(os_backend_advice(directory=str(directory)))
        if backend not in BACKEND_DIRS:
            raise KeyringError(f"unsupported keyring backend {backend!r} (use 'test' or 'file')")
        self.backend = backend
        self.root = Path(directory).expanduser()
        self.path = self.root / BACKEND_DIRS[backend]
        self._keyhash_checked = False
        if backend == "test":
            # Go ignores any configured passphrase for the test backend.
            self._password = TEST_PASSWORD
        else:
            if not passphrase:
                raise KeyringError(
                    "the 'file' keyring backend needs a passphrase (passphrase file, "
                    "environment variable or prompt)"
                )
            self._password = passphrase
            self._check_keyhash()

    def __repr__(self) -> str:
        return f"Keyring({str(self.root)!r}, {self.backend!r})"

    # --- reading -----------------------------------------------------------------------------

    def list(self) -> list[KeyInfo]:
        """All readable keys, sorted by name as Go sorts them; unreadable ones are logged."""
        infos, problems = self.scan()
        for problem in problems:
            _log.warning("skipping unreadable keyring entry: %s", problem)
        return infos

    def scan(self) -> tuple[_KeyInfos, _Problems]:
        """All keys plus one error per ``.info`` file that could not be read.

        A wrong passphrase is raised at once rather than collected: it concerns every file.
        """
        infos: _KeyInfos = []
        problems: _Problems = []
        for _key, path in self._info_files():
            try:
                infos.append(self._read_record(path).info)
            except WrongPassphrase:
                raise
            except KeyringError as exc:
                problems.append(exc)
        return infos, problems

    def get(self, name: str) -> KeyInfo:
        """The key called ``name``; :class:`KeyNotFound` if there is none."""
        return self._record_by_name(name).info

    def private_key(self, name: str) -> PrivateKey:
        """The private key called ``name``.

        Raises :class:`IdentityError` for a legacy secp256k1 key (Lumera needs eth_secp256k1)
        and :class:`KeyringError` for a ledger, multisig or offline entry.
        """
        record = self._record_by_name(name)
        return self._private_of(record, name)

    def key_by_address(self, address: str | bytes) -> KeyInfo:
        """The key with this address (bech32 ``lumera1…`` or 20 raw bytes)."""
        raw = address if isinstance(address, bytes) else address_to_bytes(address)
        if len(raw) != 20:
            raise KeyringError(f"an account address has 20 bytes, got {len(raw)}")
        shown = address_from_bytes(raw)
        index = self.path / filename_escape(address_key(raw))
        if not index.exists():
            raise KeyNotFound(f"no key with address {shown} in {self.path}")
        _key, data = self._read_item(index)
        if not data:
            raise KeyNotFound(f"no key with address {shown} in {self.path}")
        try:
            info_key = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise KeyringError(f"{index}: address index does not name a key") from exc
        if not info_key.endswith(INFO_SUFFIX):
            info_key += INFO_SUFFIX
        if "\x00" in info_key or len(filename_escape(info_key).encode()) > _MAX_FILENAME_BYTES:
            raise KeyringError(f"{index}: address index does not name a key")
        target = self.path / filename_escape(info_key)
        if not target.exists():
            raise KeyNotFound(
                f"address {shown} points to {info_key!r}, which is missing from {self.path}"
            )
        info = self._read_record(target).info
        if info.address_bytes != raw:
            raise KeyringError(
                f"{index}: address index points to {info.name!r}, whose address is {info.address}"
            )
        return info

    def private_key_by_address(self, address: str | bytes) -> PrivateKey:
        """The private key with this address."""
        info = self.key_by_address(address)
        return self.private_key(info.name)

    # --- writing -----------------------------------------------------------------------------

    def add(self, name: str, key: PrivateKey) -> KeyInfo:
        """Store ``key`` as ``name``; refuse a name or an address already present."""
        _check_name(name)
        info_path = self.path / filename_escape(name + INFO_SUFFIX)
        if info_path.exists():
            raise KeyringError(f"a key named {name!r} already exists in {self.path}")
        public = key.public_key
        addr_path = self.path / filename_escape(address_key(public.address_bytes))
        if addr_path.exists():
            try:
                existing = self.key_by_address(public.address_bytes)
            except KeyNotFound:
                existing = None  # stale index without its .info: Go removes and rewrites it
            if existing is not None:
                raise KeyringError(
                    f"address {public.address} is already in the keyring as {existing.name!r}"
                )
        self._prepare_for_write()
        record = encode_record(name, public, key)
        info_key = name + INFO_SUFFIX
        # Same order as Go's writeRecord: the record first, then its address index.
        self._write_item(info_path, info_key, record)
        self._write_item(addr_path, address_key(public.address_bytes), info_key.encode("utf-8"))
        return KeyInfo(name, public, RecordKind.LOCAL)

    def import_mnemonic(
        self, name: str, mnemonic: str, passphrase: str = "", path: str = DEFAULT_HD_PATH
    ) -> KeyInfo:
        """Derive an eth_secp256k1 key from a BIP39 mnemonic (``passphrase`` is BIP39's)."""
        _check_name(name)
        return self.add(name, PrivateKey.from_mnemonic(mnemonic, passphrase, path))

    def import_armor(self, name: str, armored_text: str, passphrase: str) -> KeyInfo:
        """Import a ``lumerad keys export`` armored key encrypted with ``passphrase``."""
        _check_name(name)
        # Check the name before paying for the armor's KDF, as Go's ImportPrivKey does.
        if (self.path / filename_escape(name + INFO_SUFFIX)).exists():
            raise KeyringError(f"a key named {name!r} already exists in {self.path}")
        from lumera_p2p.identity import armor  # noqa: PLC0415 (PyNaCl's wrappers, on import only)

        return self.add(name, armor.import_armored_key(armored_text, passphrase))

    # --- internals ---------------------------------------------------------------------------

    def _info_files(self) -> _Files:
        try:
            entries = list(os.scandir(self.path))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise KeyringError(f"cannot list {self.path}: {exc.strerror}") from exc
        found: _Files = []
        for entry in entries:
            key = filename_unescape(entry.name)
            if key.endswith(INFO_SUFFIX):
                found.append((key, Path(entry.path)))
        found.sort(key=lambda pair: pair[0])
        return found

    def _record_by_name(self, name: str) -> _Record:
        if not name:
            raise KeyNotFound("an empty key name names no key")
        path = self.path / filename_escape(name + INFO_SUFFIX)
        if len(path.name.encode("utf-8")) > _MAX_FILENAME_BYTES or not path.exists():
            raise KeyNotFound(f"no key named {name!r} in {self.path}")
        return self._read_record(path)

    def _private_of(self, record: _Record, name: str) -> PrivateKey:
        if record.info.kind is not RecordKind.LOCAL or record.priv_any is None:
            raise KeyringError(
                f"key {name!r} is a {record.info.kind.value} entry: its private key is not "
                "stored in this keyring"
            )
        if record.info.key_type is KeyType.SECP256K1:
            raise IdentityError(
                f"key {name!r} is a legacy secp256k1 (coin type 118) key; Lumera supernodes "
                "need an eth_secp256k1 key: re-import its mnemonic (coin type 60) under a new name"
            )
        key = PrivateKey.from_any(record.priv_any)
        if key.public_key != record.info.public_key:
            raise KeyringError(f"key {name!r}: the stored private and public keys do not match")
        return key

    def _read_record(self, path: Path) -> _Record:
        _key, data = self._read_item(path)
        try:
            name, pub_any, kind, priv_any = decode_record(data)
            public = PublicKey.from_any(pub_any)
        except (KeyringError, IdentityError) as exc:
            if isinstance(exc, WrongPassphrase):
                raise
            raise KeyringError(f"{path}: {exc}") from exc
        return _Record(KeyInfo(name, public, kind), priv_any)

    def _read_item(self, path: Path) -> tuple[str, bytes]:
        try:
            with open(path, "rb") as handle:
                info = os.fstat(handle.fileno())
                if not stat.S_ISREG(info.st_mode):
                    raise KeyringError(f"{path}: not a regular file")
                if info.st_size > MAX_ITEM_FILE_BYTES:
                    raise KeyringError(f"{path}: too large for a keyring item")
                raw = handle.read(MAX_ITEM_FILE_BYTES + 1)
        except FileNotFoundError as exc:
            raise KeyNotFound(f"{path} does not exist") from exc
        except OSError as exc:
            raise KeyringError(f"cannot read {path}: {exc.strerror}") from exc
        try:
            parsed = jwe.parse(raw)
            payload = jwe.decrypt_parsed(parsed, self._password)
        except JWEUnwrapError as exc:
            raise self._unwrap_error(path) from exc
        except JWEAuthError as exc:
            raise KeyringError(
                f"{path}: authentication failed; the file was modified or is corrupt"
            ) from exc
        except KeyringError as exc:
            raise KeyringError(f"{path}: {exc}") from exc
        try:
            return decode_item(payload)
        except KeyringError as exc:
            raise KeyringError(f"{path}: {exc}") from exc

    def _unwrap_error(self, path: Path) -> KeyringError:
        if self.backend == "file" and not self._keyhash_checked:
            return WrongPassphrase(
                f"wrong passphrase for the keyring in {self.path} (it does not open {path.name})"
            )
        if self.backend == "file":
            return KeyringError(
                f"{path}: the passphrase matches the keyhash but does not open this file; it is "
                "corrupt or was written with another passphrase"
            )
        return KeyringError(
            f"{path}: cannot be opened with the test backend's password; it is corrupt or "
            "belongs to another backend"
        )

    def _check_keyhash(self) -> None:
        keyhash = self.path / KEYHASH_FILE
        try:
            with open(keyhash, "rb") as handle:
                stored = handle.read(_MAX_KEYHASH_BYTES + 1).strip()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise KeyringError(f"cannot read {keyhash}: {exc.strerror}") from exc
        if len(stored) > _MAX_KEYHASH_BYTES:
            raise KeyringError(f"{keyhash}: too large for a bcrypt hash")
        try:
            ok = bcrypt.checkpw(self._password.encode("utf-8")[:MAX_PASSPHRASE_BYTES], stored)
        except ValueError as exc:
            raise KeyringError(f"{keyhash}: not a bcrypt hash") from exc
        if not ok:
            raise WrongPassphrase(f"wrong passphrase for the keyring in {self.path}")
        self._keyhash_checked = True

    def _prepare_for_write(self) -> None:
        self._ensure_dir()
        if self.backend != "file" or self._keyhash_checked:
            return
        if (self.path / KEYHASH_FILE).exists():
            self._check_keyhash()
            return
        password = self._password.encode("utf-8")
        if len(self._password) < MIN_PASSPHRASE_LEN:
            raise KeyringError(
                f"a keyring passphrase needs at least {MIN_PASSPHRASE_LEN} characters "
                "(lumerad refuses shorter ones)"
            )
        if len(password) > MAX_PASSPHRASE_BYTES:
            raise KeyringError(
                f"a keyring passphrase may have at most {MAX_PASSPHRASE_BYTES} bytes "
                "(Go's bcrypt refuses longer ones)"
            )
        # Files without a keyhash (deleted, or written by another tool): make sure the
        # passphrase opens them before recording a keyhash that would lock it in.
        existing = self._info_files()
        if existing:
            self._read_item(existing[0][1])
        digest = bcrypt.hashpw(password, bcrypt.gensalt(rounds=KEYHASH_COST, prefix=b"2a"))
        self._write_atomic(self.path / KEYHASH_FILE, digest)
        self._keyhash_checked = True

    def _ensure_dir(self) -> None:
        for directory in (self.root, self.path):
            if directory.is_dir():
                continue
            if directory.exists():
                raise KeyringError(f"{directory} exists and is not a directory")
            try:
                directory.mkdir(mode=0o700, parents=True)
                os.chmod(directory, 0o700)
            except FileExistsError:
                continue  # created concurrently
            except OSError as exc:
                raise KeyringError(f"cannot create {directory}: {exc.strerror}") from exc

    def _write_item(self, path: Path, key: str, data: bytes) -> None:
        token = jwe.encrypt(encode_item(key, data), self._password, created=go_time_string())
        self._write_atomic(path, token.encode("ascii"))

    def _write_atomic(self, path: Path, data: bytes) -> None:
        try:
            fd, tmp = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=path.parent)
        except OSError as exc:
            raise KeyringError(f"cannot write in {path.parent}: {exc.strerror}") from exc
        try:
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), 0o600)
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise KeyringError(f"cannot write {path}: {exc.strerror}") from exc
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        # Make the rename durable; not every filesystem lets a directory be fsynced.
        with contextlib.suppress(OSError):
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
