"""Gob codec throughput: Kademlia frames encoded and decoded, beside pickle of the same values.

Two payloads: a BatchStoreData request carrying 100 values of 64 KiB (bulk path: is ``[]byte``
copied no more than needed?) and a FindNode response with 20 nodes (small-message path: is the
per-field and per-frame overhead small?). The reference is ``pickle`` of the same dataclass
``Message`` in the same run, so ratios (ours / pickle throughput) compare like with like on this
machine. Decoding is measured with and without a shared :class:`GobDecodeCache`.

    python bench/gob.py            # a table
    python bench/gob.py --json     # one JSON object; comparison fields end in _ratio

Runs for about 15 s and stops by itself.
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
    BatchStoreDataRequest,
    FindNodeResponse,
    GobDecodeCache,
    Message,
    MessageType,
    Node,
    ResponseStatus,
    decode_message,
    encode_message,
)

BUDGET_S = 0.8  # per function measured; 10 functions: about 15 s in all


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
    values = [os.urandom(64 * 1024) for _ in range(100)]
    return {
        "batch_store_100x64k": Message(
            sender, receiver, MessageType.BATCH_STORE_DATA, BatchStoreDataRequest(values, 1)
        ),
        "find_node_response_20": Message(
            sender,
            receiver,
            MessageType.FIND_NODE,
            FindNodeResponse(ResponseStatus(), [_node(i) for i in range(20)]),
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

    Interleaving gives ours and the reference the same allocator and cache conditions, which
    for 64 KiB values move the figures by an order of magnitude from one moment to the next.
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
        assert decode_message(frame) == msg == pickle.loads(pickled)
        size = len(frame)
        timings = _per_call(
            {
                "encode": partial(encode_message, msg),
                "pickle_encode": partial(pickle.dumps, msg, protocol=pickle.HIGHEST_PROTOCOL),
                "decode": partial(decode_message, frame),
                "decode_cached": partial(decode_message, frame, cache=cache),
                "pickle_decode": partial(pickle.loads, pickled),
            }
        )
        out[f"{name}_frame_bytes"] = size
        out[f"{name}_pickle_bytes"] = len(pickled)
        for op, seconds in timings.items():
            out[f"{name}_{op}_msgs_per_s"] = round(1 / seconds, 1)
            out[f"{name}_{op}_mb_per_s"] = round(size / seconds / 1e6, 1)
        out[f"{name}_encode_ratio"] = round(timings["pickle_encode"] / timings["encode"], 3)
        out[f"{name}_decode_ratio"] = round(timings["pickle_decode"] / timings["decode"], 3)
        out[f"{name}_decode_cached_ratio"] = round(
            timings["pickle_decode"] / timings["decode_cached"], 3
        )
    return out


def _table(res: dict[str, float | int | str]) -> str:
    lines = [
        f"{'case':32} {'ours msg/s':>12} {'MB/s':>9} {'pickle msg/s':>13} {'MB/s':>9} {'ratio':>7}"
    ]
    for name in _payloads():
        for op, ref in (
            ("encode", "pickle_encode"),
            ("decode", "pickle_decode"),
            ("decode_cached", "pickle_decode"),
        ):
            lines.append(
                f"{name + ' ' + op:32} {res[f'{name}_{op}_msgs_per_s']:>12} "
                f"{res[f'{name}_{op}_mb_per_s']:>9} {res[f'{name}_{ref}_msgs_per_s']:>13} "
                f"{res[f'{name}_{ref}_mb_per_s']:>9} {res[f'{name}_{op}_ratio']:>7}"
            )
    lines.append("MB/s counts the gob frame size; ratio = our throughput / pickle's.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    res = run()
    print(json.dumps(res, sort_keys=True) if args.json else _table(res))


if __name__ == "__main__":
    main()
