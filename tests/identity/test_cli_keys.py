"""``lumera-p2p keys``: output contract and exit statuses."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from lumera_p2p.cli.app import app
from lumera_p2p.identity import armor
from lumera_p2p.identity.keyring import Keyring
from lumera_p2p.identity.keys import PrivateKey
from tests.identity import gofmt

FILE_PASS = "correct horse battery"


def run(args: list[str], stdin: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, ["keys", *args], input=stdin, env=env)


def _assert_clean_failure(result: Result, code: int) -> None:
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit)  # no traceback escaped
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")


def test_recover_prints_vector_address_last(tmp_path: Path) -> None:
    result = run(
        ["add", "validator", "--recover", "--keyring-dir", str(tmp_path)],
        stdin=gofmt.VECTOR_MNEMONIC + "\n",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == gofmt.VECTOR_ADDRESS
    assert Keyring(tmp_path, "test").get("validator").address == gofmt.VECTOR_ADDRESS


def test_add_new_prints_the_mnemonic_on_stderr_and_the_record_then_address_on_stdout(
    tmp_path: Path,
) -> None:
    result = run(["add", "fresh", "--keyring-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    address = lines[-1]
    assert address.startswith("lumera1")
    assert lines[0] == "- name: fresh"
    assert f"  address: {address}" in lines
    assert "mnemonic" not in result.stdout  # the secret never reaches stdout
    assert "**Important** write this mnemonic phrase in a safe place." in result.stderr
    mnemonic = result.stderr.strip().splitlines()[-1]
    assert len(mnemonic.split()) == 24
    assert mnemonic not in result.stdout
    assert PrivateKey.from_mnemonic(mnemonic).address == address


def test_list_and_show(tmp_path: Path) -> None:
    kr = Keyring(tmp_path, "test")
    kr.import_mnemonic("validator", gofmt.VECTOR_MNEMONIC)
    listed = run(["list", "--keyring-dir", str(tmp_path)])
    assert listed.exit_code == 0
    assert "- name: validator" in listed.stdout
    assert gofmt.VECTOR_ADDRESS in listed.stdout
    shown = run(["show", "validator", "--address", "--keyring-dir", str(tmp_path)])
    assert shown.stdout == gofmt.VECTOR_ADDRESS + "\n"
    by_address = run(["show", gofmt.VECTOR_ADDRESS, "--keyring-dir", str(tmp_path)])
    assert "name: validator" in by_address.stdout
    assert '"key":"Ap3OFGt8NVFNutBCBNylHeIJ2gzB3nf7Cj1QCzhnxgWr"' in by_address.stdout


def test_list_reports_unreadable_entries(tmp_path: Path) -> None:
    Keyring(tmp_path, "test").add("ok", PrivateKey(b"\x01" * 32))
    (tmp_path / "keyring-test" / "broken.info").write_text("nonsense")
    result = run(["list", "--keyring-dir", str(tmp_path)])
    assert result.exit_code == 0
    assert "name: ok" in result.stdout
    assert "broken.info" in result.stderr


def test_file_backend_passphrase_sources(tmp_path: Path) -> None:
    pw_file = tmp_path / "pw"
    pw_file.write_text(FILE_PASS + "\n")
    home = str(tmp_path / "home")
    added = run(
        [
            "add",
            "k",
            "--recover",
            "--keyring-backend",
            "file",
            "--keyring-dir",
            home,
            "--passphrase-file",
            str(pw_file),
        ],
        stdin=gofmt.VECTOR_MNEMONIC,
    )
    assert added.exit_code == 0, added.output
    via_env = run(
        ["show", "k", "-a", "--keyring-backend", "file", "--keyring-dir", home],
        env={"LUMERA_KEYRING_PASSPHRASE": FILE_PASS},
    )
    assert via_env.stdout.strip() == gofmt.VECTOR_ADDRESS
    via_named_env = run(
        ["list", "--keyring-backend", "file", "--keyring-dir", home, "--passphrase-env", "KP"],
        env={"KP": FILE_PASS},
    )
    assert gofmt.VECTOR_ADDRESS in via_named_env.stdout
    wrong = run(
        ["list", "--keyring-backend", "file", "--keyring-dir", home],
        env={"LUMERA_KEYRING_PASSPHRASE": "not the passphrase"},
    )
    _assert_clean_failure(wrong, 1)
    assert "wrong passphrase" in wrong.stderr


def test_import_armor(tmp_path: Path) -> None:
    key = PrivateKey(gofmt.VECTOR_PRIV)
    armored = tmp_path / "key.asc"
    armored.write_text(armor.export_armor(key, "armor pass", kdf="scrypt"))
    home = str(tmp_path / "home")
    via_stdin = run(["import", "a", str(armored), "--keyring-dir", home], stdin="armor pass\n")
    assert via_stdin.exit_code == 0, via_stdin.output
    assert via_stdin.stdout.strip().splitlines()[-1] == gofmt.VECTOR_ADDRESS
    pw = tmp_path / "armor-pw"
    pw.write_text("armor pass\n")
    other = tmp_path / "other"
    via_file = run(
        [
            "import",
            "b",
            str(armored),
            "--keyring-dir",
            str(other),
            "--armor-passphrase-file",
            str(pw),
        ]
    )
    assert via_file.exit_code == 0, via_file.output
    dup = run(["import", "c", str(armored), "--keyring-dir", home], stdin="armor pass\n")
    _assert_clean_failure(dup, 1)
    assert "already in the keyring as 'a'" in dup.stderr
    bad = run(["import", "d", str(armored), "--keyring-dir", str(other)], stdin="nope\n")
    _assert_clean_failure(bad, 1)


@pytest.mark.parametrize(
    ("args", "stdin", "code", "message"),
    [
        (["show", "nobody"], None, 1, "no key named 'nobody'"),
        (["show", "lumera1notanaddress"], None, 1, "no key named 'lumera1notanaddress'"),
        (["show", gofmt.VECTOR_ADDRESS], None, 1, "no key with address"),
        (["add", "x", "--keyring-backend", "os"], None, 2, "'os' keyring backend"),
        (["add", "x", "--keyring-backend", "vault"], None, 2, "unsupported keyring backend"),
        (["list", "--keyring-backend", "file"], None, 2, "needs a passphrase"),
        (
            ["list", "--keyring-backend", "file", "--passphrase-env", "UNSET_VAR_X"],
            None,
            2,
            "UNSET_VAR_X",
        ),
        (["add", "x", "--recover"], "", 2, "stdin was empty"),
        (["add", "x", "--recover"], "not a mnemonic at all", 1, "invalid mnemonic"),
        (["import", "x", "/nonexistent/key.asc"], "pw\n", 1, "/nonexistent/key.asc"),
    ],
)
def test_errors_are_one_line(
    tmp_path: Path, args: list[str], stdin: str | None, code: int, message: str
) -> None:
    result = run(
        [*args, "--keyring-dir", str(tmp_path)], stdin=stdin, env={"LUMERA_KEYRING_PASSPHRASE": ""}
    )
    _assert_clean_failure(result, code)
    assert message in result.stderr
