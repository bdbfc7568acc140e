"""Child process of the crash test: store batches (or, in ``single`` mode, single values by
both single-value paths) forever, printing each acknowledged key."""

from __future__ import annotations

import asyncio
import random
import sys

import blake3

from lumera_p2p.store import LocalStore
from lumera_p2p.store.schema import SYNCHRONOUS_MODES


async def main(data_dir: str, seed: int, synchronous: str, mode: str) -> None:
    mode = next(m for m in SYNCHRONOUS_MODES if m == synchronous)
    rng = random.Random(seed)
    store = await LocalStore.open(data_dir, checkpoint_interval=0.2, synchronous=mode)
    print("ready", flush=True)
    n = 0

    async def one_batch() -> None:
        nonlocal n
        size = rng.randint(1, 40)
        values = [
            n.to_bytes(8, "big") + i.to_bytes(4, "big") + rng.randbytes(rng.randint(0, 20000))
            for i in range(size)
        ]
        n += 1
        if mode == "single":  # one value a call: each commit is its one statement
            value = values[0]
            if rng.random() < 0.5:
                keys = [await store.store_value(value)]
            else:
                assert await store.store_if_absent(value)
                keys = [blake3.blake3(value).digest()]
        else:
            keys = await store.store_batch(values)
        sys.stdout.write("".join(f"{k.hex()}\n" for k in keys))
        sys.stdout.flush()

    while True:  # killed from outside
        await asyncio.gather(*(one_batch() for _ in range(rng.randint(1, 4))))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]))
