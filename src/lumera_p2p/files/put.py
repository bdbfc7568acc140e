"""Storing a file: read chunk by chunk, store in batches, then the manifest tree, root last.

Memory stays at a few chunks whatever the file's size: one chunk is read and hashed at a time
(:mod:`.source`), at most ``store_batch_chunks`` of them (plus any manifest node they
completed) wait for their batch store, and the tree builder holds one open node per level.
The root goes last, so a root key only ever names a file whose chunks and manifests were all
stored first.

Each batch is stored in rounds: the first sends every value to its replicas, later rounds
(after a doubling delay) only to the replicas that did not acknowledge it, so a node that was
busy or over its write quota for a moment gets its copy without the others being sent theirs
again. A value still short after the last round is recorded with the acknowledgements it has
(a put run again sends it again); one that reached no replica at all fails the put.

Resuming: before a batch is sent, the ledger (:mod:`.ledger`) says which of its values this
node already stored on enough replicas recently; those are not sent again. A put killed
half-way and run again therefore re-reads the file (to hash it) but sends only what is missing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from lumera_p2p.content import key_from_bytes
from lumera_p2p.errors import StoreFailed
from lumera_p2p.files.ledger import Acks, ChunkLedger
from lumera_p2p.files.manifest import fanout
from lumera_p2p.files.network import Acked, FileNetwork
from lumera_p2p.files.options import FileOptions
from lumera_p2p.files.source import ChunkSource, Source
from lumera_p2p.files.tree import TreeBuilder

log = logging.getLogger(__name__)

#: ``progress(done, total)``: bytes read so far, and the source's size when known.
Progress = Callable[[int, int | None], None]


@dataclass
class FilePut:
    """What a ``put_file`` did."""

    #: The base58 key of the root manifest: the file's name on the network.
    key: str = ""
    size: int = 0
    chunks: int = 0
    #: Manifest nodes below the root (0 for a file that fits one manifest).
    manifests: int = 0
    #: Values (chunks and manifests) sent to the network in this run...
    sent: int = 0
    sent_bytes: int = 0
    #: ...and left out because the ledger showed them stored on enough replicas.
    skipped: int = 0
    skipped_bytes: int = 0
    #: Values sent again in a later store round, to replicas that had not acknowledged them
    #: (0 when every receiver took every batch at once).
    resent: int = 0
    #: The fewest replicas that acknowledged any value sent in this run, over all its store
    #: rounds (None: none was sent).
    min_acks: int | None = None
    seconds: float = 0.0


class _Batcher:
    """Collects values and stores them a batch at a time, skipping what the ledger has."""

    def __init__(
        self,
        network: FileNetwork,
        ledger: ChunkLedger,
        options: FileOptions,
        min_replicas: int,
        report: FilePut,
    ) -> None:
        self._network = network
        self._ledger = ledger
        self._options = options
        self._min_replicas = min_replicas
        self._report = report
        self._keys: list[bytes] = []
        self._values: list[bytes] = []
        self._batches = 0

    def add(self, key: bytes, value: bytes) -> None:
        if key not in self._keys:  # a file may repeat a chunk (zeros, say)
            self._keys.append(key)
            self._values.append(value)

    @property
    def full(self) -> bool:
        return len(self._keys) >= self._options.store_batch_chunks

    async def flush(self, task: str) -> None:
        keys, values = self._keys, self._values
        self._keys, self._values = [], []
        if not keys:
            return
        now = time.time()
        held = await self._ledger.stored(
            keys, min_replicas=self._min_replicas, since=now - self._options.resume_window
        )
        report = self._report
        send = [(k, v) for k, v in zip(keys, values, strict=True) if k not in held]
        report.skipped += len(keys) - len(send)
        report.skipped_bytes += sum(len(v) for k, v in zip(keys, values, strict=True) if k in held)
        if not send:
            return
        self._batches += 1
        acked = await self._store(
            [k for k, _ in send], [v for _, v in send], f"{task}/{self._batches}"
        )
        report.sent += len(send)
        report.sent_bytes += sum(len(v) for _, v in send)
        fewest = min(len(nodes) for nodes in acked.values())
        report.min_acks = fewest if report.min_acks is None else min(report.min_acks, fewest)

    async def _store(self, keys: list[bytes], values: list[bytes], task: str) -> Acked:
        """Store one batch in rounds (see ``FileOptions.store_rounds``); record the outcome.

        A value is short while fewer replicas acknowledged it than ``min_replicas`` or, in a
        network with fewer store-eligible nodes, than all of them. Raises ``StoreFailed`` when
        a value still reached no replica at all after the last round.
        """
        network, options = self._network, self._options
        acked = await network.store_values(keys, values, task)
        delay = options.store_retry_delay
        for _ in range(1, options.store_rounds):
            short = [i for i, k in enumerate(keys) if len(acked[k]) < self._wanted(k)]
            if not short:
                break
            await asyncio.sleep(delay)
            delay *= 2
            self._report.resent += len(short)
            more = await network.store_values(
                [keys[i] for i in short], [values[i] for i in short], task, acked=acked
            )
            for key, nodes in more.items():
                acked[key] |= nodes
        await self._ledger.record(
            {k: Acks(len(acked[k]), max(len(acked[k]), network.replica_count(k))) for k in keys},
            time.time(),
        )
        lost = sum(not acked[k] for k in keys)
        if lost:
            raise StoreFailed(
                f"{task}: {lost} of {len(keys)} values reached no replica "
                f"in {options.store_rounds} round(s) (stored locally; run the put again)"
            )
        return acked

    def _wanted(self, key: bytes) -> int:
        return min(self._min_replicas, self._network.replica_count(key))


async def put_file(
    network: FileNetwork,
    ledger: ChunkLedger,
    source: Source,
    options: FileOptions,
    *,
    min_replicas: int,
    progress: Progress | None = None,
) -> FilePut:
    """Store ``source`` as chunks and a manifest tree; see the module docstring.

    Raises ``StoreFailed`` when a batch does not reach enough nodes (everything stored before
    it stays recorded, so running the put again resumes there), ``OSError`` for a source that
    cannot be read.
    """
    started = time.perf_counter()
    report = FilePut()
    batcher = _Batcher(network, ledger, options, min_replicas, report)
    builder = TreeBuilder(fanout(options.chunk_size))
    async with ChunkSource(source, options.chunk_size) as reader:
        task = f"put {reader.name}"
        while (chunk := await reader.next()) is not None:
            report.chunks += 1
            report.size += len(chunk.data)
            batcher.add(chunk.key, chunk.data)
            for node in builder.add(chunk.key, len(chunk.data)):
                report.manifests += 1
                batcher.add(node.key, node.data)
            if batcher.full:
                await batcher.flush(task)
            if progress is not None:
                progress(report.size, reader.size)
        root, nodes = builder.finish(reader.whole_digest())
    for node in nodes:
        report.manifests += 1
        batcher.add(node.key, node.data)
    await batcher.flush(task)
    batcher.add(root.key, root.data)
    await batcher.flush(task)
    report.key = key_from_bytes(root.key)
    report.seconds = time.perf_counter() - started
    log.info(
        "put %s: %d bytes in %d chunks as %s; %d values sent, %d already stored",
        task.removeprefix("put "),
        report.size,
        report.chunks,
        report.key,
        report.sent,
        report.skipped,
    )
    return report
