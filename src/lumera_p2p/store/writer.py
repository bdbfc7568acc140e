"""One writer thread per database, fed by a queue, acknowledging each job after its commit.

Callers on the event loop submit a job (a function of a ``sqlite3.Connection``) and await a
future. The thread takes every job waiting in the queue, runs each inside its own SAVEPOINT of a
single transaction (so one failing job does not undo its neighbours), commits once, and only
then resolves the futures: group commit, so many small writes share one fsync, and no write is
acknowledged before it is durable. When idle, or on a timer, the thread checkpoints the WAL.
An optional listener hears of every commit and every undone transaction (the store's counters
follow committed rows that way, see :mod:`.tally`).

Every SQLite call lets go of the GIL and takes it back, which costs the busy event loop a wait
each time, so the common case is kept short: a job alone in its group runs without savepoints
(its failure undoes the transaction, the same outcome), a job that declares it writes with one
statement runs without a savepoint in a group (SQLite undoes a failing statement itself) and,
alone, in SQLite's own transaction of that statement (no BEGIN, no COMMIT: the statement
commits, and is durable, before it returns), and a group's futures are settled with one wake
of each caller's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from lumera_p2p.errors import StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], T]

#: Upper bound of jobs folded into one transaction (keeps one commit's latency bounded).
MAX_GROUP = 256


class TransactionListener(Protocol):
    """Told, in the writer thread, how each transaction ended."""

    def committed(self) -> None: ...

    def rolled_back(self) -> None: ...


@dataclass(slots=True)
class _Pending(Generic[T]):
    job: Job[T]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[T]
    #: The job writes with at most one statement (see ``WriterThread.submit``).
    one_statement: bool = False


#: What a job came to: its future, and its result or its error.
_Outcome = tuple[asyncio.Future[Any], Any, BaseException | None]


def _settle(fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if fut.done():  # the caller was cancelled; the write still happened (or failed) as reported
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)


def _settle_all(outcomes: list[_Outcome]) -> None:
    for fut, result, error in outcomes:
        _settle(fut, result, error)


def _deliver(loop: asyncio.AbstractEventLoop, outcomes: list[_Outcome]) -> None:
    """Settle ``outcomes`` (futures of ``loop``) with one wake of that loop."""
    # A RuntimeError means the caller's loop is closed: nobody is waiting any more.
    with contextlib.suppress(RuntimeError):
        if len(outcomes) == 1:
            loop.call_soon_threadsafe(_settle, *outcomes[0])
        else:
            loop.call_soon_threadsafe(_settle_all, outcomes)


def describe_sqlite_error(exc: BaseException, path: str) -> StoreError:
    """Turn a sqlite3 error into a ``StoreError`` that tells an operator what to do."""
    text = str(exc)
    lowered = text.lower()
    if "disk is full" in lowered or "disk i/o" in lowered:
        hint = "the disk is full or failing: free space under the data directory"
    elif "readonly" in lowered or "read-only" in lowered or "unable to open" in lowered:
        hint = "the data directory or database file is not writable"
    elif "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
        hint = "the database file is corrupt: restore it from a backup or move it aside"
    elif "locked" in lowered or "busy" in lowered:
        hint = "another process holds the database lock"
    else:
        hint = "SQLite error"
    return StoreError(f"{path}: {hint} ({text})")


class WriterThread:
    """The single writer of one SQLite database file."""

    def __init__(
        self,
        path: str,
        pragmas: tuple[str, ...],
        *,
        checkpoint_interval: float = 60.0,
        name: str = "sqlite-writer",
        listener: TransactionListener | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = path
        self._listener = listener
        # Only the checkpoint timer reads it; tests pass a fake to step past the interval.
        self._clock = clock
        self._pragmas = pragmas
        self._checkpoint_interval = checkpoint_interval
        self._queue: queue.SimpleQueue[_Pending[Any] | None] = queue.SimpleQueue()
        self._ready = threading.Event()
        self._open_error: BaseException | None = None
        # Guards _closed and _broken against a submit racing the thread's death.
        self._lock = threading.Lock()
        self._closed = False
        self._broken: str | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.commits = 0
        self.checkpoints = 0

    def start(self) -> None:
        """Open the connection in the thread; raise ``StoreError`` if that fails."""
        self._thread.start()
        self._ready.wait()
        if self._open_error is not None:
            self._thread.join()
            raise describe_sqlite_error(self._open_error, self._path)

    async def submit(self, job: Job[T], *, one_statement: bool = False) -> T:
        """Run ``job`` in the writer; return its result once its transaction has committed.

        ``one_statement`` promises that ``job`` changes the database with at most one
        statement (it may read before it): alone in the queue, it then runs without BEGIN and
        COMMIT, as that statement's own transaction, committed when the statement returns.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        with self._lock:
            if self._broken is not None:
                raise StoreError(self._broken)
            if self._closed:
                raise StoreError(f"{self._path}: the store is closed")
            self._queue.put(_Pending(job, loop, fut, one_statement))
        return await fut

    def close(self) -> None:
        """Finish every queued job, checkpoint, close the connection and join the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._thread.join()

    # --- the thread ----------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=True)
        for pragma in self._pragmas:
            conn.execute(pragma).fetchall()
        return conn

    def _run(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:  # whatever it is, start() must not wait forever
            self._open_error = exc
            return
        finally:
            self._ready.set()
        last_checkpoint = self._clock()
        stopping = False
        group: list[_Pending[Any]] = []
        try:
            while not stopping:
                timeout = max(0.0, last_checkpoint + self._checkpoint_interval - self._clock())
                try:
                    first = self._queue.get(timeout=timeout)
                except queue.Empty:
                    self._checkpoint(conn)
                    last_checkpoint = self._clock()
                    continue
                group = []
                if first is None:
                    stopping = True
                else:
                    group.append(first)
                # (Only this thread takes from the queue: not empty means get_nowait succeeds.)
                while len(group) < MAX_GROUP and not self._queue.empty():
                    item = self._queue.get_nowait()
                    if item is None:
                        stopping = True
                        break
                    group.append(item)
                if group:
                    self._run_group(conn, group)
                # Settled: drop the jobs now, not when the next one comes, or the last one's
                # values (a 400 MiB frame it is a view into) stay held while the writer idles.
                group = []
                first = item = None
                if self._clock() - last_checkpoint >= self._checkpoint_interval:
                    self._checkpoint(conn)
                    last_checkpoint = self._clock()
            self._checkpoint(conn)
        except BaseException as exc:
            # A job raised something that is not an Exception, or this loop has a bug: the
            # transaction is rolled back when the connection closes. Every caller waiting,
            # and every later one, gets an error instead of a future that never resolves.
            self._fail_everyone(group, exc)
        finally:
            conn.close()

    def _fail_everyone(self, group: list[_Pending[Any]], exc: BaseException) -> None:
        message = f"{self._path}: the writer thread stopped ({exc!r})"
        log.error("%s", message)
        with self._lock:
            self._broken = message
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    group.append(item)
        for pending in group:
            # Futures already settled by the group keep their result (_settle skips them).
            with contextlib.suppress(RuntimeError):
                pending.loop.call_soon_threadsafe(
                    _settle, pending.future, None, StoreError(message)
                )

    def _run_group(self, conn: sqlite3.Connection, group: list[_Pending[Any]]) -> None:
        if len(group) == 1:
            pending = group[0]
            result, error = self._run_alone(conn, pending)
            _deliver(pending.loop, [(pending.future, result, error)])
            return
        outcomes: dict[int, tuple[Any, BaseException | None]] = {}
        todo = list(range(len(group)))
        while todo:
            todo = self._transaction(conn, group, todo, outcomes)
        by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
        for index, pending in enumerate(group):
            result, error = outcomes[index]
            by_loop.setdefault(pending.loop, []).append((pending.future, result, error))
        for loop, settled in by_loop.items():
            _deliver(loop, settled)

    def _run_alone(
        self, conn: sqlite3.Connection, pending: _Pending[Any]
    ) -> tuple[Any, BaseException | None]:
        """Run a job that has the transaction to itself: no savepoint, since its failure
        undoing the transaction is the outcome a savepoint would give; no BEGIN or COMMIT
        for a job of one statement, whose own transaction commits as it returns."""
        explicit = not pending.one_statement
        try:
            if explicit:
                conn.execute("BEGIN IMMEDIATE")
            try:
                result = pending.job(conn)
            except Exception as exc:  # the job's own failure goes back to its caller
                failed = self._job_error(exc)
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._rolled_back()
                return None, failed
            if explicit or conn.in_transaction:  # (a one-statement job leaves none open)
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            # BEGIN, COMMIT or ROLLBACK failed: nothing is durable.
            return None, self._transaction_failed(conn, exc)
        self._committed()
        return result, None

    def _transaction(
        self,
        conn: sqlite3.Connection,
        group: list[_Pending[Any]],
        todo: list[int],
        outcomes: dict[int, tuple[Any, BaseException | None]],
    ) -> list[int]:
        """Run the jobs ``todo`` in one transaction; return the jobs to run again, if any.

        A job that fails is rolled back to its savepoint and reported to its caller alone. But
        SQLite rolls back the *whole* transaction on some errors (a full disk among them); then
        the failing job is reported and the others, whose work was undone, are run again.

        A one-statement job runs without a savepoint: SQLite undoes a statement that fails
        (or the whole transaction, as above). Should such a job fail after its statement
        changed rows, only undoing the transaction takes them back: it is undone, the job
        reported, and the others run again.
        """
        done: dict[int, tuple[Any, BaseException | None]] = {}
        try:
            conn.execute("BEGIN IMMEDIATE")
            for index in todo:
                savepoint = not group[index].one_statement
                if savepoint:
                    conn.execute("SAVEPOINT job")
                changes = conn.total_changes
                try:
                    result = group[index].job(conn)
                except Exception as exc:  # the job's own failure goes back to its caller
                    failed = self._job_error(exc)
                    if not conn.in_transaction or (not savepoint and conn.total_changes != changes):
                        if conn.in_transaction:
                            conn.execute("ROLLBACK")
                        self._rolled_back()
                        outcomes[index] = (None, failed)
                        return [i for i in todo if i != index]
                    if savepoint:
                        conn.execute("ROLLBACK TO job")
                        conn.execute("RELEASE job")
                    done[index] = (None, failed)
                else:
                    if savepoint:
                        conn.execute("RELEASE job")
                    done[index] = (result, None)
            conn.execute("COMMIT")
            self._committed()
        except sqlite3.Error as exc:
            # The transaction as a whole failed (at BEGIN or COMMIT: disk full, I/O error...):
            # nothing in it is durable, so every job in it fails, loudly.
            done = dict.fromkeys(todo, (None, self._transaction_failed(conn, exc)))
        outcomes.update(done)
        return []

    def _job_error(self, exc: Exception) -> BaseException:
        """What a job's caller is told of its failure: a SQLite error explained."""
        return describe_sqlite_error(exc, self._path) if isinstance(exc, sqlite3.Error) else exc

    def _transaction_failed(self, conn: sqlite3.Connection, exc: sqlite3.Error) -> StoreError:
        """Roll back a transaction that failed as a whole, log it; the error for its jobs."""
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        self._rolled_back()
        failure = describe_sqlite_error(exc, self._path)
        log.error("write transaction failed: %s", failure)
        return failure

    def _committed(self) -> None:
        self.commits += 1
        if self._listener is not None:
            self._listener.committed()

    def _rolled_back(self) -> None:
        if self._listener is not None:
            self._listener.rolled_back()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.checkpoints += 1
        except sqlite3.Error as exc:
            log.warning("WAL checkpoint of %s failed: %s", self._path, exc)
