"""Go's own encoding/gob decodes what we encode, and we decode what it encodes back.

A small Go program (``gob_oracle/``, written for these tests; it declares the message types
from the wire spec and registers them as the supernode does) reads our frames, decodes them
with encoding/gob, re-encodes them and hands them back. Skipped where no Go toolchain is
installed; the polyglot CI machines have one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from lumera_p2p.errors import ProtocolError
from lumera_p2p.wire import (
    BatchFindNodeResponse,
    BatchGetValuesRequest,
    BatchGetValuesResponse,
    FindNodeRequest,
    Message,
    Node,
    decode_message,
    encode_message,
)
from lumera_p2p.wire.messages import frame_header
from tests.wire.strategies import MESSAGES

GO = shutil.which("go") or (
    "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
)
ORACLE_SRC = Path(__file__).parent / "gob_oracle"

pytestmark = [
    pytest.mark.skipif(GO is None, reason="no Go toolchain on this machine"),
    pytest.mark.timeout(300),
]


def go_build_cache(fallback: Path) -> Path:
    """Go's build cache, kept between runs: compiling the standard library again for every
    session is most of this test's time (the cache is content-addressed, so sharing it is
    safe). A fresh one under ``fallback`` where the user's cache is not writable."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    cache = base / "lumera-p2p-tests" / "go-build"
    try:
        cache.mkdir(parents=True, exist_ok=True)
        probe = cache / ".writable"
        probe.touch()
    except OSError:
        return fallback / "cache"
    return cache


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    build = tmp_path_factory.mktemp("goboracle")
    binary = build / "goboracle"
    env = {
        **os.environ,
        "GOCACHE": str(go_build_cache(build)),
        "GOPATH": str(build / "gopath"),
        "GOFLAGS": "-mod=mod",
        "GOTOOLCHAIN": "local",
        "GOPROXY": "off",
        "CGO_ENABLED": "0",
    }
    assert GO is not None
    subprocess.run(
        [GO, "build", "-o", str(binary), "."], cwd=ORACLE_SRC, env=env, check=True, timeout=240
    )
    return binary


def go_round_trip(binary: Path, frames: list[bytes]) -> list[str]:
    proc = subprocess.run(
        [str(binary)],
        input="".join(f.hex() + "\n" for f in frames),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return proc.stdout.splitlines()


def test_every_message_round_trips_through_go(oracle: Path) -> None:
    collected: list[Message] = []

    @settings(max_examples=400, suppress_health_check=list(HealthCheck), deadline=None)
    @given(MESSAGES)
    def gather(msg: Message) -> None:
        collected.append(msg)

    gather()
    frames = [encode_message(m) for m in collected]
    # The generated encoder wrote them; the general one must agree byte for byte.
    assert frames == [encode_message(m, fast=False) for m in collected]
    answers = go_round_trip(oracle, frames)
    assert len(answers) == len(frames)
    for msg, answer in zip(collected, answers, strict=True):
        assert not answer.startswith("ERR"), (answer, msg)
        go_frame = bytes.fromhex(answer)
        assert decode_message(go_frame) == decode_message(go_frame, fast=False) == msg


def test_fresh_go_process_encodes_exactly_our_bytes(oracle: Path) -> None:
    # Go assigns gob type ids per process, so only a fresh process's encoding is comparable
    # with ours byte for byte (ours starts a fresh type table for every frame, as Go's first
    # frame does).
    collected: list[Message] = []

    @settings(max_examples=40, suppress_health_check=list(HealthCheck), deadline=None)
    @given(MESSAGES)
    def gather(msg: Message) -> None:
        collected.append(msg)

    gather()
    compared = 0
    for msg in collected:
        ours = encode_message(msg)
        (answer,) = go_round_trip(oracle, [ours])
        if _map_sizes(msg) > 1:
            # Go writes map entries in its randomised iteration order: only the decoded
            # value is comparable (the other test does that).
            assert decode_message(bytes.fromhex(answer)) == msg
            continue
        assert answer == ours.hex(), msg
        compared += 1
    assert compared >= 20


def _map_sizes(msg: Message) -> int:
    """The largest number of entries in any map the message carries."""
    data = msg.data
    maps: list[dict[str, object] | None] = []
    if isinstance(data, BatchGetValuesRequest | BatchGetValuesResponse):
        maps.append(data.data)  # type: ignore[arg-type]
    if isinstance(data, BatchFindNodeResponse):
        maps.append(data.closest_nodes)  # type: ignore[arg-type]
    return max((len(m) for m in maps if m), default=0)


def test_go_and_we_agree_on_truncated_bodies(oracle: Path) -> None:
    msg = Message(
        sender=Node(id=b"lumera1abc", ip="10.0.0.1", port=4445),
        message_type=2,
        data=FindNodeRequest(target=bytes(range(32))),
    )
    frame = encode_message(msg)
    body = frame[8:]
    cuts = [body[:n] for n in range(1, len(body))]
    framed = [frame_header(len(c)) + c for c in cuts]
    answers = go_round_trip(oracle, framed)
    for cut, answer in zip(framed, answers, strict=True):
        go_refused = answer.startswith("ERR")
        for fast in (True, False):
            try:
                decode_message(cut, fast=fast)
                we_refused = False
            except ProtocolError:
                we_refused = True
            assert go_refused == we_refused, (cut.hex(), answer, fast)
    assert all(a.startswith("ERR") for a in answers)
