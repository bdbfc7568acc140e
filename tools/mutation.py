"""Mutation testing of the modules named in ``[tool.mutmut]`` (pyproject.toml), per module.

mutmut (PyPI) makes the mutants and runs, for each one, the tests that reach the mutated
function, in forked workers. This script runs it on a selection of modules and reads its
results back as what we track: the kill rate of each module, and every surviving mutant with
its line, the change and the source around it.

    python tools/mutation.py run                      # every configured module
    python tools/mutation.py run kademlia.lookup content --max-children 2
    python tools/mutation.py run --module dht/plans/store.py   # one file, by path
    python tools/mutation.py run --survivors dht.plans   # only what survived (after new tests)
    python tools/mutation.py report [--json] [--min 90] [MODULE ...]

A module is named relative to the package (``kademlia``, ``kademlia.lookup``, ``store.writer``,
``dht.plans``), in full (``lumera_p2p.content``) or by path (``dht/plans/store.py``). mutmut
keeps its working copy in ``mutants/`` (delete it to start over). ``run`` without modules tests
only the mutants not yet checked (new, or of a function that changed); with modules it re-tests
all of theirs; with ``--survivors`` only those that survived or were never checked. Killed
counts every mutant the tests noticed: a failing test, a timeout, a crash. With ``--min`` the
exit status is 1 when a module's rate is below it.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: mutmut's exit codes (mutmut/stats.py) folded into what a kill rate needs.
KILLED_CODES = {
    1: "killed",
    3: "killed",
    -24: "timeout",
    24: "timeout",
    152: "timeout",
    255: "timeout",
    36: "timeout",
    -11: "crash",
    -6: "crash",  # SIGABRT: libsodium aborts on an out-of-range pointer, as a segfault would
    -9: "crash",
    37: "type check",
}
SURVIVED_CODES: dict[int | None, str] = {0: "survived", 5: "no tests", 33: "no tests"}
SKIPPED_CODES: dict[int | None, str] = {34: "skipped", None: "not checked", 2: "interrupted"}


@dataclass
class Survivor:
    """One mutant the tests did not notice."""

    name: str
    status: str
    line: int | None
    before: str
    after: str


@dataclass
class ModuleResult:
    """Counts for one module, and its survivors."""

    module: str
    total: int = 0
    killed: int = 0
    skipped: int = 0
    survivors: list[Survivor] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Killed as a percentage of the mutants tested (100 when none were)."""
        tested = self.total - self.skipped
        return 100.0 * self.killed / tested if tested else 100.0


def split_key(key: str) -> tuple[str, str]:
    """``pkg.mod.x_func__mutmut_3`` → (``pkg.mod``, ``func``); methods come as ``Class.meth``."""
    stem = key.rsplit("__mutmut_", 1)[0]
    for marker in (".xǁ", ".x_"):
        if marker in stem:
            module, mangled = stem.split(marker, 1)
            return module, mangled.replace("ǁ", ".")
    raise ValueError(f"not a mutmut mutant name: {key}")


def function_start(source: Path, qualname: str) -> int | None:
    """The first line (decorators included) of ``qualname`` in ``source``."""
    tree = ast.parse(source.read_text())
    body: list[ast.stmt] = tree.body
    node: ast.stmt | None = None
    for part in qualname.split("."):
        node = next(
            (
                n
                for n in body
                if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                and n.name == part
            ),
            None,
        )
        if node is None:
            return None
        body = node.body
    if node is None:
        return None
    decorators: list[ast.expr] = getattr(node, "decorator_list", [])
    return min([node.lineno, *(d.lineno for d in decorators)])


def parse_diff(diff: str, start: int | None) -> tuple[int | None, str, str]:
    """The changed line of a ``mutmut show`` diff (hunks count from the function's start)."""
    line: int | None = None
    before: list[str] = []
    after: list[str] = []
    offset = 0
    for text in diff.splitlines():
        if text.startswith("@@"):
            old = text.split()[1]  # -a,b
            offset = int(old[1:].split(",")[0]) - 1
        elif text.startswith(("---", "+++")):
            continue
        elif text.startswith("-"):
            if line is None and start is not None:
                line = start + offset
            before.append(text[1:].strip())
            offset += 1
        elif text.startswith("+"):
            after.append(text[1:].strip())
        elif text.startswith(" "):
            offset += 1
    return line, " / ".join(before), " / ".join(after)


def module_file(root: Path, module: str, sources: list[str]) -> Path | None:
    """The source file of a dotted module, looked up under the configured source paths."""
    rel = Path(*module.split("."))
    for src in sources:
        base = root / src
        for candidate in (rel.with_suffix(".py"), rel / "__init__.py"):
            for parent in [base, *base.parents]:
                path = parent / candidate
                if path.is_file():
                    return path
    return None


def config(root: Path) -> dict[str, object]:
    """The ``[tool.mutmut]`` table of ``root/pyproject.toml``."""
    with (root / "pyproject.toml").open("rb") as f:
        table = tomllib.load(f).get("tool", {}).get("mutmut", {})
    assert isinstance(table, dict)
    return table


def package_of(root: Path) -> str:
    """The top-level package name (the first directory under ``src/``)."""
    return next(p.name for p in sorted((root / "src").iterdir()) if (p / "__init__.py").exists())


def full_name(root: Path, module: str) -> str:
    """``kademlia.lookup`` → ``lumera_p2p.kademlia.lookup`` (full names pass unchanged).

    A path works too: ``dht/plans/store.py``, ``src/lumera_p2p/dht/plans`` or ``dht/plans/``.
    """
    package = package_of(root)
    if "/" in module or module.endswith(".py"):
        parts = [p for p in module.removesuffix(".py").split("/") if p]
        if parts and parts[0] == "src":
            parts = parts[1:]
        if parts and parts[-1] == "__init__":
            parts = parts[:-1]
        module = ".".join(parts)
    return module if module.split(".", maxsplit=1)[0] == package else f"{package}.{module}"


def matches(module: str, wanted: list[str]) -> bool:
    """Whether ``module`` is one of ``wanted`` or inside one of them."""
    return not wanted or any(module == w or module.startswith(w + ".") for w in wanted)


def collect(root: Path, wanted: list[str], with_diffs: bool = True) -> list[ModuleResult]:
    """Per-module results from mutmut's ``mutants/**/*.meta`` files."""
    sources = [str(s) for s in config(root).get("source_paths", ["src"])]  # type: ignore[attr-defined]
    results: dict[str, ModuleResult] = {}
    located: dict[str, tuple[str, str, str]] = {}  # survivor -> (its source file, module, qualname)
    for meta in sorted((root / "mutants").glob("**/*.py.meta")):
        codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        for key, code in sorted(codes.items(), key=lambda kv: _natural(kv[0])):
            module, qualname = split_key(key)
            if not matches(module, wanted):
                continue
            result = results.setdefault(module, ModuleResult(module))
            result.total += 1
            if code in KILLED_CODES:
                result.killed += 1
            elif code in SKIPPED_CODES:
                result.skipped += 1
            else:
                status = SURVIVED_CODES.get(code, f"suspicious (exit {code})")
                result.survivors.append(Survivor(key, status, None, "", ""))
                source = str(meta.relative_to(root / "mutants")).removesuffix(".meta")
                located[key] = (source, module, qualname)
    if with_diffs and located:
        diff_of = diffs(root, {key: where[0] for key, where in located.items()})
        for result in results.values():
            for s in result.survivors:
                _, module, qualname = located[s.name]
                path = module_file(root, module, sources)
                start = function_start(path, qualname) if path else None
                s.line, s.before, s.after = parse_diff(diff_of.get(s.name, ""), start)
    return [results[m] for m in sorted(results)]


#: Run by :func:`diffs` in ``root``: mutmut's own diff of each mutant, in one process (``mutmut
#: show`` per survivor costs a second each).
_DIFFS = """
import json, sys
from mutmut.mutation.diff_apply import get_diff_for_mutant
wanted = json.load(sys.stdin)
print(json.dumps({key: get_diff_for_mutant(key, path=path) for key, path in wanted.items()}))
"""


def diffs(root: Path, paths: dict[str, str]) -> dict[str, str]:
    """``mutmut show``'s diff of each mutant in ``paths`` (mutant name → its source file)."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run(
        [sys.executable, "-c", _DIFFS],
        cwd=root,
        env=env,
        input=json.dumps(paths),
        text=True,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        print(f"could not read the mutants' diffs: {proc.stderr[-500:]}", file=sys.stderr)
        return {}
    found: dict[str, str] = json.loads(proc.stdout)
    return found


def pending(root: Path, wanted: list[str]) -> list[str]:
    """Names of the mutants of ``wanted`` that survived, or were never checked, last run."""
    names: list[str] = []
    for meta in sorted((root / "mutants").glob("**/*.py.meta")):
        codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        for key, code in codes.items():
            if matches(split_key(key)[0], wanted) and code not in KILLED_CODES:
                names.append(key)
    return sorted(names, key=_natural)


def _natural(key: str) -> tuple[str, int]:
    stem, _, number = key.rpartition("__mutmut_")
    return stem, int(number) if number.isdigit() else 0


def print_report(results: list[ModuleResult]) -> None:
    """A table of rates, then each module's survivors."""
    width = max([len(r.module) for r in results] + [6])
    print(f"{'module':<{width}}  killed / tested   rate")
    for r in results:
        print(f"{r.module:<{width}}  {r.killed:>6} / {r.total - r.skipped:<6}  {r.rate:5.1f} %")
    for r in results:
        if not r.survivors:
            continue
        print(f"\n{r.module}: {len(r.survivors)} surviving")
        for s in r.survivors:
            where = f"line {s.line}" if s.line else "line ?"
            print(f"  {where:>9}  {s.status:<9} {s.name.rsplit('.', 1)[1]}")
            print(f"             - {s.before}")
            print(f"             + {s.after}")


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "report"):
        cmd = sub.add_parser(name)
        cmd.add_argument(
            "modules", nargs="*", help="e.g. kademlia, store.writer, dht/plans/store.py"
        )
        cmd.add_argument(
            "--module",
            "-m",
            action="append",
            default=[],
            dest="more_modules",
            metavar="MODULE",
            help="one more module (repeatable), same forms as the positional ones",
        )
        cmd.add_argument("--json", action="store_true", help="print one JSON object")
        cmd.add_argument("--min", type=float, default=None, help="fail below this rate (%%)")
        cmd.add_argument("--no-diffs", action="store_true", help="skip survivors' lines")
        if name == "run":
            cmd.add_argument("--max-children", type=int, default=2)
            cmd.add_argument(
                "--survivors",
                action="store_true",
                help="re-test only the last run's survivors and unchecked mutants (after adding"
                " tests; a changed function's mutants are unchecked again)",
            )
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    wanted = [full_name(root, m) for m in [*args.modules, *args.more_modules]]
    if args.command == "run":
        globs = [f"{m}.*" for m in wanted]
        if args.survivors:
            globs = pending(root, wanted)
        if globs or not args.survivors:
            stream = subprocess.DEVNULL if args.json else None
            env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
            command = ["-m", "mutmut", "run", "--max-children", str(args.max_children)]
            proc = subprocess.run(
                [sys.executable, *command, *globs], cwd=root, env=env, stdout=stream, check=False
            )
            if proc.returncode != 0:
                print(f"mutmut run failed (exit {proc.returncode})", file=sys.stderr)
                return proc.returncode
        else:
            print("no survivors to re-test", file=sys.stderr)
    results = collect(root, wanted, with_diffs=not args.no_diffs)
    if args.json:
        print(json.dumps({r.module: {**asdict(r), "rate": round(r.rate, 1)} for r in results}))
    else:
        print_report(results)
    if args.min is not None and any(r.rate < args.min for r in results):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
