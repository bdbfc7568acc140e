"""The GIL-keeping libsodium binding (``secure.gil_aead``): the same bytes as cffi's, the same
refusals, and cffi wherever it cannot be loaded or disagrees."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lumera_p2p.errors import ProtocolError
from lumera_p2p.secure import gil_aead, record
from lumera_p2p.secure.record import FAST_PATH_MIN, RecordCrypto, RecordReader, Side

KEY = bytes(range(56))


def _frames(binding: gil_aead.GilAead | None, payloads: list[Any]) -> list[bytes]:
    saved = record._GIL
    record._GIL = binding
    try:
        crypto = RecordCrypto(KEY, Side.CLIENT)
        return [bytes(crypto.seal_small(p)) for p in payloads]
    finally:
        record._GIL = saved


def _opened(binding: gil_aead.GilAead | None, frames: list[bytes]) -> bytes:
    saved = record._GIL
    record._GIL = binding
    try:
        reader = RecordReader(RecordCrypto(KEY, Side.SERVER))
        for frame in frames:
            reader.feed(frame)
        out = bytearray()
        while (chunk := reader.read(1 << 20)) is not None:
            out += chunk
        return bytes(out)
    finally:
        record._GIL = saved


def test_it_loads_here() -> None:
    # PyNaCl's cffi module exports libsodium's symbols: the node keeps the GIL on small frames.
    assert gil_aead.load() is not None
    assert record._GIL is not None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=3000), min_size=1, max_size=4))
def test_both_bindings_seal_and_open_the_same_bytes(payloads: list[bytes]) -> None:
    kept = record._GIL
    assert kept is not None
    sealed = _frames(kept, payloads)
    assert sealed == _frames(None, payloads)
    assert _opened(kept, sealed) == _opened(None, sealed) == b"".join(payloads)


def test_buffers_other_than_bytes_are_sealed_too() -> None:
    # Only ``bytes`` go through ctypes; a bytearray or a view takes cffi, with the same result.
    payload = os.urandom(FAST_PATH_MIN - 1)
    kinds = [payload, bytearray(payload), memoryview(payload), memoryview(bytearray(payload))]
    sealed = _frames(record._GIL, kinds)
    assert len(set(sealed)) == 4  # one counter value each
    assert sealed == _frames(None, kinds)


@pytest.mark.parametrize("where", [-1, 9, 30])
@pytest.mark.parametrize("gil", [True, False], ids=["ctypes", "cffi"])
def test_a_tampered_frame_is_refused_by_both(where: int, gil: bool) -> None:
    frame = bytearray(_frames(record._GIL, [b"hello, peer" * 3])[0])
    frame[where] ^= 0x40
    with pytest.raises(ProtocolError, match="authentication"):
        _opened(record._GIL if gil else None, [bytes(frame)])


def test_no_such_library_means_cffi(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(name: str) -> None:
        raise OSError(f"cannot load {name}")

    monkeypatch.setattr(gil_aead.ctypes, "PyDLL", refuse)
    assert gil_aead.load() is None


def test_no_such_symbols_means_cffi(monkeypatch: pytest.MonkeyPatch) -> None:
    libc = ctypes.util.find_library("c")
    if libc is None:  # pragma: no cover - not glibc
        pytest.skip("no C library to load instead")
    monkeypatch.setattr(gil_aead, "_sodium", SimpleNamespace(file=libc, __file__=libc))
    assert gil_aead.load() is None


def test_a_binding_that_disagrees_with_cffi_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    class Quiet:
        """Says it succeeded and writes nothing."""

        argtypes: tuple[Any, ...] = ()
        restype: Any = None

        def __call__(self, *args: object) -> int:
            return 0

    fake = SimpleNamespace(
        crypto_aead_xchacha20poly1305_ietf_encrypt=Quiet(),
        crypto_aead_xchacha20poly1305_ietf_decrypt=Quiet(),
    )
    monkeypatch.setattr(gil_aead.ctypes, "PyDLL", lambda name: fake)
    assert gil_aead.load() is None
