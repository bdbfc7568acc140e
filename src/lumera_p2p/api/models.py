"""Request and response bodies of the API; the OpenAPI schema is generated from these.

Constraints live in the types (patterns, bounds), so that every request the schema calls
valid is one the node can act on, and everything else is refused before a handler runs.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from lumera_p2p.api.recent_errors import LoggedError

#: A base58 content key: the alphabet, and the lengths a 32-byte digest can have.
KEY_PATTERN = r"^[1-9A-HJ-NP-Za-km-z]{32,44}$"
#: Canonical, padded standard base64 (exactly what ``base64.b64decode(validate=True)`` takes).
BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
#: A ``/keys`` cursor: a stored ``createdAt`` and a key, joined by ``~`` (the ``next`` of the
#: previous page). Any text of this shape is a position, so none is refused.
CURSOR_PATTERN = r"^[0-9: .+TZ-]{10,40}~[1-9A-HJ-NP-Za-km-z]{1,64}$"


def _json_integer(value: object) -> object:
    """JSON Schema's ``integer``: ``3`` and ``3.0`` are integers, ``"3"`` and ``true`` not."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: The validator of an integer in a JSON body (strict models take no strings or booleans).
#: It goes after the bounds in ``Annotated``, or the schema loses them.
JSON_INT = BeforeValidator(_json_integer)
ContentKey = Annotated[
    str, Field(pattern=KEY_PATTERN, examples=["4tKzVSmG2hdjJNTwqhFUCcRLhvE5F1fLpo8FmJmZoBdG"])
]
#: A value in JSON: base64 of at least one byte.
Base64Value = Annotated[str, Field(pattern=BASE64_PATTERN, min_length=4, max_length=1 << 30)]
Datatype = Annotated[int, Field(ge=0, le=2**31 - 1), JSON_INT]


class _Body(BaseModel):
    # Strict: ``"local_only": 0`` or ``"datatype": "1"`` is not what the schema says.
    model_config = ConfigDict(extra="forbid", strict=True)


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer: one line saying what was wrong."""

    error: str


class StoreResult(BaseModel):
    """A value stored: committed here, then sent to the nearest nodes."""

    key: str
    size: int
    #: ``value`` today; a file stored in chunks under a manifest will say ``file``.
    kind: Literal["value", "file"] = "value"
    #: Remote nodes that acknowledged the value (null when not known).
    replicas: int | None = None


class DeleteResult(BaseModel):
    """Whether the local copy was there (other nodes keep theirs)."""

    key: str
    deleted: bool


class KeyState(BaseModel):
    """A key's retrieval state on this node after disable/enable."""

    key: str
    disabled: bool


class BatchStoreRequest(_Body):
    """Values to store in one batch (base64), with their datatype and a task ID for the logs."""

    values: Annotated[list[Base64Value], Field(min_length=1, max_length=100_000)]
    datatype: Datatype = 0
    task_id: Annotated[str, Field(max_length=200)] = ""


class BatchStoreResult(BaseModel):
    """What a batch store achieved: each key, and the node requests it took."""

    keys: list[str]
    requests: int
    succeeded: int
    refused_not_eligible: int
    success_rate: float


class BatchRetrieveRequest(_Body):
    """Keys to fetch; stop once ``required`` are found (default: all)."""

    keys: Annotated[list[ContentKey], Field(min_length=1)]
    required: Annotated[int, Field(ge=0), JSON_INT] | None = None
    local_only: bool = False
    tx_id: Annotated[str, Field(max_length=200)] = ""


class BatchRetrieveResult(BaseModel):
    """Values found (base64 by key) and the keys that were not."""

    values: dict[str, str]
    found: int
    missing: list[str]


class LocalKey(BaseModel):
    """One value stored here."""

    key: str
    size: int
    created_at: str


class KeyPage(BaseModel):
    """A page of local keys, oldest first; pass ``next`` as ``cursor`` for the next page."""

    keys: list[LocalKey]
    next: str | None


class PeerInfo(BaseModel):
    """A routing-table contact."""

    address: str
    ip: str
    port: int
    version: str
    banned: bool


class BanInfo(BaseModel):
    """A peer with failures on record (banned once ``count`` passes the threshold)."""

    address: str
    count: int
    banned: bool
    age_seconds: float


class PeersResult(BaseModel):
    """The routing table and the ban list."""

    count: int
    peers: list[PeerInfo]
    bans: list[BanInfo]


class StorageInfo(BaseModel):
    """What this node stores, and the room it has."""

    records: int
    value_bytes: int
    db_file_bytes: int
    #: 0: no limit (``store.max_storage_bytes``).
    max_storage_bytes: int
    disabled_keys: int
    disk_total_bytes: int | None
    disk_free_bytes: int | None


class RepairInfo(BaseModel):
    """Work waiting to restore replicas: keys peers announced that this node still fetches."""

    pending_keys: int
    dropped_keys: int


class RecentError(BaseModel):
    """A WARNING or worse log record of this node."""

    time: float
    level: str
    logger: str
    message: str

    @classmethod
    def of(cls, error: LoggedError) -> RecentError:
        """From the ring buffer's record."""
        return cls(time=error.time, level=error.level, logger=error.logger, message=error.message)


class StatusResult(BaseModel):
    """The node at a glance (the status page and ``lumera-p2p status``)."""

    address: str
    version: str
    p2p_listen: str
    api_listen: str
    running: bool
    ready: bool
    uptime_seconds: float
    peers: int
    banned: int
    registry_supernodes: int
    storage: StorageInfo
    repair: RepairInfo
    recent_errors: list[RecentError]


class Health(BaseModel):
    """Liveness or readiness, with the reason when not."""

    status: Literal["ok", "unavailable"]
    reason: str = ""
