"""The writer thread on its own: acknowledgement after commit, group commit, savepoints,
whole-transaction failures, the checkpoint timer (on a fake clock) and shutdown."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lumera_p2p.errors import StoreError
from lumera_p2p.store import writer as writer_mod
from lumera_p2p.store.writer import WriterThread, describe_sqlite_error

PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA busy_timeout=0")


class FakeClock:
    """A monotonic clock the test moves by hand (the writer thread only reads it)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_db(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t(k TEXT PRIMARY KEY, v INTEGER)")
    conn.commit()
    conn.close()


def rows(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT k, v FROM t").fetchall())
    finally:
        conn.close()


def insert(k: str, v: int = 0) -> Any:
    def job(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO t(k, v) VALUES(?, ?)", (k, v))
        return k

    return job


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "w.sqlite3"
    make_db(path)
    return path


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def writer(db: Path, clock: FakeClock) -> Iterator[WriterThread]:
    # A long interval on a frozen clock: no checkpoint happens unless a test moves the clock.
    w = WriterThread(str(db), PRAGMAS, checkpoint_interval=100.0, clock=clock)
    w.start()
    yield w
    w.close()


class Gate:
    """A job that blocks the writer thread until released, so later jobs pile up in the queue."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, conn: sqlite3.Connection) -> str:
        self.entered.set()
        assert self.release.wait(30), "gate never released"
        return "gate"

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, 30)


async def wait_queued(w: WriterThread, n: int) -> None:
    # Every submit puts its job on the queue before it awaits; poll with a deadline.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while w._queue.qsize() < n:
        assert loop.time() < deadline, "jobs never reached the queue"
        await asyncio.sleep(0.001)


# --- acknowledgement and results ----------------------------------------------------------


async def test_result_comes_back_after_commit(writer: WriterThread, db: Path) -> None:
    assert await writer.submit(insert("a", 1)) == "a"
    # Acknowledged means committed: another connection sees it.
    assert rows(db) == {"a": 1}
    assert writer.commits == 1
    assert await writer.submit(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0]) == 1
    assert writer.commits == 2


async def test_queued_jobs_share_one_commit(writer: WriterThread, db: Path) -> None:
    gate = Gate()
    blocked = asyncio.ensure_future(writer.submit(gate))
    await gate.wait_entered()
    jobs = [asyncio.ensure_future(writer.submit(insert(f"k{i}", i))) for i in range(10)]
    await wait_queued(writer, 10)
    gate.release.set()
    assert await blocked == "gate"
    assert await asyncio.gather(*jobs) == [f"k{i}" for i in range(10)]
    assert writer.commits == 2  # the gate's transaction, then all ten in one
    assert rows(db) == {f"k{i}": i for i in range(10)}


async def test_a_group_holds_at_most_max_group_jobs(writer: WriterThread, db: Path) -> None:
    gate = Gate()
    blocked = asyncio.ensure_future(writer.submit(gate))
    await gate.wait_entered()
    n = writer_mod.MAX_GROUP + 1
    jobs = [asyncio.ensure_future(writer.submit(insert(f"k{i}", i))) for i in range(n)]
    await wait_queued(writer, n)
    gate.release.set()
    await blocked
    assert await asyncio.gather(*jobs) == [f"k{i}" for i in range(n)]
    # The gate, then MAX_GROUP jobs, then the one left over.
    assert writer.commits == 3
    assert len(rows(db)) == n


async def test_a_failing_job_is_rolled_back_alone(writer: WriterThread, db: Path) -> None:
    gate = Gate()
    blocked = asyncio.ensure_future(writer.submit(gate))
    await gate.wait_entered()

    def half_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t(k, v) VALUES('half', 0)")
        raise KeyError("the job's own bug")

    first = asyncio.ensure_future(writer.submit(insert("a")))
    bad = asyncio.ensure_future(writer.submit(half_then_fail))
    dup = asyncio.ensure_future(writer.submit(insert("a")))  # primary key clash
    last = asyncio.ensure_future(writer.submit(insert("b")))
    await wait_queued(writer, 4)
    gate.release.set()
    await blocked
    assert await first == "a"
    with pytest.raises(KeyError, match="own bug"):
        await bad  # not a sqlite error: handed back as it was raised
    with pytest.raises(StoreError, match="UNIQUE") as info:
        await dup  # a sqlite error becomes a StoreError naming the file
    assert str(db) in str(info.value)
    assert await last == "b"
    assert rows(db) == {"a": 0, "b": 0}  # "half" was rolled back with its job
    assert writer.commits == 2


async def test_a_job_that_ends_the_transaction_reruns_the_others(
    writer: WriterThread, db: Path
) -> None:
    # SQLite undoes the whole transaction on some errors (a full disk among them); a job
    # that rolls back and raises stands in for that. Its neighbours' work is redone.
    gate = Gate()
    blocked = asyncio.ensure_future(writer.submit(gate))
    await gate.wait_entered()

    def sink_it(conn: sqlite3.Connection) -> None:
        conn.execute("ROLLBACK")
        raise sqlite3.OperationalError("database or disk is full")

    before = [asyncio.ensure_future(writer.submit(insert(f"a{i}"))) for i in range(3)]
    bad = asyncio.ensure_future(writer.submit(sink_it))
    after = asyncio.ensure_future(writer.submit(insert("z")))
    await wait_queued(writer, 5)
    gate.release.set()
    await blocked
    assert await asyncio.gather(*before) == ["a0", "a1", "a2"]
    with pytest.raises(StoreError, match="disk is full"):
        await bad
    assert await after == "z"
    assert rows(db) == {"a0": 0, "a1": 0, "a2": 0, "z": 0}
    # The gate, then the retried transaction (the sunk one never committed).
    assert writer.commits == 2


async def test_a_transaction_that_cannot_begin_fails_every_job(
    writer: WriterThread, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Another connection holds the write lock; the writer's busy timeout is 0 here.
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        gate = Gate()
        blocked = asyncio.ensure_future(writer.submit(gate))
        with pytest.raises(StoreError, match="another process holds the database lock"):
            await blocked
        assert not gate.entered.is_set()  # the job never ran
        assert caplog.records[0].getMessage() == (
            f"write transaction failed: {db}: another process holds the database lock"
            " (database is locked)"
        )
        with pytest.raises(StoreError, match="locked"):
            await writer.submit(insert("x"))
        assert writer.commits == 0
    finally:
        other.execute("ROLLBACK")
        other.close()
    # The lock is gone: the writer carries on.
    assert await writer.submit(insert("x")) == "x"
    assert writer.commits == 1
    assert rows(db) == {"x": 0}


async def test_a_failed_commit_fails_every_job_in_it(tmp_path: Path) -> None:
    # A deferred foreign key is checked at COMMIT: the whole transaction fails there.
    path = tmp_path / "fk.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE p(id INTEGER PRIMARY KEY);"
        "CREATE TABLE c(id INTEGER REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED);"
    )
    conn.close()
    w = WriterThread(str(path), (*PRAGMAS, "PRAGMA foreign_keys=ON"))
    w.start()
    try:
        gate = Gate()
        blocked = asyncio.ensure_future(w.submit(gate))
        await gate.wait_entered()
        good = asyncio.ensure_future(w.submit(lambda c: c.execute("INSERT INTO p VALUES(1)")))
        orphan = asyncio.ensure_future(w.submit(lambda c: c.execute("INSERT INTO c VALUES(7)")))
        await wait_queued(w, 2)
        gate.release.set()
        await blocked
        for fut in (good, orphan):
            with pytest.raises(StoreError, match="FOREIGN KEY") as info:
                await fut
            assert str(info.value).startswith(f"{path}: ")
        assert w.commits == 1  # only the gate's
        check = sqlite3.connect(path)
        assert check.execute("SELECT count(*) FROM p").fetchone()[0] == 0
        check.close()
        # The connection is usable again after the failed transaction.
        await w.submit(lambda c: c.execute("INSERT INTO p VALUES(2)"))
        assert w.commits == 2
    finally:
        w.close()


async def test_a_cancelled_caller_does_not_stop_the_write(writer: WriterThread, db: Path) -> None:
    gate = Gate()
    blocked = asyncio.ensure_future(writer.submit(gate))
    await gate.wait_entered()
    doomed = asyncio.ensure_future(writer.submit(insert("kept")))
    await wait_queued(writer, 1)
    doomed.cancel()
    gate.release.set()
    await blocked
    # Anything submitted after the cancelled job finishes after it, in the same thread.
    assert await writer.submit(insert("next")) == "next"
    assert doomed.cancelled()
    assert rows(db) == {"kept": 0, "next": 0}


async def abandon_a_job(w: WriterThread, job: Any) -> None:
    """Submit ``job`` from another event loop, then close that loop before the answer."""

    async def submit_and_leave() -> None:
        task = asyncio.ensure_future(w.submit(job))
        await asyncio.sleep(0)  # the task runs up to its await: the job is queued
        assert not task.done()  # and asyncio.run cancels it on the way out

    await asyncio.to_thread(asyncio.run, submit_and_leave())


async def test_a_caller_whose_loop_closed_does_not_break_the_writer(
    writer: WriterThread, db: Path
) -> None:
    gate = Gate()
    blocked = asyncio.ensure_future(writer.submit(gate))
    await gate.wait_entered()
    await abandon_a_job(writer, insert("orphan"))
    await wait_queued(writer, 1)
    gate.release.set()
    await blocked
    assert await writer.submit(insert("next")) == "next"
    assert rows(db) == {"orphan": 0, "next": 0}


# --- the checkpoint timer -------------------------------------------------------------------


def read_checkpoints(w: WriterThread) -> Any:
    # Runs in the writer thread between its own steps, so it sees an exact count.
    return lambda conn: w.checkpoints


async def test_no_checkpoint_before_the_interval(writer: WriterThread, clock: FakeClock) -> None:
    assert await writer.submit(read_checkpoints(writer)) == 0
    clock.now += 99.9
    assert await writer.submit(read_checkpoints(writer)) == 0
    assert await writer.submit(read_checkpoints(writer)) == 0
    assert writer.checkpoints == 0


async def test_idle_past_the_interval_then_a_write_checkpoints(
    writer: WriterThread, clock: FakeClock, db: Path
) -> None:
    assert await writer.submit(insert("a")) == "a"
    clock.now += 100.0  # idle for exactly the interval (the thread is still waiting)
    assert await writer.submit(insert("b")) == "b"
    # The checkpoint follows the write that found the interval over, before the next job.
    assert await writer.submit(read_checkpoints(writer)) == 1
    # The timer starts again from that checkpoint: not due again yet.
    clock.now += 50.0
    assert await writer.submit(read_checkpoints(writer)) == 1
    clock.now += 50.0
    await writer.submit(insert("c"))
    assert await writer.submit(read_checkpoints(writer)) == 2
    assert rows(db) == {"a": 0, "b": 0, "c": 0}


async def test_checkpoint_moves_the_wal_into_the_database(
    writer: WriterThread, clock: FakeClock, db: Path
) -> None:
    empty = db.stat().st_size
    await writer.submit(lambda c: c.execute("CREATE TABLE big(b BLOB)"))
    await writer.submit(lambda c: c.execute("INSERT INTO big VALUES(zeroblob(200000))"))
    # Committed, but only in the WAL: the database file itself has not grown.
    assert db.stat().st_size == empty
    clock.now += 100.0
    await writer.submit(insert("last"))
    await writer.submit(lambda c: None)  # the checkpoint ran before this job
    assert db.stat().st_size > empty + 200000


async def test_an_idle_writer_checkpoints_when_the_interval_runs_out(db: Path) -> None:
    # The clock stands still, so the thread's wait is the whole (short, real) interval each
    # time: it checkpoints while nothing is written, without any job to wake it.
    clock = FakeClock()
    w = WriterThread(str(db), PRAGMAS, checkpoint_interval=0.01, clock=clock)
    w.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while w.checkpoints < 2:
            assert loop.time() < deadline, "an idle writer never checkpointed"
            await asyncio.sleep(0.01)
        assert w.commits == 0
        # After checkpointing on its own it goes back to waiting for jobs.
        assert await w.submit(insert("after idle")) == "after idle"
    finally:
        w.close()


async def test_a_failing_checkpoint_is_logged_not_raised(
    db: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    class NoCheckpoint(sqlite3.Connection):
        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
            if "wal_checkpoint" in sql:
                raise sqlite3.OperationalError("checkpoint refused")
            return super().execute(sql, *args)

    w = WriterThread(str(db), PRAGMAS, checkpoint_interval=100.0, clock=clock)
    w._connect = lambda: sqlite3.connect(  # type: ignore[method-assign]
        db, isolation_level=None, factory=NoCheckpoint
    )
    w.start()
    try:
        clock.now += 100.0
        with caplog.at_level(logging.WARNING, logger=writer_mod.__name__):
            assert await w.submit(insert("a")) == "a"
            assert await w.submit(insert("b")) == "b"  # still serving
        assert w.checkpoints == 0
        assert [r.getMessage() for r in caplog.records] == [
            f"WAL checkpoint of {db} failed: checkpoint refused"
        ]
    finally:
        w.close()
    assert rows(db) == {"a": 0, "b": 0}


async def test_the_default_interval_is_a_minute(db: Path) -> None:
    clock = FakeClock()
    w = WriterThread(str(db), PRAGMAS, clock=clock)
    w.start()
    try:
        clock.now += 59.9
        await w.submit(insert("a"))
        assert await w.submit(read_checkpoints(w)) == 0
        clock.now += 0.1
        await w.submit(insert("b"))
        assert await w.submit(read_checkpoints(w)) == 1
    finally:
        w.close()


# --- start and close ------------------------------------------------------------------------


async def test_close_finishes_queued_jobs_and_checkpoints(writer: WriterThread, db: Path) -> None:
    gate = Gate()
    blocked = asyncio.ensure_future(writer.submit(gate))
    await gate.wait_entered()
    jobs = [asyncio.ensure_future(writer.submit(insert(f"k{i}"))) for i in range(5)]
    await wait_queued(writer, 5)
    closing = asyncio.ensure_future(asyncio.to_thread(writer.close))
    await wait_queued(writer, 6)  # the stop marker is behind the jobs
    gate.release.set()
    await closing
    assert not writer._thread.is_alive()
    assert await blocked == "gate"
    assert await asyncio.gather(*jobs) == [f"k{i}" for i in range(5)]
    assert writer.checkpoints == 1  # the final one
    assert len(rows(db)) == 5


async def test_a_closed_writer_refuses_jobs(writer: WriterThread) -> None:
    writer.close()
    writer.close()  # idempotent
    assert writer.checkpoints == 1
    with pytest.raises(StoreError, match="closed"):
        await writer.submit(insert("late"))


def test_the_thread_is_a_named_daemon(db: Path) -> None:
    # A daemon, so a store left open never keeps the process from exiting.
    for name, expected in ((None, "sqlite-writer"), ("data-writer", "data-writer")):
        w = WriterThread(str(db), PRAGMAS) if name is None else WriterThread(str(db), (), name=name)
        w.start()
        try:
            mine = [t for t in threading.enumerate() if t.name == expected]
            assert len(mine) == 1
            assert mine[0].daemon
        finally:
            w.close()
        assert not any(t.name == expected for t in threading.enumerate())


def test_a_file_that_cannot_be_opened_is_a_clear_error(tmp_path: Path) -> None:
    w = WriterThread(str(tmp_path / "missing" / "x.sqlite3"), PRAGMAS)
    with pytest.raises(StoreError, match="not writable") as info:
        w.start()
    assert "missing" in str(info.value)
    assert not w._thread.is_alive()


def test_a_bad_pragma_is_a_clear_error(db: Path) -> None:
    w = WriterThread(str(db), ("PRAGMA nonsense syntax here",))
    with pytest.raises(StoreError, match="SQLite error"):
        w.start()


class Escape(BaseException):
    """Not an Exception: the writer's per-job handler does not catch it."""


async def test_a_dying_writer_fails_its_callers_instead_of_stranding_them(
    writer: WriterThread, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gate = Gate()
    blocked = asyncio.ensure_future(writer.submit(gate))
    await gate.wait_entered()

    def escape(conn: sqlite3.Connection) -> None:
        raise Escape("out of the job")

    await abandon_a_job(writer, insert("orphan"))  # its failure cannot be delivered
    before = asyncio.ensure_future(writer.submit(insert("before")))
    fatal = asyncio.ensure_future(writer.submit(escape))
    behind = [asyncio.ensure_future(writer.submit(insert(f"q{i}"))) for i in range(MAX_BEHIND)]
    await wait_queued(writer, 3 + MAX_BEHIND)
    with caplog.at_level(logging.ERROR, logger=writer_mod.__name__):
        gate.release.set()
        assert await blocked == "gate"
        for fut in [before, fatal, *behind]:
            with pytest.raises(StoreError, match="the writer thread stopped") as info:
                await fut
            assert "out of the job" in str(info.value)
    assert [r.getMessage() for r in caplog.records] == [
        f"{db}: the writer thread stopped (Escape('out of the job'))"
    ]
    with pytest.raises(StoreError, match="the writer thread stopped"):
        await writer.submit(insert("later"))
    await asyncio.to_thread(writer._thread.join, 30)
    assert not writer._thread.is_alive()
    assert rows(db) == {}  # the group with the escape was rolled back whole
    writer.close()


MAX_BEHIND = writer_mod.MAX_GROUP + 3  # some in the dying group, the rest still queued


def test_an_unexpected_error_while_opening_is_reported_not_hung(tmp_path: Path) -> None:
    w = WriterThread(str(tmp_path / "x.sqlite3"), PRAGMAS)

    def broken() -> sqlite3.Connection:
        raise ValueError("not a sqlite error")

    w._connect = broken  # type: ignore[method-assign]
    with pytest.raises(StoreError, match="not a sqlite error"):
        w.start()


# --- error descriptions ----------------------------------------------------------------------


FULL = "the disk is full or failing: free space under the data directory"
READONLY = "the data directory or database file is not writable"
CORRUPT = "the database file is corrupt: restore it from a backup or move it aside"
LOCKED = "another process holds the database lock"


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("database or disk is full", FULL),
        ("disk I/O error", FULL),
        ("attempt to write a readonly database", READONLY),
        ("attempt to write a read-only database", READONLY),
        ("unable to open database file", READONLY),
        ("file is not a database", CORRUPT),
        ("database disk image is malformed", CORRUPT),
        ("corrupt index", CORRUPT),
        ("database is locked", LOCKED),
        ("database table is busy", LOCKED),
        ("no such table: x", "SQLite error"),
    ],
)
def test_error_descriptions(text: str, hint: str) -> None:
    err = describe_sqlite_error(sqlite3.OperationalError(text), "/data/db")
    assert isinstance(err, StoreError)
    assert str(err) == f"/data/db: {hint} ({text})"


class Heard:
    """A transaction listener that writes down what it hears, in order."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def committed(self) -> None:
        self.events.append("committed")

    def rolled_back(self) -> None:
        self.events.append("rolled back")


async def test_the_listener_hears_each_commit_and_each_undone_transaction(db: Path) -> None:
    heard = Heard()
    w = WriterThread(str(db), PRAGMAS, listener=heard)
    w.start()
    try:
        assert await w.submit(insert("a")) == "a"
        assert heard.events == ["committed"]

        def sink_it(conn: sqlite3.Connection) -> None:
            conn.execute("ROLLBACK")
            raise sqlite3.OperationalError("database or disk is full")

        with pytest.raises(StoreError, match="disk is full"):
            await w.submit(sink_it)
        assert heard.events == ["committed", "rolled back"]
        # A transaction that cannot begin (another connection holds the lock) is undone too.
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreError, match="locked"):
                await w.submit(insert("b"))
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert heard.events == ["committed", "rolled back", "rolled back"]
        assert await w.submit(insert("c")) == "c"
        assert heard.events[-1] == "committed" and len(heard.events) == 4
    finally:
        w.close()
    assert rows(db) == {"a": 0, "c": 0}


# --- a job alone, one-statement jobs, one wake per group ----------------------------------------


def half_then_fail(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO t(k, v) VALUES('half', 0)")
    raise KeyError("the job's own bug")


@pytest.mark.parametrize("one_statement", [False, True])
async def test_a_failing_job_alone_is_undone_and_reported(db: Path, one_statement: bool) -> None:
    # Alone in its group a job has no savepoint: its failure undoes the whole transaction,
    # which is all it holds. (A one-statement job's own statement is its transaction.)
    heard = Heard()
    w = WriterThread(str(db), PRAGMAS, listener=heard)
    w.start()
    try:
        assert await w.submit(insert("a", 1), one_statement=one_statement) == "a"
        assert (w.commits, heard.events) == (1, ["committed"])
        with pytest.raises(KeyError, match="own bug"):
            await w.submit(half_then_fail)  # (a second write: not a one-statement job)
        assert (w.commits, heard.events) == (1, ["committed", "rolled back"])
        with pytest.raises(StoreError, match="UNIQUE") as info:
            await w.submit(insert("a", 2), one_statement=one_statement)
        assert str(info.value).startswith(f"{db}: ")
        assert (w.commits, heard.events) == (1, ["committed", "rolled back", "rolled back"])
        assert rows(db) == {"a": 1}  # nothing of either failed job, "half" included
        # The connection is fine afterwards, and nothing of the failures is left open.
        assert await w.submit(insert("b"), one_statement=one_statement) == "b"
        assert (w.commits, heard.events[-1]) == (2, "committed")
        assert rows(db) == {"a": 1, "b": 0}
    finally:
        w.close()


async def test_a_one_statement_job_alone_is_its_own_transaction(
    writer: WriterThread, db: Path
) -> None:
    def probe(conn: sqlite3.Connection) -> bool:
        open_before = conn.in_transaction
        conn.execute("INSERT INTO t(k, v) VALUES('x', 1)")
        # Committed as the statement returned: another connection sees it already.
        assert rows(db) == {"x": 1}
        return open_before

    assert await writer.submit(probe, one_statement=True) is False

    # Without the promise, the same job runs in an explicit transaction.
    def explicit(conn: sqlite3.Connection) -> bool:
        return conn.in_transaction

    assert await writer.submit(explicit) is True
    assert writer.commits == 2


async def test_one_statement_jobs_in_a_group_fail_alone_without_savepoints(db: Path) -> None:
    heard = Heard()
    w = WriterThread(str(db), PRAGMAS, listener=heard)
    w.start()
    try:
        gate = Gate()
        blocked = asyncio.ensure_future(w.submit(gate))
        await gate.wait_entered()
        first = asyncio.ensure_future(w.submit(insert("a"), one_statement=True))
        dup = asyncio.ensure_future(w.submit(insert("a"), one_statement=True))
        bad = asyncio.ensure_future(w.submit(half_then_fail))
        last = asyncio.ensure_future(w.submit(insert("b"), one_statement=True))
        await wait_queued(w, 4)
        gate.release.set()
        await blocked
        assert await first == "a"
        with pytest.raises(StoreError, match="UNIQUE"):
            await dup  # SQLite undid the statement: nothing else of the group is
        with pytest.raises(KeyError):
            await bad
        assert await last == "b"
        assert rows(db) == {"a": 0, "b": 0}
        assert w.commits == 2  # the gate's, then one for the four
        assert heard.events == ["committed", "committed"]  # nothing run twice
    finally:
        w.close()


async def test_a_group_is_settled_with_one_wake_of_the_loop(
    writer: WriterThread, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    wakes: list[object] = []
    real = loop.call_soon_threadsafe

    def counting(callback: Any, *args: Any, **kwargs: Any) -> Any:
        if callback in (writer_mod._settle, writer_mod._settle_all):  # (not to_thread's)
            wakes.append(callback)
        return real(callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_soon_threadsafe", counting)
    gate = Gate()
    blocked = asyncio.ensure_future(writer.submit(gate))
    await gate.wait_entered()
    jobs = [asyncio.ensure_future(writer.submit(insert(f"k{i}", i))) for i in range(10)]
    doomed = asyncio.ensure_future(writer.submit(insert("cancelled")))
    bad = asyncio.ensure_future(writer.submit(half_then_fail))
    await wait_queued(writer, 12)
    doomed.cancel()
    gate.release.set()
    await blocked
    assert await asyncio.gather(*jobs) == [f"k{i}" for i in range(10)]
    with pytest.raises(KeyError):
        await bad
    assert doomed.cancelled()  # its write still happened; its caller is simply gone
    assert len(wakes) == 2  # the gate's group, then all twelve at once
    assert rows(db) == {**{f"k{i}": i for i in range(10)}, "cancelled": 0}


async def test_a_closed_loop_in_a_group_does_not_stop_the_others_answers(
    writer: WriterThread, db: Path
) -> None:
    gate = Gate()
    blocked = asyncio.ensure_future(writer.submit(gate))
    await gate.wait_entered()
    before = asyncio.ensure_future(writer.submit(insert("before")))
    await abandon_a_job(writer, insert("orphan"))
    after = asyncio.ensure_future(writer.submit(insert("after")))
    await wait_queued(writer, 3)
    gate.release.set()
    await blocked
    assert await before == "before"
    assert await after == "after"
    assert rows(db) == {"before": 0, "orphan": 0, "after": 0}


async def test_a_one_statement_job_failing_after_its_write_in_a_group_is_undone(db: Path) -> None:
    # It broke its promise (it raised after its statement changed a row): without a
    # savepoint only undoing the transaction takes that row back; the others run again.
    heard = Heard()
    w = WriterThread(str(db), PRAGMAS, listener=heard)
    w.start()
    try:
        gate = Gate()
        blocked = asyncio.ensure_future(w.submit(gate))
        await gate.wait_entered()
        before = asyncio.ensure_future(w.submit(insert("a"), one_statement=True))
        bad = asyncio.ensure_future(w.submit(half_then_fail, one_statement=True))
        after = asyncio.ensure_future(w.submit(insert("b")))
        await wait_queued(w, 3)
        gate.release.set()
        await blocked
        assert await before == "a"
        with pytest.raises(KeyError, match="own bug"):
            await bad
        assert await after == "b"
        assert rows(db) == {"a": 0, "b": 0}  # no "half"
        assert w.commits == 2  # the gate's, then the two run again
        assert heard.events == ["committed", "rolled back", "committed"]
    finally:
        w.close()
