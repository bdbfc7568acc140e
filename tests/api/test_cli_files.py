"""``lumera-p2p put`` / ``get`` of files as an operator runs them, against the nodes of a running
``lumera-p2p localnet``: past one chunk a put stores a file (chunks and a manifest), a get
into a file resumes from what an interrupted one left, and a partial file that does not match
is thrown away rather than trusted.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from lumera_p2p.content import content_key
from lumera_p2p.files import PartialFile, partial_paths
from tests.api.conftest import RunningNet, cli

pytestmark = pytest.mark.timeout(300)

MIB = 1 << 20
SIZE = 3 * MIB + 321  # past two chunks and the 2 MiB kept below


def lumera(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run ``lumera-p2p ARGS`` (a hang guard as its timeout, not a speed)."""
    return subprocess.run(cli(*args), input=stdin, capture_output=True, timeout=240, check=False)


def ok(run: subprocess.CompletedProcess[bytes]) -> subprocess.CompletedProcess[bytes]:
    assert run.returncode == 0, run.stderr.decode(errors="replace")[-3000:]
    return run


def put_file(net: RunningNet, tmp_path: Path, data: bytes) -> str:
    source = tmp_path / "data.bin"
    source.write_bytes(data)
    node = net.nodes[0]
    result = json.loads(ok(lumera("put", str(source), "--json", "--api", node.api)).stdout)
    assert (result["kind"], result["size"]) == ("file", len(data))
    return str(result["key"])


def test_a_file_past_one_chunk_goes_as_a_file_and_a_small_one_as_a_value(
    localnet_proc: RunningNet, tmp_path: Path
) -> None:
    data = os.urandom(SIZE)
    key = put_file(localnet_proc, tmp_path, data)
    assert key != content_key(data)  # the key names the manifest, not the bytes
    other = localnet_proc.nodes[2]
    out = ok(lumera("get", key, "--api", other.api)).stdout
    assert out == data
    # From stdin, past one chunk: a file too (the same bytes, the same key).
    piped = json.loads(ok(lumera("put", "-", "--json", "--api", other.api, stdin=data)).stdout)
    assert (piped["key"], piped["kind"]) == (key, "file")
    small = json.loads(
        ok(lumera("put", "-", "--json", "--api", other.api, stdin=data[:MIB])).stdout
    )
    assert (small["kind"], small["key"]) == ("value", content_key(data[:MIB]))
    bad = lumera("put", "-", "--as", "blob", "--api", other.api, stdin=b"x")
    assert bad.returncode == 2 and "--as" in bad.stderr.decode()


def test_an_interrupted_get_resumes_and_a_partial_file_that_does_not_match_is_discarded(
    localnet_proc: RunningNet, tmp_path: Path
) -> None:
    data = os.urandom(SIZE)
    key = put_file(localnet_proc, tmp_path, data)
    node = localnet_proc.nodes[1]
    dest = tmp_path / "back.bin"
    kept = 2 * MIB + 5
    # What a get killed after 2 MiB leaves: the partial file and its sidecar naming the key.
    part = PartialFile.open(dest, key, SIZE)
    part.write(data[:kept])
    part.close()
    got = json.loads(ok(lumera("get", key, "-o", str(dest), "--json", "--api", node.api)).stdout)
    assert (got["size"], got["kind"], got["resumed_bytes"]) == (SIZE, "file", kept)
    assert dest.read_bytes() == data
    assert not any(p.exists() for p in partial_paths(dest))

    # A partial file whose bytes are not the file's is hashed, found wrong, and removed.
    wrong = tmp_path / "wrong.bin"
    part = PartialFile.open(wrong, key, SIZE)
    part.write(b"\0" * MIB)
    part.close()
    failed = lumera("get", key, "-o", str(wrong), "--api", node.api)
    assert failed.returncode == 1
    assert "hashes to" in failed.stderr.decode() and "discarded" in failed.stderr.decode()
    assert not wrong.exists() and not any(p.exists() for p in partial_paths(wrong))
    again = ok(lumera("get", key, "-o", str(wrong), "--api", node.api))
    assert wrong.read_bytes() == data and "BLAKE3 matches the key" in again.stderr.decode()
    # A get of a key that names nothing leaves nothing behind.
    nowhere = str(tmp_path / "none")
    missing = lumera("get", content_key(b"nothing"), "-o", nowhere, "--api", node.api)
    assert missing.returncode == 1 and "404" in missing.stderr.decode()
    assert not list(tmp_path.glob("none*"))
