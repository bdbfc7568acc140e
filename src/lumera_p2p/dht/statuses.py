"""Response statuses both sides of an RPC agree on, in Go's exact wording."""

from __future__ import annotations

from lumera_p2p.wire.messages import ResponseStatus, ResultType

#: What a node that is not store-eligible answers to StoreData and BatchStoreData (Go's text;
#: the sender recognises it and stops sending to that node).
NOT_STORE_ELIGIBLE = "store rejected: self not store-eligible"
BATCH_NOT_STORE_ELIGIBLE = "batch store rejected: self not store-eligible"
# A full node (store.max_storage_bytes) answers as a not-store-eligible one: Go's clients then
# leave it out of their success rate and stop sending to it until their allowlist refresh.
NODE_FULL = f"{NOT_STORE_ELIGIBLE} (node is full)"
BATCH_NODE_FULL = f"{BATCH_NOT_STORE_ELIGIBLE} (node is full)"


def ok() -> ResponseStatus:
    """An ``OK`` status (a fresh object: messages are mutable)."""
    return ResponseStatus(result=int(ResultType.OK), err_msg="")


def failed(message: str) -> ResponseStatus:
    """A ``Failed`` status with ``message``."""
    return ResponseStatus(result=int(ResultType.FAILED), err_msg=message)


def is_ok(status: ResponseStatus | None) -> bool:
    """True for a present ``OK`` status."""
    return status is not None and status.result == int(ResultType.OK)


def refuses_store(status: ResponseStatus | None) -> bool:
    """True if the answer says the peer is not store-eligible (either wording)."""
    text = "" if status is None else status.err_msg or ""
    return NOT_STORE_ELIGIBLE in text or BATCH_NOT_STORE_ELIGIBLE in text
