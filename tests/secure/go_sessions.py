"""The secure sessions recorded from the Go supernode (``<repo>/../shared/vectors/secure``).

Each JSON file is one TCP session between a Go client and a Go server, every socket ``Write``
as a hex chunk (the folder's README explains the fields). This module reads the files and gives
their parts names, and holds the two pieces of Go behaviour both replays need: how Go cuts a
``Write`` into frames, and how to compare a decoded message with Go's notation of it. Files are
found by listing the folder, so new recordings are picked up without touching the tests.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest

from lumera_p2p.identity.keys import PrivateKey
from lumera_p2p.secure.handshake import StaticPeerVerifier
from lumera_p2p.secure.p256 import EphemeralKey
from lumera_p2p.secure.record import GO_PAYLOAD, RecordCrypto
from lumera_p2p.wire.gob import GoBytes, GoPtr, GoSlice, GoStruct, GoType
from lumera_p2p.wire.messages import REGISTRY

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
SECURE_VECTORS = SHARED / "vectors" / "secure"
#: Go wraps the handshake error of ``ComputeSharedSecret`` in these layers; the reason is after.
_GO_WRAPPERS = ("failed to compute shared secret: ", "failed to complete server handshake: ")


def session_files() -> list[Path]:
    """Every recorded session, in name order (empty if the shared folder is missing)."""
    return sorted(SECURE_VECTORS.glob("*.json")) if SECURE_VECTORS.is_dir() else []


def session_params() -> list[Any]:
    """``pytest.param`` per file, named by its stem; one skip marker if there are none."""
    files = session_files()
    if not files:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no files in {SECURE_VECTORS}"))]
    return [pytest.param(path, id=path.stem) for path in files]


@dataclass(frozen=True)
class Party:
    """One side of a session: account, configured and sent peer type, ephemeral key."""

    raw: dict[str, Any]

    @property
    def address(self) -> str:
        """The ``lumera1…`` account address."""
        return str(self.raw["address"])

    @cached_property
    def key(self) -> PrivateKey:
        """The account key, derived from the recorded mnemonic (and checked against the file)."""
        key = PrivateKey.from_mnemonic(self.raw["mnemonic"], path=self.raw["hd_path"])
        assert key.secret.hex() == self.raw["account_private_key_hex"]
        return key

    @property
    def peer_type_on_wire(self) -> int:
        """The ``peer_type`` its HandshakeInfo carried (0 in the peer-type-0 negative case)."""
        return int(self.raw["peer_type_on_wire"])

    @property
    def peer_type_configured(self) -> int:
        """What the Go node was configured as (1 Simplenode, 2 Supernode)."""
        return int(self.raw["peer_type_configured_in_go"])

    @cached_property
    def ephemeral(self) -> EphemeralKey:
        """The injected P-256 ephemeral key."""
        return EphemeralKey.from_scalar(int(self.raw["ephemeral_private_key_hex"], 16))

    @property
    def ephemeral_derivation_input(self) -> bytes:
        """The quoted text whose SHA-256 the README says the scalar is."""
        match = re.search(r'SHA-256\("([^"]*)"\)', self.raw["ephemeral_key_derivation"])
        assert match is not None, self.raw["ephemeral_key_derivation"]
        return match.group(1).encode()

    def scalar_matches_derivation(self) -> bool:
        """Whether the scalar is SHA-256 of its documented derivation input."""
        digest = hashlib.sha256(self.ephemeral_derivation_input).hexdigest()
        return digest == self.raw["ephemeral_private_key_hex"]


@dataclass(frozen=True)
class AppMessage:
    """One plaintext handed to (or read from) a secure conn's ``Write``."""

    raw: dict[str, Any]

    @property
    def direction(self) -> str:
        """``client_to_server`` or ``server_to_client``."""
        return str(self.raw["direction"])

    @property
    def plaintext(self) -> bytes:
        """The bytes, for kademlia messages header and gob body."""
        data = bytes.fromhex(self.raw["plaintext_hex"])
        assert len(data) == self.raw["plaintext_len"]
        return data

    @property
    def decoded_by_go(self) -> dict[str, Any] | None:
        """Go's decoding of a kademlia message; None for raw application bytes."""
        value = self.raw.get("decoded_by_go")
        return value if isinstance(value, dict) else None

    @property
    def kind(self) -> str:
        """The file's label (``Ping request``, ``raw 10 bytes``...)."""
        return str(self.raw["kind"])


class Session:
    """One recorded file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = json.loads(path.read_text())
        self.client = Party(self.data["client"])
        self.server = Party(self.data["server"])

    @property
    def name(self) -> str:
        """The file's stem."""
        return self.path.stem

    def chunks(self, direction: str) -> list[bytes]:
        """Every socket ``Write`` of one direction, in order."""
        return [bytes.fromhex(c) for c in self.data[direction]]

    @property
    def hs1(self) -> bytes:
        """The client's handshake message as it went on the wire."""
        return self.chunks("client_to_server")[0]

    @property
    def hs2(self) -> bytes:
        """The server's handshake message as it went on the wire."""
        return self.chunks("server_to_client")[0]

    @property
    def hello(self) -> dict[str, dict[str, Any]]:
        """``client_hello`` / ``server_hello`` records."""
        hs: dict[str, dict[str, Any]] = self.data["handshake"]
        return hs

    @property
    def key_material(self) -> bytes:
        """The 56 bytes Go's ``ExpandKey`` returned."""
        return bytes.fromhex(self.data["session_keys"]["expanded_key_56_hex"])

    def messages(self, direction: str | None = None) -> list[AppMessage]:
        """Application messages, all or of one direction, in order."""
        out = [AppMessage(m) for m in self.data["application_messages"]]
        return out if direction is None else [m for m in out if m.direction == direction]

    # --- what Go decided -------------------------------------------------------------------

    @property
    def go_errors(self) -> dict[str, str]:
        """Go's error strings and diagnostics for the session."""
        errors: dict[str, str] = self.data.get("go_errors") or {}
        return errors

    @property
    def refused_by(self) -> str | None:
        """``"server"`` or ``"client"`` if that side's Go handshake failed, else None.

        Read from ``go_errors`` (a ``<side>_handshake`` entry) and checked against
        ``outcome``, so a file's name is never what decides.
        """
        sides = [k.removesuffix("_handshake") for k in self.go_errors if k.endswith("_handshake")]
        outcome = str(self.data.get("outcome", ""))
        if not sides:
            assert outcome == "success", f"{self.name}: outcome {outcome!r} but no handshake error"
            return None
        assert len(sides) == 1 and sides[0] in ("server", "client"), sides
        assert outcome != "success" and sides[0] in outcome, (outcome, sides)
        return sides[0]

    @property
    def go_reason(self) -> str:
        """The innermost reason of the refusal (``invalid remote peer type: 0``)."""
        side = self.refused_by
        assert side is not None
        text = self.go_errors[f"{side}_handshake"]
        for wrapper in _GO_WRAPPERS:
            if wrapper in text:
                return text.rsplit(wrapper, 1)[1]
        return text

    def refused_for_gos_reason(self, ours: str) -> bool:
        """Does our error say what Go's did?

        Our messages start with Go's wording for each check; the innermost detail Go wraps may
        come from its mock chain (an RPC error text), so past Go's own layers, only those must
        match when the whole reason is not in ours.
        """
        reason = self.go_reason
        if reason in ours:
            return True
        layers, _, _detail = reason.rpartition(": ")
        return bool(layers) and ours.startswith(layers + ": ")

    def refusal_of_hello(self, side: str) -> str:
        """Go's reason for refusing ``side``'s hello, or ``""`` if its peer accepted it."""
        refuser = self.refused_by
        return "" if refuser is None or refuser == side else self.go_reason

    def verifier(self) -> SplitVerifier:
        """The mock chain: every party is an account; Go-configured supernodes are registered.

        Derived from the structured fields and checked against the ``mock_chain`` prose.
        """
        parties = (self.client, self.server)
        supernodes = {p.address for p in parties if p.peer_type_configured == 2}
        text = str(self.data.get("mock_chain", ""))
        for address in re.findall(
            r"(lumera1\w+) is an account but NOT a registered supernode", text
        ):
            assert address not in supernodes, (address, text)
        for address in re.findall(r"lumera1\w+", text):
            assert address in {p.address for p in parties}, (address, text)
        return SplitVerifier(supernodes, {p.address for p in parties})


class SplitVerifier(StaticPeerVerifier):
    """Supernodes and mere accounts listed apart (auth ``AccountInfo`` vs the registry)."""

    def __init__(self, supernodes: set[str], accounts: set[str]) -> None:
        super().__init__(accounts)
        self.supernodes = frozenset(supernodes)
        self.accounts = frozenset(accounts)

    async def is_registered_supernode(self, address: str) -> bool:
        """True for the registered supernodes only."""
        return address in self.supernodes

    async def account_exists(self, address: str) -> bool:
        """True for every account."""
        return address in self.accounts


#: Go's ``alts/conn`` writes at most 512 KiB per socket write: 128 frames of 4,096 bytes.
GO_FRAMES_PER_WRITE = 512 * 1024 // 4096


def go_writes(crypto: RecordCrypto, plaintext: bytes) -> list[bytes]:
    """The socket writes of one Go ``Conn.Write``: 4,072-byte frames, 128 to a socket write.

    The last frame carries the rest; an empty ``Write`` sends nothing.
    """
    step = GO_FRAMES_PER_WRITE * GO_PAYLOAD
    writes = []
    for start in range(0, len(plaintext), step):
        part = plaintext[start : start + step]
        frames = (crypto.seal(part[i : i + GO_PAYLOAD]) for i in range(0, len(part), GO_PAYLOAD))
        writes.append(b"".join(frames))
    return writes


# --- Go's notation of decoded messages -------------------------------------------------------


def assert_as_go_decoded(go: Any, value: Any, t: GoType, where: str) -> None:
    """Compare our decoded value with Go's notation in the files (see the module docstring).

    Structs are objects with every Go field: ``[]byte`` fields as ``<Name>_hex`` (``ID`` as
    text), slices of nodes as their count or as a list, ``Data`` with its ``go_type``.
    """
    if isinstance(t, GoPtr):
        if go is None:
            assert value is None, where
            return
        assert value is not None, where
        assert_as_go_decoded(go, value, t.elem, where)
        return
    if isinstance(t, GoStruct):
        assert isinstance(go, dict), (where, go)
        seen = {"go_type"}
        for field in t.fields:
            ours = getattr(value, field.attr)
            here = f"{where}.{field.name}"
            if f"{field.name}_hex" in go:
                seen.add(f"{field.name}_hex")
                assert (ours or b"").hex() == go[f"{field.name}_hex"], here
            elif field.name in go:
                seen.add(field.name)
                if isinstance(field.type, GoBytes):
                    assert (ours or b"").decode() == go[field.name], here
                elif field.name == "Data":
                    assert_data(go[field.name], ours, here)
                else:
                    assert_as_go_decoded(go[field.name], ours, field.type, here)
            else:
                raise AssertionError(f"{here}: Go's notation lacks the field")
        assert seen >= set(go), f"{where}: fields we do not know: {set(go) - seen}"
        return
    if isinstance(t, GoSlice):
        if isinstance(go, int):
            assert len(value or []) == go, where
            return
        assert isinstance(go, list) and len(go) == len(value or []), where
        for i, (g, v) in enumerate(zip(go, value or [], strict=True)):
            assert_as_go_decoded(g, v, t.elem, f"{where}[{i}]")
        return
    assert value == go, (where, value, go)


def assert_data(go: dict[str, Any] | None, value: Any, where: str) -> None:
    if go is None:
        assert value is None, where
        return
    name = go["go_type"]
    assert name == f"*kademlia.{type(value).__name__}", (where, name)
    t = REGISTRY.type_for_name(name.encode())
    assert isinstance(t, GoPtr)
    assert_as_go_decoded(go, value, t.elem, where)
