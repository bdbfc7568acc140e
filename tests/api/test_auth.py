"""The API token: its file, and when it is asked for."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from lumera_p2p.api.auth import (
    is_loopback,
    load_or_create_token,
    read_token,
    token_matches,
    token_required,
)


def test_when_a_token_is_required() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.3.2.1") and is_loopback("::1")
    assert is_loopback("[::1]") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("::")
    assert not token_required("127.0.0.1", False)
    assert token_required("127.0.0.1", True)
    assert token_required("0.0.0.0", False)
    assert token_required("192.168.1.5", False)


def test_the_token_file_is_made_once_owner_only_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "api-token"
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(load_or_create_token(path)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1  # racing starts agree on one token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_token(path) == results[0]
    assert load_or_create_token(path) == results[0]


def test_a_bad_token_file_is_an_error_not_a_token(tmp_path: Path) -> None:
    path = tmp_path / "api-token"
    path.write_text("two words\n")
    with pytest.raises(ValueError, match="not a token"):
        read_token(path)
    path.write_bytes(b"x" * 5000)
    with pytest.raises(ValueError, match="too large"):
        read_token(path)
    with pytest.raises(OSError):
        read_token(tmp_path / "absent")


def test_token_comparison() -> None:
    assert token_matches("abc", "abc")
    assert not token_matches("abc", "abd")
    assert not token_matches("", "abc")
