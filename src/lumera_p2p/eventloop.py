"""The event loop a node runs on: uvloop when it is installed (the ``uvloop`` extra), else
asyncio's own.

uvloop runs the same code (the node never asks what kind of transport it was given) and
measured 16-19 % more puts and gets per second on the small-values workload.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

T = TypeVar("T")

LoopName = Literal["auto", "uvloop", "asyncio"]


def uvloop_available() -> bool:
    """Whether uvloop can be imported (without importing it)."""
    return importlib.util.find_spec("uvloop") is not None


def loop_factory(name: LoopName = "auto") -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of the loop ``name`` asks for (None: asyncio's default).

    ``auto`` is uvloop when installed; ``uvloop`` raises ``ImportError`` when it is not.
    """
    if name == "asyncio" or (name == "auto" and not uvloop_available()):
        return None
    import uvloop  # noqa: PLC0415 (optional: the extra)

    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run_event_loop(main: Coroutine[Any, Any, T], loop: LoopName = "auto") -> T:
    """``asyncio.run(main)`` on the loop ``loop`` names (uvloop when installed by default)."""
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        return runner.run(main)


def freeze_long_lived() -> None:
    """Move every object alive now out of the garbage collector's reach (``gc.freeze``).

    Called by the process entry points once their nodes have started: the modules, the
    configuration, keys and tables built at start live as long as the process, and without
    this every full collection walks them again (a 64-node process spent about a seventh of
    its CPU per store doing so). Not for a library caller: its own objects would be frozen.

    Start-up garbage (compiling modules, parsing the configuration, the first join) is
    collected first, so it is not frozen for good, and the heap pages it leaves free go back
    to the kernel (``malloc_trim``): about 1 MiB of RSS per node process.
    """
    from lumera_p2p.net.trim import trim_heap  # noqa: PLC0415 (ctypes, once)

    gc.collect()
    gc.freeze()
    trim_heap()
