"""A local network with one process per node: the parent side of ``localnet --processes``.

Each node is a :mod:`lumera_p2p.localnet_child` process. They are started a few at a time
(``parallel`` spawns in flight), and a node only once its seeds (the earlier nodes it joins
through, ``create_localnet(seeds=...)``) listen, so nobody dials a port that is not open yet
and each join asks a few peers, not all of them. Joining runs in each child while the next
ones start; :func:`spawn_nodes` returns once every child says ``ready``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lumera_p2p.config import load_config
from lumera_p2p.config_plain import dump_plain
from lumera_p2p.eventloop import LoopName
from lumera_p2p.localnet import LocalNode

#: The file next to a node's ``config.yml`` that its process reads: the validated
#: configuration in plain form (``config_plain``), so the child never imports pydantic.
PLAIN_CONFIG = "config.plain.json"

#: Spawns in flight at once: enough to keep two cores busy with interpreter start-up.
SPAWN_PARALLEL = 4
#: The longest a child may take to listen, and then to join.
START_TIMEOUT = 120.0
#: Interpreter flags of a node process. ``-OO`` drops docstrings and ``assert`` statements:
#: about 2.2 MiB of RSS per process (docstrings of every imported module, and pycryptodome
#: then binds its C code through ctypes instead of parsing C declarations with pycparser).
#: The package's asserts only narrow types after a check that raises on its own, so nothing
#: a node verifies depends on them (the tests run without -OO and would show otherwise).
CHILD_FLAGS = ("-OO",)
#: The event loop of a node process. asyncio's own, not uvloop: uvloop's library adds about
#: 2.4 MiB of RSS to every process (measured, 8 nodes), and a machine running hundreds of
#: node processes is short of memory before it is short of loop speed (uvloop is some 16 %
#: faster per RPC). ``spawn_nodes(loop="uvloop")`` and ``bench/scale.py --loop`` pick it.
CHILD_LOOP: LoopName = "asyncio"
#: Modules a node process on asyncio's loop starts without: ``sys.modules[name] = None``
#: before anything is imported, so importing one raises ``ImportError``. They are Python's
#: OpenSSL bindings, whose libcrypto and libssl add about 4 MiB of RSS to a process. A node
#: never uses them: its channel is its own (pycryptodome and libsodium), asyncio runs
#: without ``ssl`` (as on builds without OpenSSL), and hashlib then serves SHA-2 from
#: Python's built-in modules. uvloop imports ``ssl``, so a uvloop child keeps them.
NO_OPENSSL: tuple[str, ...] = ("ssl", "_ssl", "_hashlib")
#: glibc malloc arenas per child. By default each thread that allocates (the SQLite writers
#: and readers, libuv's workers) gets its own, up to 8 per core; two are plenty for one node
#: whose work is on its event loop, and each arena left out is its high-water mark of RSS.
MALLOC_ARENAS = "2"


class ChildFailed(RuntimeError):
    """A node process exited, or said something other than what was expected."""


@dataclass
class NodeProcess:
    """One running node process and the line protocol to it."""

    local: LocalNode
    proc: asyncio.subprocess.Process
    address: str = ""
    endpoint: str = ""
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @property
    def pid(self) -> int:
        """The process ID."""
        return self.proc.pid

    async def read_line(self, timeout: float = START_TIMEOUT) -> str:
        """The child's next line (``ChildFailed`` if it exits first)."""
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not raw:
            code = await self.proc.wait()
            raise ChildFailed(f"{self.local.name} exited with status {code}")
        return raw.decode().rstrip("\n")

    async def command(self, line: str, timeout: float = START_TIMEOUT) -> str:
        """Send one command line and return the reply line."""
        assert self.proc.stdin is not None
        async with self._lock:
            self.proc.stdin.write(line.encode() + b"\n")
            await self.proc.stdin.drain()
            return await self.read_line(timeout)

    async def store(self, value: bytes) -> tuple[str, int]:
        """Store ``value`` through this node: its key and how many replicas acknowledged."""
        reply = await self.command(f"store {value.hex()}")
        verb, _, rest = reply.partition(" ")
        if verb != "stored":
            raise ChildFailed(f"{self.local.name}: {reply}")
        key, replicas = rest.split()
        return key, int(replicas)

    async def retrieve(self, key: str) -> bytes | None:
        """The value of ``key`` as this node finds it (None: not found)."""
        reply = await self.command(f"get {key}")
        if reply == "missing":
            return None
        verb, _, rest = reply.partition(" ")
        if verb != "value":
            raise ChildFailed(f"{self.local.name}: {reply}")
        return bytes.fromhex(rest)

    async def modules(self) -> set[str]:
        """The top-level packages the node process has imported."""
        reply = await self.command("modules")
        verb, _, rest = reply.partition(" ")
        if verb != "modules":
            raise ChildFailed(f"{self.local.name}: {reply}")
        return set(rest.split())

    def memory(self) -> dict[str, int]:
        """``Rss``, ``Pss`` and ``Private_Dirty`` in KiB (``/proc/<pid>/smaps_rollup``)."""
        out: dict[str, int] = {}
        with contextlib.suppress(OSError):
            for row in Path(f"/proc/{self.pid}/smaps_rollup").read_text().splitlines():
                name, _, rest = row.partition(":")
                if name in ("Rss", "Pss", "Private_Dirty"):
                    out[name] = int(rest.split()[0])
        return out

    async def stop(self, timeout: float = 30.0) -> int:
        """Ask the node to stop (``quit``); kill it if it does not within ``timeout``."""
        if self.proc.returncode is None and self.proc.stdin is not None:
            with contextlib.suppress(ConnectionError, RuntimeError):
                self.proc.stdin.write(b"quit\n")
                await self.proc.stdin.drain()
                self.proc.stdin.close()
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            return await self.proc.wait()


def child_environment(local: LocalNode, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a node process: ours, ``env`` over it, and two memory settings.

    ``MALLOC_ARENA_MAX`` (:data:`MALLOC_ARENAS`) unless already set. And when bytecode
    writing is off (``PYTHONDONTWRITEBYTECODE``), every child would compile the package from
    source again, which costs each one about 1.3 MiB of RSS that compiling leaves behind and
    0.1 s of CPU: instead the children share a bytecode cache in the network's own directory
    (``PYTHONPYCACHEPREFIX``), so nothing is written beside the sources.
    """
    out = {**os.environ, **(env or {})}
    out.setdefault("MALLOC_ARENA_MAX", MALLOC_ARENAS)
    if out.get("PYTHONDONTWRITEBYTECODE") and "PYTHONPYCACHEPREFIX" not in out:
        del out["PYTHONDONTWRITEBYTECODE"]
        out["PYTHONPYCACHEPREFIX"] = str(local.config_path.parent.parent / ".pycache")
    return out


async def spawn_node(
    local: LocalNode, env: dict[str, str] | None = None, loop: LoopName = CHILD_LOOP
) -> NodeProcess:
    """Start the node process of ``local`` and wait until it listens.

    Its ``config.yml`` is validated here (a bad one is a ``ConfigError`` before anything
    starts) and handed to the child in plain form."""
    plain = write_plain_config(local.config_path)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *CHILD_FLAGS,
        "-c",
        child_bootstrap(NO_OPENSSL if loop == "asyncio" else ()),
        str(plain),
        loop,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=child_environment(local, env),
    )
    child = NodeProcess(local, proc)
    try:
        line = await child.read_line()
        verb, address, endpoint = line.split(" ")
        if verb != "listening":
            raise ChildFailed(f"{local.name}: {line}")
        child.address, child.endpoint = address, endpoint
    except BaseException:
        await child.stop(5.0)
        raise
    return child


def child_bootstrap(blocked: Sequence[str]) -> str:
    """``python -c`` code that blocks ``blocked`` modules, then runs the node process (as
    ``python -m lumera_p2p.localnet_child`` would, but that imports the package first)."""
    return (
        "import sys\n"
        f"sys.modules.update(dict.fromkeys({tuple(blocked)!r}))\n"
        "from lumera_p2p.localnet_child import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )


def write_plain_config(config_path: Path) -> Path:
    """Validate ``config_path`` and write it in plain form beside it; return the new file."""
    plain = config_path.with_name(PLAIN_CONFIG)
    plain.write_text(dump_plain(load_config(config_path)), encoding="utf-8")
    return plain


async def warm_bytecode(local: LocalNode, env: dict[str, str] | None = None) -> None:
    """Compile what a node process imports once, before the first ones start together (each
    would compile it, and keep the RSS compiling leaves). Nothing when bytecode is off."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *CHILD_FLAGS,
        "-c",
        "import lumera_p2p.localnet_child",
        env=child_environment(local, env),
    )
    await asyncio.wait_for(proc.wait(), START_TIMEOUT)


async def spawn_nodes(
    local: Sequence[LocalNode],
    *,
    parallel: int = SPAWN_PARALLEL,
    env: dict[str, str] | None = None,
    loop: LoopName = CHILD_LOOP,
) -> list[NodeProcess]:
    """Start one process per node, ``parallel`` spawns at a time, and wait until all are
    ``ready`` (their routing tables hold a peer). On failure every started child is stopped."""
    if local:
        await warm_bytecode(local[0], env)
    gate = asyncio.Semaphore(parallel)
    started: list[NodeProcess] = []
    listening = [asyncio.Event() for _ in local]

    async def one(i: int, node: LocalNode) -> None:
        for seed in node.seeds:  # its seeds listen before it dials them
            await listening[seed].wait()
        async with gate:
            child = await spawn_node(node, env, loop)
            started.append(child)
            listening[i].set()
        line = await child.read_line()
        if not line.startswith("ready "):
            raise ChildFailed(f"{node.name}: {line}")

    jobs = [one(i, node) for i, node in enumerate(local)]
    try:
        await asyncio.gather(*jobs)
    except BaseException:
        await stop_nodes(started)
        raise
    order = {n.config_path: i for i, n in enumerate(local)}
    started.sort(key=lambda c: order[c.local.config_path])
    return started


async def stop_nodes(children: Sequence[NodeProcess]) -> None:
    """Stop every child (each asked to quit, killed if it hangs)."""
    await asyncio.gather(*(c.stop() for c in children), return_exceptions=True)
