"""The DHT's operations as sans-I/O plans (see :mod:`.base` for the interface).

Each plan is a plain object built from its inputs, asked what to send (``poll(now)``) and when
it next needs the clock (``next_deadline()``), fed answers and failures with ``now``, and read
for its events and result. Nothing here imports asyncio, sockets, a clock or a database: the
driver (:mod:`lumera_p2p.dht.driver`) and the node do that, before and after a plan runs.
"""

from lumera_p2p.dht.plans.announce import (
    REPLICATE_BATCH_KEYS,
    Announcement,
    AnnounceOutcome,
    AnnouncePlan,
)
from lumera_p2p.dht.plans.backoff import FETCH_BACKOFF, REPLICATE_BACKOFF, Backoff
from lumera_p2p.dht.plans.base import Plan, Request, Routes
from lumera_p2p.dht.plans.batch_retrieve import (
    BatchRetrieveOutcome,
    BatchRetrievePlan,
    fnv1a64,
    provider_index,
)
from lumera_p2p.dht.plans.batch_store import BatchStorePlan, BatchStoreReport, chunks_by_size
from lumera_p2p.dht.plans.events import (
    Answered,
    Cleared,
    Event,
    LookupStarted,
    Poisoned,
    ProbeAnswered,
    ProbeFailed,
    RefusedStore,
    Struck,
    Unanswered,
    ValueArrived,
)
from lumera_p2p.dht.plans.fetch import FETCH_BATCH_KEYS, FetchOutcome, FetchPlan
from lumera_p2p.dht.plans.lookup import LookupKind, LookupOutcome, LookupParams, LookupPlan
from lumera_p2p.dht.plans.maintenance import HealthCheckPlan, PingOutcome, PingPlan, ProbePlan
from lumera_p2p.dht.plans.parallel import AllOf
from lumera_p2p.dht.plans.store import StoreOutcome, StorePlan

__all__ = [
    "FETCH_BACKOFF",
    "FETCH_BATCH_KEYS",
    "REPLICATE_BACKOFF",
    "REPLICATE_BATCH_KEYS",
    "AllOf",
    "AnnounceOutcome",
    "AnnouncePlan",
    "Announcement",
    "Answered",
    "Backoff",
    "BatchRetrieveOutcome",
    "BatchRetrievePlan",
    "BatchStorePlan",
    "BatchStoreReport",
    "Cleared",
    "Event",
    "FetchOutcome",
    "FetchPlan",
    "HealthCheckPlan",
    "LookupKind",
    "LookupOutcome",
    "LookupParams",
    "LookupPlan",
    "LookupStarted",
    "PingOutcome",
    "PingPlan",
    "Plan",
    "Poisoned",
    "ProbeAnswered",
    "ProbeFailed",
    "ProbePlan",
    "RefusedStore",
    "Request",
    "Routes",
    "StoreOutcome",
    "StorePlan",
    "Struck",
    "Unanswered",
    "ValueArrived",
    "chunks_by_size",
    "fnv1a64",
    "provider_index",
]
