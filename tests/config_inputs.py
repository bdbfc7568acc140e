"""Hostile config files generated from a seed, for the loader's fuzz tests and its benchmark.

Each generator takes a ``random.Random`` and returns the text of one file. The kinds follow what
broke the loader before (issue 13): YAML trees over our and Go's keys, raw text, mutations of real
configs, deep nesting, huge numbers, aliases (bombs, cycles, merges) and explicit tags.
"""

from __future__ import annotations

import random
import string
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lumera_p2p.config import load_config
from lumera_p2p.config_go import go_field_names
from lumera_p2p.errors import ConfigError

ADDR = "lumera1jcus5g9v6r080rg7dljvvpr4cm8k7psqwg7tj8"
FIXTURES = Path(__file__).parent / "fixtures" / "go_configs"

_OUR_KEYS = [
    "key_name",
    "identity",
    "p2p",
    "keyring",
    "lumera",
    "log",
    "listen_address",
    "port",
    "data_dir",
    "bootstrap_nodes",
    "external_ip",
    "allow_private_peers",
    "bootstrap_refresh_interval",
    "health_check_interval",
    "version",
    "min_peer_version",
    "backend",
    "dir",
    "passphrase_plain",
    "passphrase_env",
    "passphrase_file",
    "password",
    "grpc_addr",
    "chain_id",
    "registry_file",
    "level",
    "format",
    "file",
    "files",
    "chunk_size",
    "store_batch_chunks",
    "readahead_chunks",
    "min_replicas",
    "resume_window",
    "retrieve_attempts",
    "store_rounds",
    "store_retry_delay",
]
KEYS = sorted({*_OUR_KEYS, *(n.rsplit(".", 1)[-1] for n in go_field_names()), "<<", "x", ""})
SEEDS = [
    "key_name: n\np2p:\n  data_dir: d\n",
    f"key_name: n\np2p:\n  data_dir: d\n  bootstrap_nodes: '{ADDR}@127.0.0.1:4445'\n"
    "keyring:\n  backend: file\n  passphrase_plain: secret-passphrase\n"
    "lumera:\n  grpc_addr: localhost:9090\n  chain_id: lumera\nlog:\n  level: warn\n",
    *(p.read_text() for p in sorted(FIXTURES.glob("*.yml"))),
]
_DIGITS = bytes.maketrans(bytes(range(256)), bytes(48 + b % 10 for b in range(256)))
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_YAML_CHARS = "[]{}:,-?&*!|>'\"%@`#\n \t\\.0123456789eE+_xo~"


def _scalar(rng: random.Random) -> object:
    kind = rng.randrange(9)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.randrange(-(10**6), 10**6)
    if kind == 3:
        return int("9" * rng.randrange(1, 60))
    if kind == 4:
        return rng.choice([1e308, -1e-308, 0.5, float("inf"), 1.3])
    if kind == 5:
        return "".join(rng.choices(string.printable, k=rng.randrange(30)))
    if kind == 6:
        host = rng.choice(["127.0.0.1", "[::1]", "h.example", "bad host"])
        return f"{ADDR}@{host}:{rng.randrange(-5, 70000)}"
    if kind == 7:
        return rng.choice(["os", "file", "test", "warn", "json", "30s", "v2.6.2", "localhost:9090"])
    return "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(12)))


def _tree(rng: random.Random, depth: int) -> object:
    roll = rng.random()
    if depth <= 0 or roll < 0.35:
        return _scalar(rng)
    if roll < 0.5:
        return [_tree(rng, depth - 1) for _ in range(rng.randrange(5))]
    return {rng.choice(KEYS): _tree(rng, depth - 1) for _ in range(rng.randrange(1, 7))}


def yaml_tree(rng: random.Random) -> str:
    """A random mapping over our keys and Go's, dumped by PyYAML (block or flow style)."""
    tree = {rng.choice(KEYS): _tree(rng, rng.randrange(1, 6)) for _ in range(rng.randrange(1, 8))}
    if rng.random() < 0.5:
        tree.setdefault("key_name", "n")
        tree.setdefault("p2p", {"data_dir": "d"})
    return yaml.dump(
        tree, Dumper=_DUMPER, default_flow_style=rng.random() < 0.3, allow_unicode=True
    )


def raw_text(rng: random.Random) -> str:
    """Characters YAML gives meaning to, and some it refuses."""
    size = rng.choice([10, 100, 1000, 20_000])
    pool = _YAML_CHARS if rng.random() < 0.8 else _YAML_CHARS + "\x00\x01\x1b\x7f\ufeff\u2028é"
    return "".join(rng.choices(pool, k=rng.randrange(size)))


def mutated(rng: random.Random) -> str:
    """A real config (ours or a Go layout) with a few edits."""
    text = rng.choice(SEEDS)
    for _ in range(rng.randrange(1, 6)):
        at = rng.randrange(len(text) + 1)
        op = rng.randrange(6)
        if op == 0:
            text = text[:at] + rng.choice(_YAML_CHARS) + text[at:]
        elif op == 1:
            text = text[:at] + text[at + rng.randrange(1, 20) :]
        elif op == 2:
            text = (
                text[:at] + rng.choice(["*a", "&a ", "!!int ", "<<: ", "[", "{", "- "]) + text[at:]
            )
        elif op == 3:
            lines = text.splitlines(keepends=True)
            if lines:
                i = rng.randrange(len(lines))
                lines.insert(i, lines[i] * rng.randrange(1, 4))
            text = "".join(lines)
        elif op == 4:
            text = text[:at] + "9" * rng.choice([5, 45, 5000]) + text[at:]
        else:
            text = text.replace("  ", rng.choice([" ", "   ", "\t"]), 1)
    return text


def deep(rng: random.Random) -> str:
    """Nesting far past any limit, in flow, block and mixed styles, sometimes past the size cap."""
    n = rng.choice([30, 33, 100, 1000, 10_000, 60_000, 200_000])
    style = rng.randrange(7)
    if style == 0:
        body = "[" * n + "]" * n * rng.randrange(2)
    elif style == 1:
        body = "{a: " * n + "}" * n * rng.randrange(2)
    elif style == 2:
        body = "\n" + "- " * n + "x"
    elif style == 3:
        body = "\n" + "".join(" " * i + f"k{i}:\n" for i in range(min(n, 500)))
    elif style == 4:
        body = "[{x: " * n
    elif style == 5:
        body = "\n" + "".join(" " * (2 * i) + "- a:\n" for i in range(min(n, 300)))
    else:
        body = "&a0 [" + "".join(f"&a{i} [" for i in range(1, min(n, 200))) + "]" * min(n, 200)
    return "key_name: n\np2p: {data_dir: d}\nx: " + body


_NUMBER_PLACES = [
    "p2p:\n  data_dir: d\n  port: {}\n",
    "p2p:\n  data_dir: d\n  health_check_interval: {}\n",
    "p2p: {{data_dir: d}}\nlumera:\n  gas_padding: {}\n",
    "p2p: {{data_dir: d}}\nkeyring:\n  passphrase_plain: {}\n",
    "p2p: {{data_dir: d}}\nsupernode:\n  port: {}\n",
    "p2p: {{data_dir: d}}\nx: [{}]\n",
]


def huge_number(rng: random.Random) -> str:
    """Integers of up to 200,000 digits (and their hex, octal, base-60 and tagged spellings)."""
    digits = rng.choice([20, 40, 41, 64, 4300, 4301, 20_000, 200_000])
    body = rng.choice(string.digits[1:]) + rng.randbytes(digits).translate(_DIGITS).decode()
    spelling = rng.choice(
        [
            *(prefix + body for prefix in ("", "-", "0x", "0o", "0", "1_", "!!int ")),
            body + ".5",
            body + "e999",
            "1" + ":59" * (digits // 3),
            "!!float " + body,
        ]
    )
    where = rng.choice(_NUMBER_PLACES)
    return "key_name: n\n" + where.format(spelling)


def aliases(rng: random.Random) -> str:
    """Billion laughs, cycles, merges, many aliases, aliases of big values."""
    kind = rng.randrange(6)
    head = "key_name: n\np2p: {data_dir: d}\n"
    if kind == 0:
        fan, levels = rng.randrange(2, 12), rng.randrange(2, 12)
        lines = ["l0: &l0 [" + ", ".join(["lol"] * fan) + "]"]
        lines += [
            f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * fan) + "]" for i in range(1, levels)
        ]
        return head + "\n".join(lines) + "\n"
    if kind == 1:
        return head + rng.choice(["x: &a [*a]\n", "x: &a {k: *a}\n", "x: &a [1, [2, *a]]\n"])
    if kind == 2:
        count = rng.choice([10, 128, 129, 5000])
        return head + "a: &a 1\nb: [" + ", ".join(["*a"] * count) + "]\n"
    if kind == 3:
        lines = ["m0: &m0 {port: 1}"] + [
            f"m{i}: &m{i} {{<<: *m{i - 1}}}" for i in range(1, rng.randrange(2, 60))
        ]
        return head + "\n".join(lines) + "\n"
    if kind == 4:
        big = "x" * rng.choice([10, 100_000])
        return f"key_name: &k {big}\np2p: {{data_dir: *k, version: *k}}\nidentity: *k\n"
    return head + "p2p2: &p {data_dir: d, port: 5}\nlumera: *p\nkeyring: *p\nlog: *p\n"


_TAGS = [
    *(f"!!{name}" for name in ("int", "float", "bool", "null", "binary", "timestamp", "set")),
    *(f"!!{name}" for name in ("omap", "pairs", "map", "seq", "str")),
    "!custom",
    "!!python/name:os.system",
    "!<tag:yaml.org,2002:int>",
]


def tags(rng: random.Random) -> str:
    """Explicit tags on values they do not fit, and tags PyYAML's safe loader refuses."""
    tag = rng.choice(_TAGS)
    value = rng.choice(
        ["x", "''", "[1, 2]", "{a: 1}", "2001-13-45", "0x", "-", "@@", "1e5", "yes", "- a"]
    )
    return f"key_name: n\np2p:\n  data_dir: d\n  port: {tag} {value}\n"


def wide(rng: random.Random) -> str:
    """Thousands of keys or entries: near-miss keys, long lists, long bootstrap strings."""
    count = rng.choice([50, 300, 2400, 6000])
    kind = rng.randrange(4)
    if kind == 0:
        names = (
            "".join(rng.choices(string.ascii_lowercase + "_", k=rng.randrange(2, 14)))
            for _ in range(count)
        )
        where = rng.choice(["", "p2p", "keyring", "lumera", "log", "storage_challenge"])
        indent = "  " if where else ""
        body = "".join(f"{indent}{name}: 1\n" for name in names)
        return (
            "key_name: n\np2p: {data_dir: d}\n" * (where != "p2p")
            + (f"{where}:\n" if where else "")
            + body
        )
    entry = f"{ADDR}@127.0.0.{rng.randrange(256)}:{rng.randrange(1, 65536)}"
    if kind == 1:
        entries = ",".join([entry] * min(count, 2000))
        return f"key_name: n\np2p:\n  data_dir: d\n  bootstrap_nodes: '{entries}'\n"
    if kind == 2:
        items = "".join(f"    - '{entry}'\n" for _ in range(min(count, 2000)))
        return f"key_name: n\np2p:\n  data_dir: d\n  bootstrap_nodes:\n{items}"
    return "key_name: n\np2p: {data_dir: d}\nx: [" + ", ".join(["1"] * count) + "]\n"


GENERATORS: dict[str, Callable[[random.Random], str]] = {
    "yaml_tree": yaml_tree,
    "raw_text": raw_text,
    "mutated": mutated,
    "deep": deep,
    "huge_number": huge_number,
    "aliases": aliases,
    "tags": tags,
    "wide": wide,
}


@dataclass
class FuzzReport:
    """What a fuzz run saw: counts, the slowest input per kind, and anything not a ConfigError."""

    count: int = 0
    config_errors: int = 0
    loaded: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    max_seconds: dict[str, float] = field(default_factory=dict)
    times: list[float] = field(default_factory=list)
    escaped: list[tuple[str, int, str]] = field(default_factory=list)  # kind, seed, error

    @property
    def slowest(self) -> float:
        """The longest time any one input took."""
        return max(self.max_seconds.values(), default=0.0)


def run_fuzz(count: int, seed: int, workdir: Path) -> FuzzReport:
    """Load ``count`` generated files through ``load_config``; time each (only the load)."""
    report = FuzzReport()
    kinds = list(GENERATORS)
    path = workdir / "fuzz.yml"
    for i in range(count):
        kind = kinds[i % len(kinds)]
        input_seed = seed * 1_000_003 + i
        text = GENERATORS[kind](random.Random(input_seed))
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        started = time.perf_counter()
        try:
            load_config(path)
            report.loaded += 1
        except ConfigError:
            report.config_errors += 1
        except Exception as exc:
            report.escaped.append((kind, input_seed, f"{type(exc).__name__}: {exc}"[:300]))
        elapsed = time.perf_counter() - started
        report.count += 1
        report.by_kind[kind] += 1
        report.times.append(elapsed)
        report.max_seconds[kind] = max(report.max_seconds.get(kind, 0.0), elapsed)
    return report
