"""Benchmark `configctl validate` against the floor and check-jsonschema, side by side.

For each size N (apps; three environments each) it generates a synthetic repository with
``bench/gen_tree.py`` (ten injected errors at known file:line), checks that
``configctl validate --format json`` reports every injected error with its file, line and
rule, then times, interleaved round by round, the median of ``--runs`` runs of:

* ``configctl validate TREE --format json`` (the real command, a new process each run);
* the floor, ``bench/floor_validate.py``: PyYAML's libyaml loader, a plain four-layer
  merge and one cached validator per app schema, with ``jsonschema`` and with
  ``jsonschema-rs`` (the faster reference);
* ``check-jsonschema --schemafile schemas/v1/values.schema.json`` over every values file
  of the tree, in one call (it checks each file alone: no layering, no app schemas).

Then start-up: ``configctl --version`` against ``python -c 'import typer, rich'``.

It prints Markdown tables with the ratios and whether the goals are met (at the largest
N: configctl within 1.5x of the faster floor and at least 5x faster than
check-jsonschema; start-up within 1.5x). Exit status 1 when an injected error is missing.

    python bench/validate.py                       # N = 100 and 1,000, 5 runs each
    python bench/validate.py --sizes 100 --runs 3  # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import gen_tree  # noqa: E402 - a sibling script, importable once bench/ is on the path

BIN = Path(sys.executable).parent
VALUES_SCHEMA = ROOT / "schemas" / "v1" / "values.schema.json"


def _tool(name: str) -> str:
    local = BIN / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} not found next to {sys.executable} or on PATH")
    return found


@dataclass
class Timing:
    label: str
    argv: list[str]
    expect: tuple[int, ...]
    samples: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    """user + system CPU seconds of the process: steadier than wall clock on a busy machine."""

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)

    def cell(self) -> str:
        return f"{self.median:.2f} s ({min(self.samples):.2f}–{max(self.samples):.2f})"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(t: Timing, cwd: Path) -> None:
    cpu_before = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.run(
        t.argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
    )
    elapsed = time.perf_counter() - start
    t.cpu.append(_children_cpu() - cpu_before)
    if proc.returncode not in t.expect:
        sys.stderr.write(proc.stderr.decode(errors="replace")[-2000:])
        raise SystemExit(f"{t.label}: exit code {proc.returncode}, expected one of {t.expect}")
    t.samples.append(elapsed)


def check_injected(
    configctl: str, tree: Path, injected: Sequence[gen_tree.Injected]
) -> tuple[int, list[str]]:
    """Run configctl once; return (number of injected errors found, problems)."""
    proc = subprocess.run(
        [configctl, "validate", str(tree), "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    problems: list[str] = []
    if proc.returncode != 1:
        problems.append(f"exit code {proc.returncode}, expected 1")
    if "Traceback" in proc.stderr:
        problems.append("a traceback on stderr")
    report = json.loads(proc.stdout)
    reported = {(e["file"], e["line"], e["rule"]) for e in report["errors"]}
    found = 0
    for e in injected:
        if (e.file, e.line, e.rule) in reported:
            found += 1
        else:
            problems.append(f"not reported: {e.file}:{e.line} [{e.rule}] ({e.what})")
    expected = {(e.file, e.line, e.rule) for e in injected}
    for extra in sorted(reported - expected):
        problems.append(f"reported but not injected: {extra[0]}:{extra[1]} [{extra[2]}]")
    return found, problems


def versions() -> str:
    out = []
    for dist in (
        "configctl",
        "PyYAML",
        "jsonschema",
        "jsonschema-rs",
        "check-jsonschema",
        "typer",
        "rich",
    ):
        try:
            out.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            out.append(f"{dist} (not installed)")
    return ", ".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default="100,1000", help="comma-separated app counts (default 100,1000)"
    )
    parser.add_argument(
        "--runs", type=int, default=5, help="timed runs per command and size (default 5)"
    )
    parser.add_argument(
        "--startup-runs",
        type=int,
        default=0,
        help="runs of the start-up pair (default max(runs, 10))",
    )
    parser.add_argument(
        "--out", type=Path, default=BENCH / "out", help="where trees are generated (git-ignored)"
    )
    parser.add_argument(
        "--no-check-jsonschema", action="store_true", help="skip the check-jsonschema column"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    configctl = _tool("configctl")
    py = sys.executable
    check_js = None if args.no_check_jsonschema else _tool("check-jsonschema")
    ok = True
    rows: list[str] = []
    cpu_rows: list[str] = []
    load_before = os.getloadavg()
    results: dict[int, dict[str, Timing]] = {}
    notes: list[str] = []

    for n in sizes:
        tree = args.out / f"n{n}"
        injected = gen_tree.generate(tree, n)
        n_files = sum(1 for p in tree.rglob("*") if p.is_file())
        values = gen_tree.values_files(tree)
        found, problems = check_injected(configctl, tree, injected)
        if problems:
            ok = False
            notes.extend(f"N={n}: {p}" for p in problems)
        timings = {
            "configctl": Timing(
                "configctl validate", [configctl, "validate", str(tree), "--format", "json"], (1,)
            ),
            "floor-py": Timing(
                "floor (jsonschema)",
                [py, str(BENCH / "floor_validate.py"), str(tree), "--impl", "jsonschema"],
                (0,),
            ),
            "floor-rs": Timing(
                "floor (jsonschema-rs)",
                [py, str(BENCH / "floor_validate.py"), str(tree), "--impl", "rs"],
                (0,),
            ),
        }
        if check_js is not None:
            # relative paths keep the command line short; one call over every values file
            rel = [str(p.relative_to(tree)) for p in values]
            timings["check-jsonschema"] = Timing(
                "check-jsonschema", [check_js, "--schemafile", str(VALUES_SCHEMA), *rel], (0, 1)
            )
        for r in range(args.runs):
            for t in timings.values():
                run_once(t, tree)
            sys.stderr.write(f"N={n}: run {r + 1}/{args.runs} done\n")
        results[n] = timings
        cc = timings["configctl"].median
        faster_floor = min(timings["floor-py"].median, timings["floor-rs"].median)
        cj = timings["check-jsonschema"].cell() if "check-jsonschema" in timings else "skipped"
        cj_ratio = (
            f"{timings['check-jsonschema'].median / cc:.1f}×"
            if "check-jsonschema" in timings
            else "–"
        )
        rows.append(
            f"| {n:,} | {n_files:,} | {len(values):,} | {timings['configctl'].cell()} | "
            f"{timings['floor-py'].cell()} | {timings['floor-rs'].cell()} | {cj} | "
            f"{cc / faster_floor:.2f}× | {cj_ratio} | {found}/{len(injected)} |"
        )
        c_cc = timings["configctl"].cpu_median
        c_floor = min(timings["floor-py"].cpu_median, timings["floor-rs"].cpu_median)
        c_cj = timings["check-jsonschema"].cpu_median if "check-jsonschema" in timings else None
        cpu_rows.append(
            f"| {n:,} | {c_cc:.2f} s | {timings['floor-py'].cpu_median:.2f} s | "
            f"{timings['floor-rs'].cpu_median:.2f} s | {f'{c_cj:.2f} s' if c_cj is not None else 'skipped'} | "
            f"{c_cc / c_floor:.2f}× | {f'{c_cj / c_cc:.1f}×' if c_cj is not None else '–'} |"
        )

    # start-up
    s_runs = args.startup_runs or max(args.runs, 10)
    start_cc = Timing("configctl --version", [configctl, "--version"], (0,))
    start_imp = Timing("python -c 'import typer, rich'", [py, "-c", "import typer, rich"], (0,))
    for _ in range(s_runs):
        run_once(start_cc, ROOT)
        run_once(start_imp, ROOT)

    load_after = os.getloadavg()
    print(
        f"\n{platform.python_implementation()} {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {load_before[0]:.1f} before and {load_after[0]:.1f} after; "
        f"{versions()}"
    )
    print(f"medians of {args.runs} runs (min–max in brackets), wall clock, each a new process\n")
    print(
        "| N apps | files | values files | configctl validate | floor (jsonschema) | floor (jsonschema-rs) "
        "| check-jsonschema (1 call) | configctl ÷ faster floor | check-jsonschema ÷ configctl | injected errors reported |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(row)
    print(f"\nCPU time (user + system) of the same runs, medians of {args.runs}\n")
    print(
        "| N apps | configctl validate | floor (jsonschema) | floor (jsonschema-rs) | check-jsonschema "
        "| configctl ÷ faster floor | check-jsonschema ÷ configctl |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for row in cpu_rows:
        print(row)
    ratio = start_cc.median / start_imp.median
    print(f"\nstart-up, medians of {s_runs} runs\n")
    print("| command | median | ratio |")
    print("|---|---:|---:|")
    print(f"| `configctl --version` | {start_cc.cell()} | {ratio:.2f}× |")
    print(f"| `python -c 'import typer, rich'` | {start_imp.cell()} | 1.00× |")

    largest = max(sizes)
    final = results[largest]
    cc = final["configctl"].median
    faster_floor = min(final["floor-py"].median, final["floor-rs"].median)
    print(f"\ngoals at N = {largest:,}:")
    print(
        f"- configctl within 1.5× of the faster floor: {cc / faster_floor:.2f}× -> "
        f"{'met' if cc <= 1.5 * faster_floor else 'NOT met'}"
    )
    if "check-jsonschema" in final:
        speedup = final["check-jsonschema"].median / cc
        print(
            f"- at least 5× faster than check-jsonschema: {speedup:.1f}× -> {'met' if speedup >= 5 else 'NOT met'}"
        )
    print(
        f"- start-up within 1.5× of importing typer and rich: {ratio:.2f}× -> {'met' if ratio <= 1.5 else 'NOT met'}"
    )
    print(f"- every injected error reported with file and line: {'yes' if ok else 'NO'}")
    for note in notes:
        print(f"  - {note}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
