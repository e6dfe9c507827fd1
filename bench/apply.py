"""Benchmark `configctl apply`: does the work of a commit follow the size of its change?

For each size N (apps; ``bench/gen_tree.py`` trees without injected errors, three
environments, about 5.3 files and 100 keys per pair) it builds a git repository in a
temporary directory, commits the tree, then a chain of commits that alternately change

* **app**: one key in one app's environment file (``apps/app-0005/envs/prod.yaml``,
  ``svc.port``): one (app, env) pair changes;
* **global**: one key in ``global.yaml`` (``log.mode``; the generated environment and
  app-environment files no longer override it, so it reaches every pair).

and applies them, on SQLite and on PostgreSQL (a scratch database created on the server of
``--pg-url`` and dropped afterwards). Each figure is the median of ``--runs`` runs:

* **process**: wall time of the `configctl apply --rev SHA` process (what a user or a CI
  job waits for: interpreter start-up, imports, git, validation, the transaction), and
  its CPU time (user + system, steadier on a busy machine);
* **apply_snapshot cold**: the `apply_snapshot` call alone, in this process, the way the
  command makes it: a fresh `Evaluator` and the tree of the last applied commit as the
  baseline, so only the apps whose values files changed are evaluated;
* **apply_snapshot warm**: the way the long-running reconciler makes it: no baseline (the
  whole tree), an `Evaluator` that already applied the parent commit (parse, schema and
  pair caches warm, checksums computed).

**initial** is the first apply of the whole tree into an empty store (a fresh SQLite file
or database each run). The goal: the one-key app change at N = 1,000 takes less than 3x
its time at N = 10. ``--profile`` adds a cProfile of one cold one-key app change at the
largest N.

    python bench/apply.py                                   # N = 10 and 1,000, 5 runs
    python bench/apply.py --sizes 10,100 --runs 3 --db sqlite
    python bench/apply.py --pg-url postgresql://postgres@127.0.0.1:5432/postgres --profile
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import io
import os
import pstats
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import gen_tree  # noqa: E402 - a sibling script, importable once bench/ is on the path

SCRIPT = Path(sys.executable).parent / "configctl"
CONFIGCTL = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "configctl"]
APP_FILE = "apps/app-0005/envs/prod.yaml"
GLOBAL_KEY = ("log", "mode")
MODES = ("fast", "safe", "slow")
GOAL = 3.0


def git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "CONFIGCTL_"))}
    env.update(
        GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@example.invalid",
        GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@example.invalid",
        GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_SYSTEM=os.devnull, NO_COLOR="1",
        CONFIGCTL_ACTOR="bench",
    )  # fmt: skip
    return env


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=repo, env=git_env(), capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


# --------------------------------------------------------------------------- the repository


def _drop_key(text: str, group: str, key: str) -> str:
    """Remove ``key`` from the top-level mapping ``group`` of a generated values file."""
    out: list[str] = []
    current = None
    for line in text.splitlines(keepends=True):
        if line and not line.startswith((" ", "#")):
            current = line.split(":", 1)[0]
        if current == group and line.startswith(f"  {key}:"):
            continue
        out.append(line)
    return "".join(out)


def _set_key(text: str, group: str, key: str, value: Callable[[str], str]) -> str:
    """Replace the value of ``group.key`` with ``value(old text)``."""
    out: list[str] = []
    current = None
    done = False
    for line in text.splitlines(keepends=True):
        if line and not line.startswith((" ", "#")):
            current = line.split(":", 1)[0]
        if current == group and line.startswith(f"  {key}:") and not done:
            line = f"  {key}: {value(line.split(':', 1)[1].strip())}\n"
            done = True
        out.append(line)
    if not done:
        raise ValueError(f"{group}.{key} not found")
    return "".join(out)


def _fixed(value: str, _old: str) -> str:
    return value


def _next_mode(old: str) -> str:
    return MODES[(MODES.index(old) + 1) % len(MODES)]


@dataclass
class Repo:
    n: int
    path: Path
    base: str
    chain: list[tuple[str, str, str]] = field(default_factory=list)
    """(kind, sha, parent sha) in commit order: kind is "app" or "global"."""


def build_repo(root: Path, n: int, rounds: int) -> Repo:
    """The generated tree (global log.mode reaching every pair), committed, plus ``rounds``
    pairs of commits (app, global) on top."""
    path = root / f"n{n}"
    gen_tree.generate(path, n, inject=False)
    group, key = GLOBAL_KEY
    overriders = [*(path / "environments").glob("*.yaml"), *(path / "apps").glob("*/envs/*.yaml")]
    for file in overriders:
        file.write_text(_drop_key(file.read_text(), group, key))
    (path / ".gitignore").write_text(".configctl/\n")
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", f"generated tree, {n} apps")
    repo = Repo(n=n, path=path, base=git(path, "rev-parse", "HEAD"))
    parent = repo.base
    for i in range(rounds):
        app_file = path / APP_FILE
        app_file.write_text(_set_key(app_file.read_text(), "svc", "port", functools.partial(_fixed, str(20000 + i))))
        git(path, "commit", "-q", "-am", f"app-0005 prod: svc.port {20000 + i}")
        sha = git(path, "rev-parse", "HEAD")
        repo.chain.append(("app", sha, parent))
        parent = sha
        global_file = path / "global.yaml"
        global_file.write_text(_set_key(global_file.read_text(), group, key, _next_mode))
        git(path, "commit", "-q", "-am", f"global: {group}.{key}, round {i}")
        sha = git(path, "rev-parse", "HEAD")
        repo.chain.append(("global", sha, parent))
        parent = sha
    return repo


# --------------------------------------------------------------------------- stores


class Stores:
    """Fresh stores on demand: SQLite files in a temporary folder, PostgreSQL scratch databases."""

    def __init__(self, tmp: Path, pg_url: str) -> None:
        self.tmp = tmp
        self.pg_url = pg_url
        self.databases: list[str] = []

    def _pg(self, sql: str) -> None:
        import psycopg

        admin = re.sub(r"^postgresql\+psycopg://", "postgresql://", self.pg_url)
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.encode())  # fixed text; the names are ours

    def fresh(self, backend: str) -> str:
        """A new empty, migrated store; its URL as a user passes it to --db."""
        from configctl.adapters.store import SqlStore

        name = f"configctl_bench_{uuid.uuid4().hex[:10]}"
        if backend == "sqlite":
            url = f"sqlite:///{self.tmp / (name + '.db')}"
        else:
            self._pg(f'CREATE DATABASE "{name}"')
            self.databases.append(name)
            url = re.sub(r"/[^/]*$", f"/{name}", self.pg_url)
        store = SqlStore(url)
        try:
            store.upgrade()
        finally:
            store.close()
        return url

    def drop_all(self) -> None:
        for name in self.databases:
            with contextlib.suppress(Exception):
                self._pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.databases.clear()


# --------------------------------------------------------------------------- measurements


@dataclass
class Sample:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def add(self, wall: float, cpu: float) -> None:
        self.wall.append(wall)
        self.cpu.append(cpu)

    @property
    def median(self) -> float:
        return statistics.median(self.wall) if self.wall else float("nan")

    def cell(self) -> str:
        if not self.wall:
            return "-"
        return f"{self.median:.3f} s (cpu {statistics.median(self.cpu):.3f})"


def run_process(repo: Repo, url: str, sha: str) -> tuple[float, float, dict[str, Any]]:
    """`configctl apply --rev SHA` in a new process: wall and CPU seconds, and its JSON."""
    import json

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(
        [*CONFIGCTL, "apply", "--rev", sha, "--repo", str(repo.path), "--db", url, "--output", "json"],
        env=git_env(), capture_output=True, text=True, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"configctl apply failed ({done.returncode}):\n{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, json.loads(done.stdout)


class InProcess:
    """`apply_snapshot` the way the command wires it, called in this process."""

    def __init__(self, repo: Repo) -> None:
        from configctl.adapters import schemas
        from configctl.adapters.git import GitSource

        self.repo = repo
        self.git = GitSource(repo.path)
        self.file_schemas = schemas.file_schemas()

    def evaluator(self) -> Any:
        from configctl.services.resolution import Evaluator

        return Evaluator(file_schemas=self.file_schemas)

    def warm(self, url: str, sha: str) -> Any:
        """An evaluator that has applied ``sha`` (the parent of the commit to apply), as the
        reconciler's has: parse, schema and pair caches, checksums included."""
        evaluator = self.evaluator()
        self.apply(url, sha, evaluator, dry_run=True)
        return evaluator

    def baseline(self, sha: str) -> Any:
        """What `configctl apply` passes: the tree of the last applied commit."""
        from configctl.services.apply import Baseline

        return Baseline(commit=sha, files=self.git.read_tree(sha))

    def apply(
        self,
        url: str,
        sha: str,
        evaluator: Any,
        *,
        baseline: Any = None,
        dry_run: bool = False,
        wrap: Callable[[Callable[[], Any]], Any] | None = None,
    ) -> tuple[float, float, Any]:
        from configctl.adapters.store import SqlStore
        from configctl.services.apply import apply_snapshot

        files = self.git.read_tree(sha)
        commit = self.git.commit_info(sha)
        store = SqlStore(url)

        def call() -> Any:
            return apply_snapshot(
                store=store, files=files, commit=commit, evaluator=evaluator, actor="bench",
                host="bench", now=lambda: datetime.now(UTC), baseline=baseline, dry_run=dry_run,
            )  # fmt: skip

        try:
            c0, t0 = time.process_time(), time.perf_counter()
            result = wrap(call) if wrap is not None else call()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        finally:
            store.close()
        if result.status != ("planned" if dry_run else "applied"):
            raise SystemExit(f"apply_snapshot: {result.status} for {sha}")
        return wall, cpu, result


@dataclass
class Row:
    n: int
    backend: str
    scenario: str
    process: Sample = field(default_factory=Sample)
    cold: Sample = field(default_factory=Sample)
    warm: Sample = field(default_factory=Sample)
    versions: set[int] = field(default_factory=set)


def measure(
    repo: Repo, backend: str, stores: Stores, runs: int, log: Callable[[str], None], *, initial_only: bool = False
) -> list[Row]:
    inproc = InProcess(repo)
    pairs = 3 * repo.n
    initial = Row(repo.n, backend, "initial (whole tree)")
    for i in range(runs):
        url = stores.fresh(backend)
        wall, cpu, out = run_process(repo, url, repo.base)
        initial.process.add(wall, cpu)
        initial.versions.add(sum(1 for v in out["versions"] if v["version"] is not None))
        wall, cpu, _ = inproc.apply(stores.fresh(backend), repo.base, inproc.evaluator())
        initial.cold.add(wall, cpu)
        log(f"  N={repo.n} {backend} initial run {i + 1}: process {initial.process.wall[-1]:.2f} s, apply_snapshot {wall:.2f} s")
    if backend == "postgresql":
        stores.drop_all()
    if initial_only:
        return [initial]

    # one store follows the chain; each (app, global) pair of commits is applied by one mode
    url = stores.fresh(backend)
    run_process(repo, url, repo.base)
    rows = {"app": Row(repo.n, backend, "one key, one app env file"), "global": Row(repo.n, backend, "one key in global.yaml")}
    modes = ("process", "cold", "warm")
    for index, (kind, sha, parent) in enumerate(repo.chain):
        mode = modes[(index // 2) % 3]
        row = rows[kind]
        if mode == "process":
            wall, cpu, out = run_process(repo, url, sha)
            row.process.add(wall, cpu)
            row.versions.add(sum(1 for v in out["versions"] if v["version"] is not None))
        else:
            if mode == "warm":  # the reconciler: a warm evaluator, no baseline
                wall, cpu, result = inproc.apply(url, sha, inproc.warm(url, parent))
            else:  # the command: a fresh evaluator and the last applied commit's tree
                wall, cpu, result = inproc.apply(url, sha, inproc.evaluator(), baseline=inproc.baseline(parent))
            getattr(row, mode).add(wall, cpu)
            row.versions.add(result.new_versions)
    for row in rows.values():
        log(f"  N={repo.n} {backend} {row.scenario}: process {row.process.median:.3f} s, cold {row.cold.median:.3f} s, warm {row.warm.median:.3f} s")
    # the figures are only worth something if each commit did what it should
    expected = {"initial": ({pairs}, initial.versions), "app": ({1}, rows["app"].versions), "global": ({pairs}, rows["global"].versions)}
    for what, (want, got) in expected.items():
        if got != want:
            raise SystemExit(f"N={repo.n} {backend} {what}: new versions {sorted(got)}, expected {sorted(want)}")
    if backend == "postgresql":
        stores.drop_all()
    return [initial, rows["app"], rows["global"]]


def profile_app_change(repo: Repo, backend: str, stores: Stores, top: int, *, full: bool = False) -> str:
    """cProfile of one cold `apply_snapshot` of a one-key app change at this size (as the
    command calls it, with the baseline; ``full``: without, evaluating the whole tree)."""
    inproc = InProcess(repo)
    url = stores.fresh(backend)
    run_process(repo, url, repo.base)
    _kind, sha, parent = repo.chain[0]  # the first commit of the chain changes one app key
    profiler = cProfile.Profile()

    def wrap(call: Callable[[], Any]) -> Any:
        return profiler.runcall(call)

    if full:
        wall, _cpu, _ = inproc.apply(url, sha, inproc.evaluator(), wrap=wrap)
    else:
        wall, _cpu, _ = inproc.apply(url, sha, inproc.evaluator(), baseline=inproc.baseline(parent), wrap=wrap)
    buffer = io.StringIO()
    stats = pstats.Stats(profiler, stream=buffer)
    stats.sort_stats("cumulative").print_stats(top)
    if backend == "postgresql":
        stores.drop_all()
    how = "whole tree, no baseline" if full else "with the baseline, as the command"
    return f"cold apply_snapshot of one app key at N={repo.n} on {backend} ({how}): {wall:.3f} s under cProfile\n" + buffer.getvalue()


# --------------------------------------------------------------------------- report


# The steps of a first apply, as (module path suffix, function): their cumulative time in
# a profile is the split --profile-initial prints above the busiest functions.
STEPS = (
    ("parse, tree", "configctl/core/tree.py", "build"),
    ("  of which YAML parse", "configctl/core/parse.py", "parse"),
    ("validation, resolution", "configctl/core/validate.py", "evaluate"),
    ("checksums", "configctl/services/apply.py", "_checksums"),
    ("secret keys", "configctl/services/resolution.py", "secret_keys"),
    ("plan (key changes)", "configctl/core/plan.py", "plan_apply"),
    ("store: versions, key changes, outbox, audit", "configctl/services/record.py", "record_versions"),
    ("  of which add_versions", "configctl/adapters/store/store.py", "add_versions"),
    ("whole apply_snapshot", "configctl/services/apply.py", "apply_snapshot"),
)


def step_split(stats: pstats.Stats) -> str:
    """Cumulative seconds of each step of :data:`STEPS` in a profile (profiled time: a
    Python-heavy step is inflated more than one spent in C or in the database)."""
    table: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]  # pstats keeps it untyped
    lines = []
    for label, path, name in STEPS:
        total = sum(v[3] for (file, _line, func), v in table.items() if func == name and file.endswith(path))
        lines.append(f"  {label:<46} {total:7.3f} s")
    return "step split (cumulative, under cProfile):\n" + "\n".join(lines) + "\n\n"


def profile_initial(repo: Repo, backend: str, stores: Stores, top: int) -> str:
    """cProfile of the first `apply_snapshot` of the whole tree into an empty store."""
    inproc = InProcess(repo)
    profiler = cProfile.Profile()

    def wrap(call: Callable[[], Any]) -> Any:
        return profiler.runcall(call)

    wall, _cpu, _ = inproc.apply(stores.fresh(backend), repo.base, inproc.evaluator(), wrap=wrap)
    buffer = io.StringIO()
    stats = pstats.Stats(profiler, stream=buffer)
    buffer.write(step_split(stats))
    stats.sort_stats("tottime").print_stats(top)
    if backend == "postgresql":
        stores.drop_all()
    return f"cold apply_snapshot of the whole tree (first apply) at N={repo.n} on {backend}: {wall:.3f} s under cProfile\n" + buffer.getvalue()


def table(rows: list[Row]) -> str:
    lines = [
        "| N apps | store | commit | new versions | `configctl apply` process | `apply_snapshot` cold | `apply_snapshot` warm |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        versions = ",".join(str(v) for v in sorted(r.versions))
        lines.append(
            f"| {r.n:,} | {r.backend} | {r.scenario} | {versions} | {r.process.cell()} | {r.cold.cell()} | {r.warm.cell()} |"
        )
    return "\n".join(lines)


def ratios(rows: list[Row], small: int, large: int) -> str:
    lines = [
        f"| store | measure | N={small:,} | N={large:,} | ratio | goal < {GOAL:g}x |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for backend in sorted({r.backend for r in rows}):
        by_n = {r.n: r for r in rows if r.backend == backend and r.scenario.startswith("one key, one app")}
        if small not in by_n or large not in by_n:
            continue
        for label, attr in (("process", "process"), ("apply_snapshot cold", "cold"), ("apply_snapshot warm", "warm")):
            a = getattr(by_n[small], attr).median
            b = getattr(by_n[large], attr).median
            ratio = b / a if a else float("inf")
            lines.append(
                f"| {backend} | {label} | {a:.3f} s | {b:.3f} s | {ratio:.1f}x | {'met' if ratio < GOAL else 'MISSED'} |"
            )
    return "\n".join(lines)


@contextlib.contextmanager
def workdir(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    path = Path(tempfile.mkdtemp(prefix="configctl-bench-apply-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,1000", help="comma-separated numbers of apps (default 10,1000)")
    parser.add_argument("--runs", type=int, default=5, help="runs per figure; the median is reported (default 5)")
    parser.add_argument("--db", default="sqlite,postgresql", help="stores to measure: sqlite, postgresql or both")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("CONFIGCTL_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="an admin URL of a PostgreSQL server; a scratch database is created and dropped",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile one cold one-key app change at the largest N")
    parser.add_argument(
        "--initial-only", action="store_true", help="measure only the first apply of the whole tree (no commit chain)"
    )
    parser.add_argument(
        "--profile-initial", action="store_true", help="cProfile the first apply of the whole tree at the largest N"
    )
    parser.add_argument("--keep", type=Path, default=None, help="build the repositories here and keep them")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    backends = [b.strip() for b in args.db.split(",") if b.strip()]
    for b in backends:
        if b not in ("sqlite", "postgresql"):
            parser.error(f"--db: unknown store {b!r}")
    if min(sizes) < 10:
        parser.error("--sizes: at least 10 apps (the changed app is app-0005)")

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    rounds = 0 if args.initial_only else 3 * args.runs  # every mode (process, cold, warm) gets `runs` app and global commits
    rows: list[Row] = []
    profiles: list[str] = []
    with workdir(args.keep) as tmp:
        stores = Stores(tmp, args.pg_url)
        try:
            for n in sizes:
                log(f"building the N={n} repository ({rounds * 2 + 1} commits)")
                repo = build_repo(tmp, n, rounds)
                for backend in backends:
                    rows.extend(measure(repo, backend, stores, args.runs, log, initial_only=args.initial_only))
                    if args.profile_initial and n == max(sizes):
                        profiles.append(profile_initial(repo, backend, stores, 30))
                    if args.profile and n == max(sizes) and not args.initial_only:
                        profiles.append(profile_app_change(repo, backend, stores, 25))
                        profiles.append(profile_app_change(repo, backend, stores, 25, full=True))
        finally:
            stores.drop_all()
    print(f"## configctl apply: {args.runs} runs per figure (median; CPU = user + system)\n")
    print(table(rows))
    if len(sizes) > 1:
        print(f"\n### one-key app change, N={sizes[-1]:,} against N={sizes[0]:,}\n")
        print(ratios(rows, sizes[0], sizes[-1]))
    for p in profiles:
        print("\n```\n" + p.rstrip() + "\n```")


if __name__ == "__main__":
    main()
