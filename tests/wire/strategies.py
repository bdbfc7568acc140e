"""Hypothesis strategies for every Kademlia message type, with arbitrary contents."""

from __future__ import annotations

from hypothesis import strategies as st

from lumera_p2p.wire import (
    BatchFindNodeRequest,
    BatchFindNodeResponse,
    BatchFindValuesRequest,
    BatchFindValuesResponse,
    BatchGetValuesRequest,
    BatchGetValuesResponse,
    BatchStoreDataRequest,
    FindNodeRequest,
    FindNodeResponse,
    FindValueRequest,
    FindValueResponse,
    KeyValWithClosest,
    Message,
    MessageData,
    Node,
    ReplicateDataRequest,
    ReplicateDataResponse,
    ResponseStatus,
    StoreDataRequest,
    StoreDataResponse,
)

INT64 = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
# Go strings are bytes: include text and byte strings that are not UTF-8.
GO_STRINGS = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=40).map(lambda b: b.decode("utf-8", "surrogateescape")),
)
BLOBS = st.binary(max_size=300)  # > 127 exercises multi-byte lengths

NODES = st.builds(
    Node,
    id=st.binary(max_size=60),
    ip=GO_STRINGS,
    port=st.integers(0, 65535),
    version=GO_STRINGS,
    hashed_id=st.binary(max_size=40),
)
NODE_LISTS = st.lists(NODES, max_size=4)
STATUS = st.builds(ResponseStatus, result=INT64, err_msg=GO_STRINGS)
KV = st.builds(KeyValWithClosest, value=BLOBS, closest=NODE_LISTS)


def maps_of(values: st.SearchStrategy[object]) -> st.SearchStrategy[dict[str, object] | None]:
    """A nil map, an empty map, or a small one: gob tells nil and empty maps apart."""
    return st.one_of(st.none(), st.dictionaries(GO_STRINGS, values, max_size=4))


DATA_BY_TYPE: dict[type, st.SearchStrategy[MessageData]] = {
    ResponseStatus: STATUS,
    FindNodeRequest: st.builds(FindNodeRequest, target=BLOBS),
    FindNodeResponse: st.builds(FindNodeResponse, status=STATUS, closest=NODE_LISTS),
    FindValueRequest: st.builds(FindValueRequest, target=BLOBS),
    FindValueResponse: st.builds(FindValueResponse, status=STATUS, closest=NODE_LISTS, value=BLOBS),
    StoreDataRequest: st.builds(StoreDataRequest, data=BLOBS, type=INT64),
    StoreDataResponse: st.builds(StoreDataResponse, status=STATUS),
    ReplicateDataRequest: st.builds(ReplicateDataRequest, keys=st.lists(GO_STRINGS, max_size=5)),
    ReplicateDataResponse: st.builds(ReplicateDataResponse, status=STATUS),
    BatchFindValuesRequest: st.builds(
        BatchFindValuesRequest, keys=st.lists(GO_STRINGS, max_size=5)
    ),
    BatchFindValuesResponse: st.builds(
        BatchFindValuesResponse, status=STATUS, response=BLOBS, done=st.booleans()
    ),
    BatchStoreDataRequest: st.builds(
        BatchStoreDataRequest, data=st.lists(BLOBS, max_size=4), type=INT64
    ),
    BatchFindNodeRequest: st.builds(
        BatchFindNodeRequest, hashed_target=st.lists(BLOBS, max_size=4)
    ),
    BatchFindNodeResponse: st.builds(
        BatchFindNodeResponse, status=STATUS, closest_nodes=maps_of(NODE_LISTS)
    ),
    BatchGetValuesRequest: st.builds(BatchGetValuesRequest, data=maps_of(KV)),
    BatchGetValuesResponse: st.builds(BatchGetValuesResponse, data=maps_of(KV), status=STATUS),
}
"""Arbitrary values of each of the 16 registered Data types."""

DATA: st.SearchStrategy[MessageData] = st.one_of(*DATA_BY_TYPE.values())


def messages_with(data: st.SearchStrategy[MessageData | None]) -> st.SearchStrategy[Message]:
    """Arbitrary messages whose Data is drawn from ``data``."""
    return st.builds(
        Message,
        sender=st.one_of(st.none(), NODES),
        receiver=st.one_of(st.none(), NODES),
        message_type=INT64,
        data=data,
        correlation_id=GO_STRINGS,
        origin=GO_STRINGS,
    )


MESSAGES = messages_with(st.one_of(st.none(), DATA))
