"""Reading a file back: walk its manifest tree, fetch chunks a few ahead, verify, write in order.

Every value is checked against its key as it arrives (the DHT does it for every value), each
chunk's length against its manifest entry, and the whole file against the root's BLAKE3 at
the end. :meth:`FileReader.chunks` fetches ``readahead_chunks`` at a time with one
``batch_retrieve``, and the next group while the current one is consumed, so at most two
groups are held whatever the file's size; the tree walker holds one manifest per level.

:func:`get_file` writes to ``DEST.lumera-part`` beside the destination, with a sidecar
``DEST.lumera-part.json`` naming the file's key. Run again after an interruption, it checks
the partial file chunk by chunk against the manifest (locally: reading a disk is far cheaper
than the network), keeps the longest prefix that matches, and fetches only the rest. The
destination appears, by rename, only once the whole file has been verified.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import blake3

from lumera_p2p.content import digest, key_from_bytes
from lumera_p2p.errors import ManifestError, NotFound, ValueMismatch
from lumera_p2p.files.manifest import Manifest
from lumera_p2p.files.network import FileNetwork
from lumera_p2p.files.options import FileOptions
from lumera_p2p.files.partial import PartialFile
from lumera_p2p.files.tree import ChunkRef, NeedManifest, TreeWalker

log = logging.getLogger(__name__)

#: How often the sidecar's progress figure is rewritten (it is a hint: a resume re-checks).
_STATE_EVERY = 64 * 1024 * 1024

#: ``progress(done, total)``: bytes in hand (verified), of the file's size.
Progress = Callable[[int, int], None]


@dataclass
class FileGet:
    """What a ``get_file`` did."""

    key: str
    size: int = 0
    #: Bytes found already in the partial file and verified there (not fetched again).
    resumed_bytes: int = 0
    fetched_bytes: int = 0
    seconds: float = 0.0


class FileReader:
    """Streams one file's verified chunks from the network (see the module docstring)."""

    def __init__(
        self, network: FileNetwork, key: bytes, root: Manifest, options: FileOptions
    ) -> None:
        self._network = network
        self._key = key
        self.root = root
        self._options = options
        self._tx = key_from_bytes(key)

    @classmethod
    async def open(cls, network: FileNetwork, key: bytes, options: FileOptions) -> FileReader:
        """Fetch and check the root manifest; raise ``NotFound`` or ``ManifestError``."""
        data = await _fetch_one(network, key, options.retrieve_attempts)
        root = Manifest.decode(data)
        if not root.root:
            raise ManifestError(
                f"{key_from_bytes(key)} is a part of a file's manifest, not a whole file"
            )
        return cls(network, key, root, options)

    @property
    def size(self) -> int:
        """Bytes in the file."""
        return self.root.total

    @property
    def whole(self) -> bytes:
        """BLAKE3 of the whole file, from the root manifest."""
        assert self.root.whole is not None
        return self.root.whole

    async def refs(self, offset: int = 0) -> AsyncGenerator[ChunkRef, None]:
        """The file's chunks from the one holding byte ``offset`` on, fetching the child
        manifests on the way (not the chunks)."""
        walker = TreeWalker(self.root, offset)
        while True:
            step = walker.next()
            if step is None:
                return
            if isinstance(step, NeedManifest):
                walker.feed(
                    await _fetch_one(self._network, step.key, self._options.retrieve_attempts)
                )
                continue
            yield step

    async def chunks(self, offset: int = 0) -> AsyncGenerator[tuple[ChunkRef, bytes], None]:
        """Each chunk from the one holding byte ``offset`` on, verified, in file order."""
        group_size = self._options.readahead_chunks
        refs = self.refs(offset)
        pending: asyncio.Task[dict[bytes, bytes]] | None = None
        try:
            group = await _take(refs, group_size)
            if group:
                pending = asyncio.create_task(self._fetch(group))
            while group:
                upcoming = await _take(refs, group_size)
                assert pending is not None
                values = await pending
                pending = asyncio.create_task(self._fetch(upcoming)) if upcoming else None
                for ref in group:
                    value = values.get(ref.key)
                    if value is None:  # what came before it is yielded: a resume keeps it
                        raise NotFound(
                            f"the chunk at offset {ref.offset} of {self._tx} was not found "
                            f"on the network ({key_from_bytes(ref.key)})"
                        )
                    yield ref, value
                del values
                group = upcoming
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pending
            await refs.aclose()

    async def _fetch(self, group: list[ChunkRef]) -> dict[bytes, bytes]:
        """The group's chunks that could be found, each of the length its entry says."""
        lengths = {ref.key: ref.length for ref in group}
        found: dict[bytes, bytes] = {}
        wrong: list[bytes] = []

        async def accept(key: bytes, value: bytes) -> bool:
            if key not in lengths or key in found:
                return False
            if len(value) != lengths[key]:
                wrong.append(key)  # the key fixes the content, so the manifest is wrong
                return True
            found[key] = value
            return True

        for attempt in range(self._options.retrieve_attempts):
            missing = [k for k in lengths if k not in found]
            if not missing or wrong:
                break
            if attempt:
                await asyncio.sleep(min(2.0, 0.25 * 2**attempt))
            await self._network.fetch(missing, f"{self._tx}@{group[0].offset}", accept)
        if wrong:
            raise ManifestError(
                f"chunk {key_from_bytes(wrong[0])} of {self._tx} is not as long as its "
                "manifest says"
            )
        return found


async def _take(refs: AsyncIterator[ChunkRef], n: int) -> list[ChunkRef]:
    out: list[ChunkRef] = []
    async for ref in refs:
        out.append(ref)
        if len(out) == n:
            break
    return out


async def _fetch_one(network: FileNetwork, key: bytes, attempts: int) -> bytes:
    found: list[bytes] = []

    async def accept(got: bytes, value: bytes) -> bool:
        if got != key or found:
            return False
        found.append(value)
        return True

    for attempt in range(attempts):
        if attempt:
            await asyncio.sleep(min(2.0, 0.25 * 2**attempt))
        await network.fetch([key], key_from_bytes(key), accept)
        if found:
            return found[0]
    raise NotFound(f"manifest {key_from_bytes(key)} was not found on the network")


async def read_file(
    network: FileNetwork, key: bytes, options: FileOptions, offset: int = 0
) -> AsyncIterator[bytes]:
    """The file's bytes from ``offset`` on, chunk by chunk, each verified.

    From offset 0 the whole file is checked too: after the last piece, ``ValueMismatch`` if it
    does not hash to the root's BLAKE3 (a consumer must not trust the bytes before the
    iterator ends without an error). From a later offset only the chunks are checked.
    """
    reader = await FileReader.open(network, key, options)
    whole = blake3.blake3() if offset == 0 else None
    async for ref, data in reader.chunks(offset):
        if whole is not None:
            whole.update(data)
        yield data[offset - ref.offset :] if ref.offset < offset else data
    if whole is not None and whole.digest() != reader.whole:
        raise ValueMismatch(f"file {key_from_bytes(key)} does not hash to its manifest's BLAKE3")


async def _verified_prefix(reader: FileReader, part: PartialFile, whole: blake3.blake3) -> int:
    """Bytes at the start of ``part`` that match the file, chunk by chunk; fed to ``whole``."""
    good = 0
    async for ref in reader.refs(0):
        if ref.offset + ref.length > part.found:
            break
        data = await asyncio.to_thread(part.read, ref.length)
        if len(data) != ref.length or await asyncio.to_thread(digest, data) != ref.key:
            break
        await asyncio.to_thread(whole.update, data)
        good = ref.offset + ref.length
    return good


async def get_file(
    network: FileNetwork,
    key: bytes,
    dest: Path | BinaryIO,
    options: FileOptions,
    *,
    progress: Progress | None = None,
) -> FileGet:
    """Fetch file ``key`` into ``dest`` (a path, resumable; or a binary stream, written as it
    arrives), verifying every chunk and the whole; see the module docstring.

    Raises ``NotFound`` (a chunk or manifest nowhere: what came before it is kept for a
    resume), ``ManifestError`` (not a file, or a tree that does not add up) and
    ``ValueMismatch`` (the whole does not match: the partial file is removed, so a run again
    starts over).
    """
    started = time.perf_counter()
    name = key_from_bytes(key)
    reader = await FileReader.open(network, key, options)
    result = FileGet(name, reader.size)
    whole = blake3.blake3()
    if not isinstance(dest, Path):
        async for _ref, data in reader.chunks(0):
            await asyncio.to_thread(_write_hashed, dest.write, whole, data)
            result.fetched_bytes += len(data)
            if progress is not None:
                progress(result.fetched_bytes, reader.size)
        if whole.digest() != reader.whole:
            raise ValueMismatch(f"file {name} does not hash to its manifest's BLAKE3")
        result.seconds = time.perf_counter() - started
        return result
    part = await asyncio.to_thread(PartialFile.open, dest, name, reader.size)
    try:
        if part.found:
            result.resumed_bytes = await _verified_prefix(reader, part, whole)
            log.info("get %s: resuming %s at byte %d", name, part.path, result.resumed_bytes)
        await asyncio.to_thread(part.keep, result.resumed_bytes)
        done = noted = result.resumed_bytes
        if progress is not None:
            progress(done, reader.size)
        async for _ref, data in reader.chunks(done):
            await asyncio.to_thread(_write_hashed, part.write, whole, data)
            done += len(data)
            result.fetched_bytes += len(data)
            if done - noted >= _STATE_EVERY:
                await asyncio.to_thread(part.note, done)
                noted = done
            if progress is not None:
                progress(done, reader.size)
    except BaseException:
        await asyncio.to_thread(part.close)
        raise
    if whole.digest() != reader.whole:
        await asyncio.to_thread(part.discard)
        raise ValueMismatch(f"file {name} does not hash to its manifest's BLAKE3")
    await asyncio.to_thread(part.finish)
    result.seconds = time.perf_counter() - started
    return result


def _write_hashed(write: Callable[[bytes], object], whole: blake3.blake3, data: bytes) -> None:
    whole.update(data)
    write(data)
