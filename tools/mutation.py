"""Mutation testing of the modules named in ``[tool.mutmut]`` (pyproject.toml), per module.

mutmut (PyPI) makes the mutants and runs, for each one, the tests that reach the mutated
function, in forked workers. This script runs it on a selection of modules and reads its
results back as what we track: the kill rate of each module, and every surviving mutant with
its line, the change and the source around it.

    python tools/mutation.py run                      # every configured module
    python tools/mutation.py run kademlia.lookup content --max-children 2
    python tools/mutation.py report [--json] [--min 90] [MODULE ...]

A module is named relative to the package (``kademlia``, ``kademlia.lookup``, ``store.writer``)
or in full (``lumera_p2p.content``). ``run`` re-tests only what changed since the last run
(mutmut keeps its working copy in ``mutants/``; delete it to start over). Killed counts every
mutant the tests noticed: a failing test, a timeout, a crash. With ``--min`` the exit status is
1 when a module's rate is below it.
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


def mutmut(root: Path, *args: str, capture: bool = False) -> subprocess.CompletedProcess[str]:
    """Run mutmut in ``root`` with this interpreter."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(
        [sys.executable, "-m", "mutmut", *args],
        cwd=root,
        env=env,
        text=True,
        capture_output=capture,
        check=False,
    )


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
    """``kademlia.lookup`` → ``lumera_p2p.kademlia.lookup`` (full names pass unchanged)."""
    package = package_of(root)
    return module if module.split(".", maxsplit=1)[0] == package else f"{package}.{module}"


def matches(module: str, wanted: list[str]) -> bool:
    """Whether ``module`` is one of ``wanted`` or inside one of them."""
    return not wanted or any(module == w or module.startswith(w + ".") for w in wanted)


def collect(root: Path, wanted: list[str], with_diffs: bool = True) -> list[ModuleResult]:
    """Per-module results from mutmut's ``mutants/**/*.meta`` files."""
    sources = [str(s) for s in config(root).get("source_paths", ["src"])]  # type: ignore[attr-defined]
    results: dict[str, ModuleResult] = {}
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
                line, before, after = None, "", ""
                if with_diffs:
                    path = module_file(root, module, sources)
                    start = function_start(path, qualname) if path else None
                    diff = mutmut(root, "show", key, capture=True).stdout
                    line, before, after = parse_diff(diff, start)
                result.survivors.append(Survivor(key, status, line, before, after))
    return [results[m] for m in sorted(results)]


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
        cmd.add_argument("modules", nargs="*", help="e.g. kademlia, store.writer, content")
        cmd.add_argument("--json", action="store_true", help="print one JSON object")
        cmd.add_argument("--min", type=float, default=None, help="fail below this rate (%%)")
        cmd.add_argument("--no-diffs", action="store_true", help="skip survivors' lines")
        if name == "run":
            cmd.add_argument("--max-children", type=int, default=2)
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    wanted = [full_name(root, m) for m in args.modules]
    if args.command == "run":
        globs = [f"{m}.*" for m in wanted]
        stream = subprocess.DEVNULL if args.json else None
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "mutmut",
                "run",
                "--max-children",
                str(args.max_children),
                *globs,
            ],
            cwd=root,
            env=env,
            stdout=stream,
            check=False,
        )
        if proc.returncode != 0:
            print(f"mutmut run failed (exit {proc.returncode})", file=sys.stderr)
            return proc.returncode
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
