"""The config loader's machinery: limits, every problem at once, secrets never shown."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from lumera_p2p.cli import app
from lumera_p2p.config import load_config
from lumera_p2p.errors import ConfigError
from lumera_p2p.safe_yaml import CONFIG_LIMITS, YamlLimits, parse_yaml

ADDR = "lumera1jcus5g9v6r080rg7dljvvpr4cm8k7psqwg7tj8"
SECRET = "hunter2-correct-horse"


def write(tmp_path: Path, data: Any, name: str = "config.yml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def load_error(tmp_path: Path, data: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, data))
    for field, problem in info.value.problems:
        assert "\n" not in field
        assert "\n" not in problem
    return info.value


VALID = "key_name: n\np2p:\n  data_dir: d\n"


# --- limits ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a: " + "[" * 100_000, "nest"),
        ("a: " + "{a: " * 10_000, "nested more than 32"),
        ("a:\n" + "- " * 50_000, "nested more than 32"),
        ("".join(" " * i + f"k{i}:\n" for i in range(200)), "nested more than 32"),
        (VALID + "x: " + "[" * 33 + "]" * 33, "nested more than 32"),
        ("".join(f"k{i}: {i}\n" for i in range(6000)), "more than 5,000 values"),
        (VALID + "x: [" + ", ".join(["a"] * 6000) + "]", "more than 5,000 values"),
        (VALID + "big: " + "1" * 5000, "integer longer than 40"),
        (VALID + "big: -0x" + "f" * 50, "integer longer than 40"),
        (VALID + "big: !!int " + "9" * 41, "integer longer than 40"),
        ("---\na: 1\n---\nb: 2\n", "not valid YAML"),
        ("a: &x [*x]\n", "alias refers to a value that contains it"),
        ("a: &x {b: *x}\n", "alias refers to a value that contains it"),
        ("".join(f"a{i}: &a{i} x\n" for i in range(3)) + "b: [" + "*a0, " * 129 + "]", "aliases"),
        ("k: !!int nope\n", "tagged value"),
        ("k: !!bool maybe\n", "tagged value"),
        ("k: !!float ''\n", "tagged value"),
        ("k: !!int ''\n", "tagged value"),
        ("k: !!set [a]\n", "not valid YAML"),
        ("k: !!python/object:os.system x\n", "not valid YAML"),
        ("a: b\n\x01", "not allowed"),
        ("? [a, b]\n: c\n", "not valid YAML"),
    ],
    ids=lambda v: v[:24] if isinstance(v, str) else v,
)
def test_hostile_yaml_is_one_config_error(tmp_path: Path, text: str, problem: str) -> None:
    error = load_error(tmp_path, text)
    assert problem in str(error)


def test_billion_laughs_is_refused_before_it_expands(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    error = load_error(tmp_path, VALID + "\n".join(lines) + "\n")
    assert "once aliases are expanded" in error.problem


def test_deep_aliases_are_refused_by_expanded_depth(tmp_path: Path) -> None:
    # Each line is shallow, but a30 is a list 31 lists deep once its aliases are expanded.
    lines = ["a0: &a0 [x]"] + [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, 40)]
    error = load_error(tmp_path, VALID + "\n".join(lines) + "\n")
    assert "deep once aliases are expanded" in error.problem


def test_aliases_and_merges_within_limits_are_fine(tmp_path: Path) -> None:
    text = (
        "key_name: n\n"
        "p2p:\n  <<: {data_dir: &d shared, port: 5000}\n  port: 5001\n"
        "keyring:\n  dir: *d\n"
    )
    config = load_config(write(tmp_path, text))
    assert config.p2p.port == 5001
    assert config.p2p.data_dir == config.keyring.dir == (tmp_path / "shared").resolve()


def test_timestamps_stay_text(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID + "lumera:\n  chain_id: 2001-13-45\n"))
    assert config.lumera.chain_id == "2001-13-45"


def test_file_size_is_checked_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.yml"
    path.write_text(VALID + "#" * CONFIG_LIMITS.max_bytes)
    with pytest.raises(ConfigError, match="larger than 131,072 bytes"):
        load_config(path)


def test_limits_are_parameters() -> None:
    small = YamlLimits(max_bytes=100, max_depth=2, max_nodes=5, max_aliases=0, max_int_chars=3)
    assert parse_yaml("a: [1]", small, "t") == {"a": [1]}
    for text, problem in [
        ("a: [[1]]", "nested more than 2"),
        ("a: [1, 2, 3]", "more than 5 values"),
        ("a: &x 1\nb: *x", "more than 0 aliases"),
        ("a: 1234", "longer than 3"),
    ]:
        with pytest.raises(ConfigError, match=problem):
            parse_yaml(text, small, "t")


def test_pure_python_parser_keeps_the_same_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without libyaml the scanner refuses depth itself (it would be quadratic otherwise)."""
    from lumera_p2p import safe_yaml  # noqa: PLC0415

    monkeypatch.setattr(safe_yaml, "_LOADER", safe_yaml._PyLimitedLoader)
    for text in ("a: " + "[" * 50_000, "a:\n" + "- " * 50_000, "a: " + "{a: " * 10_000):
        with pytest.raises(ConfigError, match="nested more than 32"):
            parse_yaml(text, CONFIG_LIMITS, "t")
    assert parse_yaml("a: [1, {b: 2001-01-01}]", CONFIG_LIMITS, "t") == {
        "a": [1, {"b": "2001-01-01"}]
    }
    with pytest.raises(ConfigError, match="longer than 40"):
        parse_yaml("a: " + "7" * 41, CONFIG_LIMITS, "t")


# --- every problem at once -------------------------------------------------------------------


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    data = {
        "key_name": "",
        "p2p": {"data_dir": "d", "port": 70000, "listen_adress": "x", "version": "dev"},
        "keyring": {"backend": "kwallet"},
        "lumera": {"grpc_adr": "localhost:9090", "gas_padding": "lots"},
        "log": {"level": "loud"},
        "raptorq": {"files_dri": "x"},
        "supernode": {"port": "4444"},
        "extra": 1,
    }
    error = load_error(tmp_path, data)
    fields = [field for field, _ in error.problems]
    assert sorted(fields) == sorted(
        [
            "key_name",
            "p2p.port",
            "p2p.listen_adress",
            "p2p.version",
            "keyring.backend",
            "lumera.grpc_adr",
            "lumera.gas_padding",
            "log.level",
            "raptorq.files_dri",
            "supernode.port",
            "extra",
        ]
    )
    # The first problem stays reachable the old way, and str() is one line per problem.
    assert (error.field, error.problem) == error.problems[0]
    assert str(error).splitlines() == error.lines()
    assert len(error.lines()) == len(fields)
    assert "lumera.grpc_adr: unknown field (did you mean 'grpc_addr'?)" in error.lines()


def test_cli_prints_every_problem_one_per_line_and_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path, {"p2p": {"data_dir": "d", "port": 0}, "lumera": {"chain_di": "x"}})
    proc = subprocess.run(
        [sys.executable, "-m", "lumera_p2p", "config", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        f"Error: {path}: key_name: is required",
        f"Error: {path}: p2p.port: Input should be greater than or equal to 1 (got 0)",
        f"Error: {path}: lumera.chain_di: unknown field (did you mean 'chain_id'?)",
    ]
    assert proc.stdout == ""


def test_run_prints_every_problem_too(tmp_path: Path) -> None:
    path = write(tmp_path, {"key_name": "n", "p2p": {"data_dir": "d", "port": 0, "x": 1}})
    result = CliRunner().invoke(app, ["run", "--config", str(path)])
    assert result.exit_code == 2
    assert "p2p.port" in result.output
    assert "p2p.x: unknown field" in result.output


def test_config_error_api() -> None:
    error = ConfigError("a.b", "bad\nvalue", more=[("c", "also  bad")])
    assert error.problems == (("a.b", "bad value"), ("c", "also bad"))
    assert str(error) == "a.b: bad value\nc: also bad"
    assert ConfigError.of([("", "whole file")]).lines() == ["whole file"]
    with pytest.raises(ValueError, match="at least one"):
        ConfigError.of([])


def test_odd_keys_are_quoted_in_field_names(tmp_path: Path) -> None:
    text = VALID + '"bad\\nkey": 1\n' + "1: 2\n" + '"' + "k" * 200 + '": 3\n'
    error = load_error(tmp_path, text)
    fields = [field for field, _ in error.problems]
    assert "'bad\\nkey'" in fields
    assert "1" in fields
    assert all(len(field) <= 60 for field in fields)


def test_long_values_are_cut_in_messages(tmp_path: Path) -> None:
    error = load_error(tmp_path, {"key_name": "n", "p2p": {"data_dir": "d", "port": "9" * 500}})
    assert error.field == "p2p.port"
    assert len(error.problem) < 160


# --- secrets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "keyring",
    [
        {"passphrase_plain": [SECRET]},
        {"passphrase_plain": {"x": SECRET}},
        {"passphrase_plain": 12345678901234},
        {"passphrase_plain": SECRET, "passphrase_env": "E"},
        {"password": [SECRET]},
        {"password": 12345678901234},
        {"password": SECRET, "passphrase_file": "f"},
        {"password": SECRET, "passphrase_plain": SECRET},
        {"passphrase_plain": SECRET, "backend": "nope"},
        {"passphrase_plain": SECRET, "bakend": "file"},
        {"pasphrase_plain": SECRET},
    ],
)
def test_secrets_are_never_echoed(tmp_path: Path, keyring: dict[str, Any]) -> None:
    error = load_error(tmp_path, {"key_name": "n", "p2p": {"data_dir": "d"}, "keyring": keyring})
    assert SECRET not in str(error)
    assert "12345678901234" not in str(error)
    assert any(field.startswith("keyring") for field, _ in error.problems)


def test_a_secret_in_the_wrong_place_is_not_echoed(tmp_path: Path) -> None:
    error = load_error(tmp_path, f"{VALID}keyring: {SECRET}\n")
    assert error.field == "keyring"
    assert SECRET not in str(error)


def test_secret_is_masked_in_config_check_output(tmp_path: Path) -> None:
    text = f"{VALID}keyring:\n  password: {SECRET}\n  backend: file\n"
    result = CliRunner().invoke(app, ["config", "check", "--offline", str(write(tmp_path, text))])
    assert SECRET not in result.output
    assert "passphrase_plain: '***'" in result.stdout
