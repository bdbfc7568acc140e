"""Gob codec throughput: Kademlia frames encoded and decoded, beside pickle of the same values.

Five payloads, from small to bulk: a Ping, a FindNode answer with 20 nodes, a BatchFindNode
answer (one target, 20 nodes), a StoreData request of 1 KiB and a BatchStoreData request of
100 values of 64 KiB (is ``[]byte`` copied no more than needed?). Each is encoded and decoded
by the generated codec (the default, ``fast``) and by the general one (``general``, what every
frame used before), and decoding shares one :class:`GobDecodeCache` as the transport does. The
reference is ``pickle`` of the same dataclass ``Message`` in the same run, so ratios (ours ÷
pickle throughput) compare like with like on this machine.

    python bench/gob.py            # a table
    python bench/gob.py --json     # one JSON object; comparison fields end in _ratio

Fields per case: ``{case}_{op}_msgs_per_s`` and ``_mb_per_s`` for op in encode,
encode_general, pickle_encode, decode, decode_general, pickle_decode; ``{case}_encode_ratio``
and ``{case}_decode_ratio`` (generated codec ÷ pickle), ``{case}_encode_general_ratio`` and
``{case}_decode_general_ratio`` (general codec ÷ pickle), and ``{case}_encode_vs_general_ratio``
and ``{case}_decode_vs_general_ratio`` (generated ÷ general). Runs for about 20 s and stops by
itself.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
from collections.abc import Callable
from functools import partial

from lumera_p2p.wire import (
    BatchFindNodeResponse,
    BatchStoreDataRequest,
    FindNodeResponse,
    GobDecodeCache,
    Message,
    MessageType,
    Node,
    ResponseStatus,
    StoreDataRequest,
    decode_message,
    encode_message,
)

BUDGET_S = 0.5  # per function measured; 30 functions: about 20 s in all
OPS = ("encode", "encode_general", "pickle_encode", "decode", "decode_general", "pickle_decode")


def _node(i: int) -> Node:
    return Node(
        id=b"lumera1" + bytes([97 + i % 26]) * 38,
        ip=f"203.0.113.{i}",
        port=4445,
        version="v2.4.0",
        hashed_id=os.urandom(32),
    )


def _payloads() -> dict[str, Message]:
    sender, receiver = _node(1), _node(2)
    nodes = [_node(i) for i in range(20)]
    return {
        "ping": Message(sender, receiver, MessageType.PING),
        "find_node_response_20": Message(
            sender, receiver, MessageType.FIND_NODE, FindNodeResponse(ResponseStatus(), nodes)
        ),
        "batch_find_node_response_20": Message(
            sender,
            receiver,
            MessageType.BATCH_FIND_NODE,
            BatchFindNodeResponse(
                ResponseStatus(), {"6Zcy9Xg2c4Zmm3Kbs6JW8ZpVxJZ3Y8rK8uVnEjXnMoZ1": nodes}
            ),
        ),
        "store_data_1k": Message(
            sender, receiver, MessageType.STORE_DATA, StoreDataRequest(os.urandom(1024))
        ),
        "batch_store_100x64k": Message(
            sender,
            receiver,
            MessageType.BATCH_STORE_DATA,
            BatchStoreDataRequest([os.urandom(64 * 1024) for _ in range(100)], 1),
        ),
    }


def _batch_size(fn: Callable[[], object]) -> int:
    """Calls per timed batch: about a twentieth of the budget."""
    batch = 1
    while batch < 1 << 20:
        started = time.perf_counter()
        for _ in range(batch):
            fn()
        if time.perf_counter() - started >= BUDGET_S / 20:
            break
        batch *= 2
    return batch


def _per_call(fns: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Seconds per call of each function: the best batch, with the functions interleaved.

    Interleaving gives ours and the reference the same allocator and cache conditions (and the
    same share of a busy machine), which move the figures by several times from one moment to
    the next.
    """
    batches = {name: _batch_size(fn) for name, fn in fns.items()}
    best = dict.fromkeys(fns, float("inf"))
    deadline = time.perf_counter() + BUDGET_S * len(fns)
    while time.perf_counter() < deadline:
        for name, fn in fns.items():
            started = time.perf_counter()
            for _ in range(batches[name]):
                fn()
            best[name] = min(best[name], (time.perf_counter() - started) / batches[name])
    return best


def run() -> dict[str, float | int | str]:
    """Measure every case; returns flat figures."""
    out: dict[str, float | int | str] = {"python": sys.version.split()[0]}
    cache = GobDecodeCache()
    for name, msg in _payloads().items():
        frame = encode_message(msg)
        pickled = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
        assert frame == encode_message(msg, fast=False)
        assert decode_message(frame, cache=cache) == msg == pickle.loads(pickled)
        assert decode_message(frame, cache=cache, fast=False) == msg
        size = len(frame)
        timings = _per_call(
            {
                "encode": partial(encode_message, msg),
                "encode_general": partial(encode_message, msg, fast=False),
                "pickle_encode": partial(pickle.dumps, msg, protocol=pickle.HIGHEST_PROTOCOL),
                "decode": partial(decode_message, frame, cache=cache),
                "decode_general": partial(decode_message, frame, cache=cache, fast=False),
                "pickle_decode": partial(pickle.loads, pickled),
            }
        )
        out[f"{name}_frame_bytes"] = size
        out[f"{name}_pickle_bytes"] = len(pickled)
        for op, seconds in timings.items():
            out[f"{name}_{op}_msgs_per_s"] = round(1 / seconds, 1)
            out[f"{name}_{op}_mb_per_s"] = round(size / seconds / 1e6, 1)
        for op in ("encode", "decode"):
            ref = timings[f"pickle_{op}"]
            out[f"{name}_{op}_ratio"] = round(ref / timings[op], 3)
            out[f"{name}_{op}_general_ratio"] = round(ref / timings[f"{op}_general"], 3)
            out[f"{name}_{op}_vs_general_ratio"] = round(timings[f"{op}_general"] / timings[op], 3)
    return out


def _table(res: dict[str, float | int | str]) -> str:
    lines = [
        f"{'case':42} {'msg/s':>10} {'MB/s':>8} {'pickle msg/s':>13} {'ratio':>7} {'÷general':>9}"
    ]
    for name in _payloads():
        for op in ("encode", "encode_general", "decode", "decode_general"):
            kind = op.split("_")[0]
            ratio = res[f"{name}_{op}_ratio"] if op == kind else res[f"{name}_{kind}_general_ratio"]
            speedup = f"{res[f'{name}_{kind}_vs_general_ratio']:>9}" if op == kind else ""
            lines.append(
                f"{name + ' ' + op:42} {res[f'{name}_{op}_msgs_per_s']:>10} "
                f"{res[f'{name}_{op}_mb_per_s']:>8} {res[f'{name}_pickle_{kind}_msgs_per_s']:>13} "
                f"{ratio:>7} {speedup}"
            )
    lines.append(
        "encode/decode: the generated codec; *_general: the general one. MB/s counts the gob "
        "frame; ratio = our throughput ÷ pickle's; ÷general = generated ÷ general."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    res = run()
    print(json.dumps(res, sort_keys=True) if args.json else _table(res))


if __name__ == "__main__":
    main()
