"""Files of any size over the DHT: chunks, a manifest tree, streaming and resuming.

``P2P.put_file`` / ``get_file`` / ``read_file`` are the public calls; :class:`Files` is what the
service keeps for them (the options, the node and the put ledger, opened on first use).

- :mod:`.manifest`: the manifest format (binary, versioned; its layout is in the README)
- :mod:`.tree`: building and walking the manifest tree, sans I/O
- :mod:`.source`: reading a path or stream chunk by chunk, hashing as it goes
- :mod:`.put` / :mod:`.get`: the two drivers
- :mod:`.ledger`: which chunks reached enough replicas (what a resumed put skips)
- :mod:`.network`: the node calls the drivers use
- :mod:`.pacing`: a put paced to its receivers' write quotas
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from lumera_p2p.content import key_to_bytes
from lumera_p2p.dht import Node
from lumera_p2p.files.get import FileGet, FileReader, get_file, read_file
from lumera_p2p.files.get import Progress as GetProgress
from lumera_p2p.files.ledger import ChunkLedger
from lumera_p2p.files.manifest import Entry, Manifest
from lumera_p2p.files.network import FileNetwork, NodeValues
from lumera_p2p.files.options import FileOptions
from lumera_p2p.files.pacing import WritePacer
from lumera_p2p.files.partial import PartialFile, partial_paths
from lumera_p2p.files.put import FilePut, put_file
from lumera_p2p.files.put import Progress as PutProgress
from lumera_p2p.files.source import AsyncReader, Source

__all__ = [
    "AsyncReader",
    "Entry",
    "FileGet",
    "FileOptions",
    "FilePut",
    "FileReader",
    "Files",
    "GetProgress",
    "Manifest",
    "PartialFile",
    "PutProgress",
    "Source",
    "partial_paths",
]


class Files:
    """The file operations of one node."""

    def __init__(self, node: Node, data_dir: Path, options: FileOptions) -> None:
        self.options = options
        self._network: FileNetwork = NodeValues(node, pacer=WritePacer(node.options.serving.quotas))
        self._local: FileNetwork = NodeValues(node, local_only=True)
        self._replicas = node.options.replicas
        self._data_dir = data_dir
        self._ledger: ChunkLedger | None = None
        self._opening = asyncio.Lock()

    async def _open_ledger(self) -> ChunkLedger:
        async with self._opening:
            if self._ledger is None:
                forget = time.time() - self.options.resume_window
                self._ledger = await ChunkLedger.open(self._data_dir, forget_before=forget)
            return self._ledger

    async def put(self, source: Source, progress: PutProgress | None = None) -> FilePut:
        """Store a file (see :func:`.put.put_file`)."""
        ledger = await self._open_ledger()
        return await put_file(
            self._network,
            ledger,
            source,
            self.options,
            min_replicas=self.options.min_replicas or self._replicas,
            progress=progress,
        )

    async def get(
        self, key: str, dest: Path | BinaryIO, progress: GetProgress | None = None
    ) -> FileGet:
        """Fetch a file into ``dest`` (see :func:`.get.get_file`)."""
        return await get_file(
            self._network, key_to_bytes(key), dest, self.options, progress=progress
        )

    def _source(self, local_only: bool) -> FileNetwork:
        return self._local if local_only else self._network

    def read(self, key: str, offset: int = 0, local_only: bool = False) -> AsyncIterator[bytes]:
        """A file's verified bytes from ``offset`` (see :func:`.get.read_file`)."""
        return read_file(self._source(local_only), key_to_bytes(key), self.options, offset)

    async def open(self, key: str, local_only: bool = False) -> FileReader:
        """The file's root manifest, checked (its size and BLAKE3), and a reader of its chunks."""
        return await FileReader.open(self._source(local_only), key_to_bytes(key), self.options)

    async def close(self) -> None:
        """Close the ledger if it was opened."""
        if self._ledger is not None:
            await self._ledger.close()
