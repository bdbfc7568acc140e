"""libsodium's XChaCha20-Poly1305 entry points called without releasing the GIL.

cffi releases the GIL around every C call. For a small record (a few hundred bytes, about a
microsecond of work) that is the expensive part when other threads are busy: a node process
runs one SQLite writer thread per store, and each release lets one of them take the GIL,
which the event loop then waits some 20 µs to get back (measured in a 64-node process, puts
at 32 in flight: 12 % more puts a second with the GIL kept). ``ctypes.PyDLL`` calls the same
functions, from the same library PyNaCl loaded (its cffi module's own shared object), holding
the GIL. The record layer uses them for small frames only; large ones, whose encryption takes
long enough for another thread to use the time, still release it.

:func:`load` returns None, and the record layer keeps to cffi, wherever this does not work:
no such symbols in that object, another ctypes, or bytes that differ from cffi's in the
self-test it runs first (a frame sealed both ways, opened, and a forged one refused).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from typing import Final, NamedTuple

from nacl import _sodium

#: ``crypto_aead_xchacha20poly1305_ietf_encrypt(c, clen_p, m, mlen, ad, adlen, nsec, npub, k)``
#: and ``..._decrypt(m, mlen_p, nsec, c, clen, ad, adlen, npub, k)``; pointers as ints (or
#: ``bytes``, ``None``), lengths as ints; 0 on success.
AeadCall = Callable[..., int]

_TAG: Final = 16


class GilAead(NamedTuple):
    """The two entry points, and how to get the address of a writable buffer."""

    encrypt: AeadCall
    decrypt: AeadCall

    @staticmethod
    def address(buffer: bytearray | memoryview | object) -> int:
        """The address of a writable buffer's first byte (valid while the buffer lives and is
        not resized)."""
        return ctypes.addressof(ctypes.c_char.from_buffer(buffer))  # type: ignore[arg-type]


def load() -> GilAead | None:
    """The GIL-keeping entry points, checked against cffi's; None if they are not usable."""
    try:
        dll = ctypes.PyDLL(_sodium.__file__)
        encrypt = dll.crypto_aead_xchacha20poly1305_ietf_encrypt
        decrypt = dll.crypto_aead_xchacha20poly1305_ietf_decrypt
    except (OSError, AttributeError, TypeError):
        return None
    pointer, size, data = ctypes.c_void_p, ctypes.c_ulonglong, ctypes.c_char_p
    encrypt.argtypes = (pointer, pointer, pointer, size, pointer, size, pointer, data, data)
    decrypt.argtypes = (pointer, pointer, pointer, pointer, size, pointer, size, data, data)
    encrypt.restype = decrypt.restype = ctypes.c_int
    aead = GilAead(encrypt, decrypt)
    try:
        return aead if _agrees(aead) else None
    except (ctypes.ArgumentError, TypeError, ValueError):
        return None


def _agrees(aead: GilAead) -> bool:
    """Seal a message through both bindings, open it, and refuse a forged one."""
    ffi, lib = _sodium.ffi, _sodium.lib
    key, nonce, message = os.urandom(32), os.urandom(24), os.urandom(333)
    reference = bytearray(len(message) + _TAG)
    rc = lib.crypto_aead_xchacha20poly1305_ietf_encrypt(
        ffi.from_buffer(reference), ffi.NULL, message, len(message), ffi.NULL, 0, ffi.NULL,
        nonce, key,
    )  # fmt: skip
    sealed = bytearray(len(message) + _TAG)
    address = aead.address(sealed)
    if rc or aead.encrypt(address, None, message, len(message), None, 0, None, nonce, key):
        return False
    if sealed != reference:
        return False
    if aead.decrypt(address, None, None, address, len(sealed), None, 0, nonce, key):
        return False
    if bytes(sealed[: len(message)]) != message:
        return False
    forged = bytearray(reference)
    forged[-1] ^= 1
    where = aead.address(forged)
    return aead.decrypt(where, None, None, where, len(forged), None, 0, nonce, key) != 0
