"""The symbol worker: every ``interval`` (Go: 30 s), and at once when a directory is registered,
store the files of every directory that is waiting (Go's ``startStoreSymbolsWorker``).

It is the thin driver of :class:`~lumera_p2p.dht.plans.symbol_dir.SymbolDirPlan`: it lists the
directory, performs each action the plan asks for (file reads and deletions in a thread, so
the event loop stays responsive; journal writes through the rqstore's writer; one
``store_batch`` per batch, as datatype 1 with the txid as task id), and reports back. One
batch of values is in memory at a time. Directories are taken oldest first, one after another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lumera_p2p.dht.plans.symbol_dir import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_INTERVAL,
    DEFAULT_MAX_BATCH_BYTES,
    Complete,
    Delete,
    DirOutcome,
    Forget,
    Load,
    Pause,
    Store,
    SymbolDirPlan,
)
from lumera_p2p.errors import LumeraP2PError
from lumera_p2p.store.rqstore import RQStore, SymbolDir
from lumera_p2p.symbols import files

log = logging.getLogger(__name__)

#: The datatype of a RaptorQ symbol (Go's ``P2PDataRaptorQSymbol``).
RAPTORQ_SYMBOL = 1

#: ``store_batch(values, datatype, task_id)``: raises a ``LumeraP2PError`` when the network
#: did not take the batch.
StoreBatch = Callable[[Sequence[bytes], int, str], Awaitable[object]]


@dataclass(frozen=True)
class SymbolWorkerOptions:
    """How the worker runs (the ``symbols`` section)."""

    interval: float = DEFAULT_INTERVAL
    batch_size: int = DEFAULT_BATCH_SIZE
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES
    #: A larger file is refused (it would not fit a batch).
    max_file_size: int = DEFAULT_MAX_BATCH_BYTES


@dataclass
class SymbolCounters:
    """What the worker did since start."""

    rounds: int = 0
    batches: int = 0
    symbols_stored: int = 0
    #: Journaled symbols deleted after a restart without being stored again.
    symbols_forgotten: int = 0
    refused: int = 0
    failed_batches: int = 0
    dirs_completed: int = 0


class SymbolWorker:
    """Stores registered symbol directories (see the module docstring)."""

    def __init__(
        self, rqstore: RQStore, store_batch: StoreBatch, options: SymbolWorkerOptions
    ) -> None:
        self._rq = rqstore
        self._store_batch = store_batch
        self.options = options
        self.counters = SymbolCounters()
        self._wake = asyncio.Event()
        # The last error logged per txid: a directory that keeps failing is logged once.
        self._errors: dict[str, str] = {}

    def wake(self) -> None:
        """Start a round now (or right after the one running)."""
        self._wake.set()

    async def run(self) -> None:
        """Rounds until cancelled: one at once, then every ``interval`` or when woken."""
        while True:
            self._wake.clear()  # a wake during the round below starts the next one at once
            try:
                await self.run_round()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("symbol worker round failed; retrying next round")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.options.interval):
                    await self._wake.wait()

    async def run_round(self) -> dict[str, DirOutcome]:
        """One round over every directory waiting; what each pass did, by txid."""
        self.counters.rounds += 1
        outcomes: dict[str, DirOutcome] = {}
        for entry in await self._rq.todo():
            outcomes[entry.txid] = await self.ingest(entry)
        return outcomes

    def _note_error(self, txid: str, error: str | None) -> None:
        if error is None:
            self._errors.pop(txid, None)
        elif self._errors.get(txid) != error:
            self._errors[txid] = error
            log.warning("symbols %s: %s (retrying every round)", txid, error)

    async def ingest(self, entry: SymbolDir) -> DirOutcome:
        """One pass over one directory: store what is left, resume what a crash cut short."""
        txid, root = entry.txid, Path(entry.dir)
        try:
            listing = await asyncio.to_thread(files.list_symbol_files, root)
        except OSError as exc:
            error = f"cannot list {entry.dir}: {exc.strerror or exc}"
            await self._rq.set_error(txid, error)
            self._note_error(txid, error)
            return DirOutcome(error=error)
        opts = self.options
        plan = SymbolDirPlan(
            txid,
            entry.dir,
            listing,
            acked=await self._rq.acked(txid),
            refused=await self._rq.refused_names(txid),
            batch_size=opts.batch_size,
            max_batch_bytes=opts.max_batch_bytes,
        )
        values: list[bytes] = []
        while (action := plan.next_action()) is not None:
            if isinstance(action, Forget):
                failed = await asyncio.to_thread(files.delete_files, root, action.names)
                await self._rq.clear_acked(txid, [n for n in action.names if n not in failed])
                plan.forgotten(failed)
                self.counters.symbols_forgotten += len(action.names) - len(failed)
            elif isinstance(action, Load):
                batch = await asyncio.to_thread(
                    files.load_symbols, root, action.names, opts.max_file_size
                )
                if batch.refused:
                    await self._rq.record_refused(txid, batch.refused)
                    self.counters.refused += len(batch.refused)
                    name, reason = next(iter(batch.refused.items()))
                    log.warning(
                        "symbols %s: %d files refused, not stored (%s: %s)",
                        txid,
                        len(batch.refused),
                        name,
                        reason,
                    )
                values = batch.values
                plan.loaded(batch.verified, batch.refused, batch.missing)
            elif isinstance(action, Store):
                try:
                    await self._store_batch(values, RAPTORQ_SYMBOL, txid)
                except LumeraP2PError as exc:
                    self.counters.failed_batches += 1
                    plan.store_failed(f"batch of {len(action.names)} not stored: {exc}")
                else:
                    plan.stored()
                finally:
                    values = []  # one batch in memory at a time
            elif isinstance(action, Delete):
                # Journal first: once this commits, a crash cannot make us store these again.
                await self._rq.record_acked(txid, action.names)
                failed = await asyncio.to_thread(files.delete_files, root, action.names)
                await self._rq.clear_acked(txid, [n for n in action.names if n not in failed])
                plan.deleted(failed)
                self.counters.batches += 1
                self.counters.symbols_stored += len(action.names)
                if failed:
                    log.warning("symbols %s: %d stored files not deleted", txid, len(failed))
                log.info(
                    "symbols %s: stored %d (%d left in %s)",
                    txid,
                    len(action.names),
                    plan.remaining,
                    entry.dir,
                )
            elif isinstance(action, Complete):
                plan.outcome.removed = await self._complete(txid, root, action)
            elif isinstance(action, Pause):
                await self._rq.set_error(txid, action.error)
        self._note_error(txid, plan.outcome.error)
        return plan.outcome

    async def _complete(self, txid: str, root: Path, action: Complete) -> bool:
        """Mark ``txid`` complete and remove its directory if the plan says so; return
        whether it was removed."""
        await self._rq.set_completed(txid)
        self.counters.dirs_completed += 1
        if action.remove:
            error = await asyncio.to_thread(files.remove_directory, root)
            if error is not None:
                log.warning("symbols %s: complete, but %s was not removed: %s", txid, root, error)
                return False
            log.info("symbols %s: complete; %s removed", txid, root)
            return True
        await asyncio.to_thread(files.prune_empty_block_dirs, root)
        log.warning("symbols %s: complete; %s kept: %s", txid, root, action.kept)
        return False
