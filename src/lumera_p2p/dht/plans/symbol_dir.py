"""One symbol directory's ingestion as a plan: which files next, where batches end, what is done.

The Go worker (``p2p/kademlia/rq_symbols.go``) lists a directory, sorts the names, and for
each run of 1,000 loads the files, ``StoreBatch``es them as datatype 1 and deletes them; once
every batch went through it marks the directory complete and removes it if its base name is
its txid. :class:`SymbolDirPlan` makes the same decisions without touching a file, a database
or the network: the worker (:mod:`lumera_p2p.symbols.worker`) asks it for the next
:data:`Action`, performs it, and reports back. It differs from Go where Go is weak:

* a restart resumes: names the network acknowledged before a crash (the journal, ``acked``)
  are deleted without being stored again (Go stores again whatever was not yet deleted);
* every file is checked against its name before it is stored: RaptorQ names each symbol file by
  its content key, base58(BLAKE3-256), and Go stores whatever bytes it finds, so a damaged file
  would go out under another key and the real symbol be deleted unstored. A file that does
  not hash to its name, is not a regular file, is too large or cannot be read is *refused*:
  reported, not stored, not deleted, and the others go ahead (in Go one unreadable file fails
  its batch, and so the whole directory, on every tick for ever);
* a batch ends at ``batch_size`` files or ``max_batch_bytes`` bytes, whichever comes first, so
  memory is bounded by one batch even when files are large;
* a directory still holding refused files is marked complete but not removed, so they can be
  inspected.
"""

from __future__ import annotations

import posixpath
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

#: Go's ``loadSymbolsBatchSize``: files per ``StoreBatch``.
DEFAULT_BATCH_SIZE = 1000
#: Value bytes one batch may hold (1,000 of RaptorQ's 64 KiB symbols is 64 MiB).
DEFAULT_MAX_BATCH_BYTES = 128 * 1024 * 1024
#: Go's ``defaultSoreSymbolsInterval`` (sic): seconds between the worker's rounds.
DEFAULT_INTERVAL = 30.0


@dataclass(frozen=True)
class SymbolFile:
    """A file of a symbol directory: its path below the directory (``block_0/<key>``, always
    with ``/``) and its size when listed."""

    name: str
    size: int


@dataclass(frozen=True)
class Forget:
    """Delete these files without storing them: the network acknowledged them before a
    restart (they are in the journal). Then drop the deleted ones from the journal and call
    :meth:`SymbolDirPlan.forgotten`."""

    names: tuple[str, ...]


@dataclass(frozen=True)
class Load:
    """Read these files and check each against its name; call :meth:`SymbolDirPlan.loaded`."""

    names: tuple[str, ...]


@dataclass(frozen=True)
class Store:
    """Store the values of these checked files as one batch (datatype 1, the txid as task);
    call :meth:`SymbolDirPlan.stored` or :meth:`SymbolDirPlan.store_failed`."""

    names: tuple[str, ...]


@dataclass(frozen=True)
class Delete:
    """Journal these names as acknowledged (durably), delete their files, drop the deleted
    ones from the journal; call :meth:`SymbolDirPlan.deleted`."""

    names: tuple[str, ...]


@dataclass(frozen=True)
class Complete:
    """Mark the directory complete; remove it (the whole tree) if ``remove``, else say why not
    (``kept``). The plan is then done."""

    remove: bool
    kept: str = ""


@dataclass(frozen=True)
class Pause:
    """Stop here; the worker's next round resumes from what is left. The plan is then done."""

    error: str


Action = Forget | Load | Store | Delete | Complete | Pause


@dataclass
class DirOutcome:
    """What one pass over a directory did."""

    #: Files stored and deleted in this pass.
    stored: int = 0
    #: Journaled files (acknowledged before a restart) deleted without storing again.
    forgotten: int = 0
    #: Files refused in this pass (see the module docstring).
    refused: int = 0
    #: Files listed that were gone when read.
    missing: int = 0
    #: Acknowledged files that could not be deleted (they stay in the journal).
    undeletable: int = 0
    completed: bool = False
    removed: bool = False
    #: Why the pass stopped short, if it did.
    error: str | None = None


def removable(directory: str, txid: str) -> bool:
    """Go's guard before ``os.RemoveAll``: only a directory whose base name is its txid (and
    never ``.``, ``..`` or the root) is removed."""
    if not txid or not directory:
        return False
    clean = posixpath.normpath(directory)
    if clean in (".", "..", "/", "//"):
        return False
    return posixpath.basename(clean) == txid


class SymbolDirPlan:
    """The ingestion of one directory (see the module docstring).

    ``files`` is the directory's listing; ``acked`` the journaled names, ``refused`` the
    names refused earlier (they are skipped, and not read again). Drive it with::

        while (action := plan.next_action()) is not None:
            ...perform it, then report what happened...
    """

    def __init__(
        self,
        txid: str,
        directory: str,
        files: Iterable[SymbolFile],
        *,
        acked: Iterable[str] = (),
        refused: Iterable[str] = (),
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    ) -> None:
        if batch_size < 1 or max_batch_bytes < 1:
            raise ValueError("batch_size and max_batch_bytes must be at least 1")
        self.txid = txid
        self.directory = directory
        self._batch_size = batch_size
        self._max_batch_bytes = max_batch_bytes
        listing = {f.name: f for f in files}
        journal = set(acked)
        earlier_refusals = set(refused)
        self._forget = tuple(sorted(journal))
        self._queue = deque(
            listing[name]
            for name in sorted(listing)
            if name not in journal and name not in earlier_refusals
        )
        #: Refused files still in the directory: while there are any it is not removed.
        self._refused_here = len(earlier_refusals & listing.keys())
        self._next: Action | None = Forget(self._forget) if self._forget else None
        self._awaiting: type[Action] | None = None
        self._batch: tuple[str, ...] = ()
        self._done = False
        self.outcome = DirOutcome()

    @property
    def done(self) -> bool:
        """Whether the plan has nothing more to do."""
        return self._done

    @property
    def remaining(self) -> int:
        """Files not yet taken into a batch."""
        return len(self._queue)

    def next_action(self) -> Action | None:
        """What to do next (None once done). The previous action must have been reported."""
        if self._awaiting is not None:
            raise RuntimeError(f"{self._awaiting.__name__} has not been reported yet")
        if self._done:
            return None
        action = self._next if self._next is not None else self._after_batch()
        self._next = None
        if isinstance(action, (Complete, Pause)):
            self._done = True
        else:
            self._awaiting = type(action)
        return action

    def _after_batch(self) -> Action:
        batch = self._take()
        if batch:
            self._batch = batch
            return Load(batch)
        return self._complete()

    def _take(self) -> tuple[str, ...]:
        names: list[str] = []
        size = 0
        while self._queue and len(names) < self._batch_size:
            head = self._queue[0]
            if names and size + head.size > self._max_batch_bytes:
                break
            names.append(head.name)
            size += head.size
            self._queue.popleft()
        return tuple(names)

    def _complete(self) -> Complete:
        self.outcome.completed = True
        if self._refused_here:
            n = self._refused_here
            return Complete(False, f"{n} refused file{'s' if n != 1 else ''} left in it")
        if not removable(self.directory, self.txid):
            return Complete(False, "its base name is not the txid")
        self.outcome.removed = True
        return Complete(True)

    def _expect(self, kind: type[Action]) -> None:
        if self._awaiting is not kind:
            wanted = self._awaiting.__name__ if self._awaiting else "nothing"
            raise RuntimeError(f"a {kind.__name__} result was reported, but {wanted} is awaited")
        self._awaiting = None

    # --- reports ----------------------------------------------------------------------------

    def forgotten(self, undeletable: Iterable[str] = ()) -> None:
        """The journaled files were deleted, except ``undeletable``."""
        self._expect(Forget)
        left = set(undeletable)
        self.outcome.forgotten += len(self._forget) - len(left)
        self.outcome.undeletable += len(left)

    def loaded(
        self,
        verified: Sequence[str],
        refused: Mapping[str, str] | Iterable[str] = (),
        missing: Iterable[str] = (),
    ) -> None:
        """Of the batch, ``verified`` files hash to their names, ``refused`` did not (or could
        not be read), ``missing`` were gone."""
        self._expect(Load)
        refused_names = list(refused)
        missing_names = list(missing)
        unknown = set(verified).union(refused_names, missing_names) - set(self._batch)
        if unknown:
            raise ValueError(f"names outside the batch were reported: {sorted(unknown)[:3]}")
        self.outcome.refused += len(refused_names)
        self.outcome.missing += len(missing_names)
        self._refused_here += len(refused_names)
        self._batch = tuple(verified)
        if self._batch:
            self._next = Store(self._batch)

    def stored(self) -> None:
        """The network acknowledged the batch."""
        self._expect(Store)
        self._next = Delete(self._batch)

    def store_failed(self, error: str) -> None:
        """The batch was not acknowledged; its files stay for the next round."""
        self._expect(Store)
        self.outcome.error = error
        self._next = Pause(error)

    def deleted(self, undeletable: Iterable[str] = ()) -> None:
        """The batch's files were deleted, except ``undeletable`` (still journaled)."""
        self._expect(Delete)
        left = set(undeletable)
        self.outcome.stored += len(self._batch)
        self.outcome.undeletable += len(left)
        self._batch = ()
