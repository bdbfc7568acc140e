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

    Memory is what is in flight, not the file: a put holds one batch of ``store_batch_chunks``
    chunks, sent at once to each chunk's replicas (6), each request about three times over on
    its way out (the gob frame, the encrypted records, the socket's buffer); a get holds two
    groups of ``readahead_chunks``. Measured with 8 node processes (``bench/files.py``), a batch
    of 8 MiB put the putting node at 229 MiB peak RSS and one of 4 MiB at 155-177 MiB, so a
    batch is 4 MiB. The chunk size then only sets how those 4 MiB are cut: four 1 MiB chunks
    move as fast as one 4 MiB chunk (17.7 and 16.3 MB/s: the same bytes per request, and a
    row and a 40-byte manifest entry per key are small beside a megabyte), but a resumed
    transfer restarts at the last whole chunk and a get verifies and writes in finer steps.
    Hence 1 MiB chunks, four per batch and per read-ahead group; larger chunks (up to 64 MiB)
    cut the key count of huge files where memory is plentiful.
    """

    chunk_size: int = MIB
    #: Chunks per ``store_batch`` (one local transaction, then each replica its share).
    store_batch_chunks: int = 4
    #: Chunks fetched per ``batch_retrieve`` on a get; the next group is fetched while the
    #: current one is written, so at most twice this many are held.
    readahead_chunks: int = 4
    #: Acknowledging replicas for a chunk to count as stored when a put is run again (None:
    #: ``dht.replicas``); a network with fewer store-eligible nodes needs all of them.
    min_replicas: int | None = None
    #: Seconds a chunk's record counts for a resumed put; older chunks are sent again.
    resume_window: float = 24 * 3600.0
    #: Rounds of ``batch_retrieve`` for chunks still missing before a get gives up.
    retrieve_attempts: int = 3
    #: Rounds of a put's batch: the first sends every value to its replicas, each further
    #: round only to the replicas that did not acknowledge it, after ``store_retry_delay``
    #: seconds (doubling each round). A node over its write quota answers Failed and accepts
    #: again once the quota refills, so a few rounds get the batch through.
    store_rounds: int = 4
    store_retry_delay: float = 0.5

    def __post_init__(self) -> None:
        if not MIN_CHUNK_SIZE <= self.chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(
                f"chunk_size must be {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}, not {self.chunk_size}"
            )
        if self.store_batch_chunks < 1 or self.readahead_chunks < 1:
            raise ValueError("store_batch_chunks and readahead_chunks must be at least 1")
        if self.min_replicas is not None and self.min_replicas < 1:
            raise ValueError("min_replicas must be at least 1")
        if self.resume_window <= 0 or self.retrieve_attempts < 1 or self.store_rounds < 1:
            raise ValueError("resume_window, retrieve_attempts and store_rounds must be positive")
        if self.store_retry_delay < 0:
            raise ValueError("store_retry_delay cannot be negative")
