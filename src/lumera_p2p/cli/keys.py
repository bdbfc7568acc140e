"""``lumera-p2p keys``: manage keys in a Cosmos SDK keyring directory shared with lumerad.

Exit codes: 0 success, 1 a runtime failure (key not found, wrong passphrase, unreadable or
invalid input), 2 a usage or configuration problem (unsupported backend, passphrase source
misconfigured or missing). Each failure prints one line on stderr.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from lumera_p2p.cli.common import UsageFailure, reported_errors
from lumera_p2p.errors import IdentityError, KeyNotFound, KeyringError
from lumera_p2p.identity.keyring import (
    BACKEND_DIRS,
    KEYHASH_FILE,
    KeyInfo,
    Keyring,
    resolve_passphrase,
)
from lumera_p2p.identity.keys import (
    ETH_PUBKEY_TYPE_URL,
    LEGACY_PUBKEY_TYPE_URL,
    KeyType,
    PrivateKey,
    validate_address,
)

#: lumerad's default home; its keyring-test/ and keyring-file/ live directly inside it.
DEFAULT_KEYRING_DIR = "~/.lumera"
DEFAULT_BACKEND = "test"
#: Fallback source of the ``file`` backend's passphrase.
PASSPHRASE_ENV = "LUMERA_KEYRING_PASSPHRASE"


_MAX_STDIN_CHARS = 8192
_MAX_ARMOR_FILE_BYTES = 64 * 1024

keys_app = typer.Typer(help="Manage keys in a Cosmos SDK keyring directory.", no_args_is_help=True)

KeyringDirOpt = Annotated[
    Path,
    typer.Option(
        "--keyring-dir",
        help="Keyring home (lumerad's --home); keys live in <dir>/keyring-<backend>/.",
        show_default=True,
    ),
]
BackendOpt = Annotated[
    str, typer.Option("--keyring-backend", help="Keyring backend: test or file.", show_default=True)
]
PassFileOpt = Annotated[
    Path | None,
    typer.Option("--passphrase-file", help="File holding the file backend's passphrase."),
]
PassEnvOpt = Annotated[
    str | None,
    typer.Option(
        "--passphrase-env",
        help=f"Environment variable holding the file backend's passphrase "
        f"(default fallback: ${PASSPHRASE_ENV}).",
    ),
]


def _usage(message: str) -> NoReturn:
    raise UsageFailure(message)


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _open_keyring(
    directory: Path,
    backend: str,
    passphrase_file: Path | None,
    passphrase_env: str | None,
) -> Keyring:
    name = backend.strip().lower()
    if name == "os":
        _usage(
            "the 'os' keyring backend keeps keys in the OS secret store, which this program "
            "cannot read; use --keyring-backend file or test"
        )
    if name not in BACKEND_DIRS:
        _usage(f"unsupported keyring backend {backend!r}; use 'test' or 'file'")
    passphrase: str | None = None
    if name == "file":
        try:
            passphrase = resolve_passphrase(None, passphrase_env, passphrase_file, os.environ)
        except KeyringError as exc:
            _usage(str(exc))
        if passphrase is None:
            passphrase = os.environ.get(PASSPHRASE_ENV, "").strip() or None
        if passphrase is None and _stdin_is_tty():
            is_new = not (directory.expanduser() / BACKEND_DIRS[name] / KEYHASH_FILE).exists()
            passphrase = str(
                typer.prompt(
                    "Enter keyring passphrase",
                    hide_input=True,
                    confirmation_prompt=is_new,
                    err=True,
                )
            ).strip()
        if not passphrase:
            _usage(
                "the file backend needs a passphrase: use --passphrase-file, --passphrase-env "
                f"or ${PASSPHRASE_ENV}"
            )
    return Keyring(directory, name, passphrase)


def _pubkey_json(info: KeyInfo) -> str:
    url = ETH_PUBKEY_TYPE_URL if info.key_type is KeyType.ETH_SECP256K1 else LEGACY_PUBKEY_TYPE_URL
    key = base64.b64encode(info.public_key.compressed).decode("ascii")
    return json.dumps({"@type": url, "key": key}, separators=(",", ":"))


def _describe(info: KeyInfo) -> list[str]:
    key_type = info.key_type.value
    if info.key_type is KeyType.SECP256K1:
        key_type += " (legacy: Lumera supernodes need eth_secp256k1)"
    return [
        f"- name: {info.name}",
        f"  type: {info.kind.value}",
        f"  key_type: {key_type}",
        f"  address: {info.address}",
        f"  pubkey: '{_pubkey_json(info)}'",
    ]


def _is_address(text: str) -> bool:
    try:
        validate_address(text)
    except IdentityError:
        return False
    return True


def _read_stdin_text() -> str:
    if _stdin_is_tty():
        return sys.stdin.readline()
    return sys.stdin.read(_MAX_STDIN_CHARS)


@keys_app.command("add")
def add_command(
    name: Annotated[str, typer.Argument(help="Name of the new key.")],
    *,
    recover: Annotated[
        bool, typer.Option("--recover", help="Read a BIP39 mnemonic from stdin instead.")
    ] = False,
    keyring_dir: KeyringDirOpt = Path(DEFAULT_KEYRING_DIR),
    keyring_backend: BackendOpt = DEFAULT_BACKEND,
    passphrase_file: PassFileOpt = None,
    passphrase_env: PassEnvOpt = None,
) -> None:
    """Create a key (its new 24-word mnemonic on stderr) or recover one; the last line of
    stdout is its address."""
    with reported_errors():
        keyring = _open_keyring(keyring_dir, keyring_backend, passphrase_file, passphrase_env)
        if recover:
            if _stdin_is_tty():
                typer.echo("> Enter your bip39 mnemonic", err=True)
            mnemonic = " ".join(_read_stdin_text().split())
            if not mnemonic:
                _usage("--recover reads a mnemonic from stdin, but stdin was empty")
            info = keyring.import_mnemonic(name, mnemonic)
            typer.echo("\n".join(_describe(info)))
        else:
            key, mnemonic = PrivateKey.generate()
            info = keyring.add(name, key)
            typer.echo("\n".join(_describe(info)))
            # The secret goes to the terminal, not to whatever reads stdout (a log, a pipe
            # that parses the record and the address).
            typer.echo(
                "\n**Important** write this mnemonic phrase in a safe place.\n"
                "It is the only way to recover your account if you ever forget your password.\n",
                err=True,
            )
            typer.echo(mnemonic, err=True)
        typer.echo(info.address)


@keys_app.command("list")
def list_command(
    keyring_dir: KeyringDirOpt = Path(DEFAULT_KEYRING_DIR),
    keyring_backend: BackendOpt = DEFAULT_BACKEND,
    passphrase_file: PassFileOpt = None,
    passphrase_env: PassEnvOpt = None,
) -> None:
    """List the keys in the keyring (unreadable entries are reported on stderr)."""
    with reported_errors():
        keyring = _open_keyring(keyring_dir, keyring_backend, passphrase_file, passphrase_env)
        infos, problems = keyring.scan()
        for problem in problems:
            typer.echo(f"Warning: skipped {problem}", err=True)
        if not infos:
            typer.echo(f"No keys in {keyring.path}", err=True)
        for info in infos:
            typer.echo("\n".join(_describe(info)))


@keys_app.command("show")
def show_command(
    name: Annotated[str, typer.Argument(help="Key name (or its lumera1… address).")],
    *,
    address_only: Annotated[
        bool, typer.Option("--address", "-a", help="Print only the address.")
    ] = False,
    keyring_dir: KeyringDirOpt = Path(DEFAULT_KEYRING_DIR),
    keyring_backend: BackendOpt = DEFAULT_BACKEND,
    passphrase_file: PassFileOpt = None,
    passphrase_env: PassEnvOpt = None,
) -> None:
    """Show one key: name, type, address and public key."""
    with reported_errors():
        keyring = _open_keyring(keyring_dir, keyring_backend, passphrase_file, passphrase_env)
        try:
            info = keyring.get(name)
        except KeyNotFound:
            # Like lumerad, a name that is not found may be an address.
            if not _is_address(name):
                raise
            info = keyring.key_by_address(name)
        typer.echo(info.address if address_only else "\n".join(_describe(info)))


@keys_app.command("import")
def import_command(
    name: Annotated[str, typer.Argument(help="Name for the imported key.")],
    file: Annotated[Path, typer.Argument(help="Armored key from `lumerad keys export`.")],
    *,
    armor_passphrase_file: Annotated[
        Path | None,
        typer.Option(
            "--armor-passphrase-file",
            help="File holding the armor's passphrase (otherwise read from stdin).",
        ),
    ] = None,
    keyring_dir: KeyringDirOpt = Path(DEFAULT_KEYRING_DIR),
    keyring_backend: BackendOpt = DEFAULT_BACKEND,
    passphrase_file: PassFileOpt = None,
    passphrase_env: PassEnvOpt = None,
) -> None:
    """Import an ASCII-armored private key; the last line is its address."""
    with reported_errors():
        keyring = _open_keyring(keyring_dir, keyring_backend, passphrase_file, passphrase_env)
        armored = _read_small_text(file, _MAX_ARMOR_FILE_BYTES, "armored key file")
        if armor_passphrase_file is not None:
            secret = _read_small_text(armor_passphrase_file, 64 * 1024, "armor passphrase file")
        elif _stdin_is_tty():
            secret = str(
                typer.prompt("Enter passphrase to decrypt your key", hide_input=True, err=True)
            )
        else:
            secret = sys.stdin.readline()
        # Go reads this passphrase with TrimSpace, so surrounding whitespace never counts.
        passphrase = secret.strip()
        if not passphrase:
            _usage("no passphrase for the armored key (use --armor-passphrase-file or stdin)")
        info = keyring.import_armor(name, armored, passphrase)
        typer.echo("\n".join(_describe(info)))
        typer.echo(info.address)


def _read_small_text(path: Path, limit: int, what: str) -> str:
    with open(path, "rb") as handle:
        raw = handle.read(limit + 1)
    if len(raw) > limit:
        raise KeyringError(f"{what} {str(path)!r} is larger than {limit} bytes")
    return raw.decode("utf-8")
