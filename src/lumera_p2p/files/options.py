"""How files are split, stored and fetched (the ``files`` section of the config)."""

from __future__ import annotations

from dataclasses import dataclass

from lumera_p2p.files.manifest import MAX_CHUNK_SIZE

MIB = 1024 * 1024
#: Smallest chunk: a manifest node is at most one chunk and must hold a few entries.
MIN_CHUNK_SIZE = 4096


@dataclass(frozen=True)
class FileOptions:
    """Chunking and streaming of ``put_file`` / ``get_file``.

    The default chunk is 4 MiB. Memory in flight is a few chunks whatever the size (a batch is
    ``store_batch_chunks`` chunks, sent to each of its replicas; a get holds two groups of
    ``readahead_chunks``), so the chunk size trades per-key costs against that bound: each chunk
    is a key that every replica stores a row for, a manifest lists in 40 bytes and repair
    announces and checks one by one, which favours large chunks; a 4 MiB chunk is still one
    secure-channel write of four 1 MiB records, a single SQLite blob read without overflow
    chains worth worrying about, and 6 replicas × 2 chunks ≈ 48 MiB of requests in flight, which
    leaves a node far below 200 MiB. Smaller chunks only add keys; larger ones (up to 64 MiB)
    suit fast networks with memory to spare.
    """

    chunk_size: int = 4 * MIB
    #: Chunks per ``store_batch`` (one local transaction, then each replica its share).
    store_batch_chunks: int = 2
    #: Chunks fetched per ``batch_retrieve`` on a get; the next group is fetched while the
    #: current one is written, so at most twice this many are held.
    readahead_chunks: int = 2
    #: Acknowledging replicas for a chunk to count as stored when a put is run again (None:
    #: ``dht.replicas``); a network with fewer store-eligible nodes needs all of them.
    min_replicas: int | None = None
    #: Seconds a chunk's record counts for a resumed put; older chunks are sent again.
    resume_window: float = 24 * 3600.0
    #: Rounds of ``batch_retrieve`` for chunks still missing before a get gives up.
    retrieve_attempts: int = 3

    def __post_init__(self) -> None:
        if not MIN_CHUNK_SIZE <= self.chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(
                f"chunk_size must be {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}, not {self.chunk_size}"
            )
        if self.store_batch_chunks < 1 or self.readahead_chunks < 1:
            raise ValueError("store_batch_chunks and readahead_chunks must be at least 1")
        if self.min_replicas is not None and self.min_replicas < 1:
            raise ValueError("min_replicas must be at least 1")
        if self.resume_window <= 0 or self.retrieve_attempts < 1:
            raise ValueError("resume_window and retrieve_attempts must be positive")
