"""Generate a synthetic config repository for the validation benchmark.

Shape (``N`` apps, three environments ``dev``, ``staging``, ``prod``):

* ``configctl.yaml``, ``global.yaml`` (50 platform keys), ``environments/<env>.yaml``
  (50 keys each, overriding every platform key);
* per app: ``app.yaml``, ``schema.json`` (its own schema: 20 groups of 5 typed keys,
  ``additionalProperties: false`` at every level), ``values.yaml`` (50 app keys) and
  ``envs/prod.yaml`` always, ``envs/staging.yaml`` / ``envs/dev.yaml`` for two apps in three
  (40 app keys and 10 platform keys each, all overrides).

That is about 5.33 files per app: 5,338 files at N = 1,000 (3,339 of them values files).

Ten errors are injected at known places (one app each, spread over the tree) so the
benchmark can check that ``configctl validate`` reports every one of them with its file
and line: :func:`generate` returns them as ``(file, line, rule)``.

Run directly to write a tree: ``python bench/gen_tree.py OUT_DIR --apps 100``.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

ENVIRONMENTS = ("dev", "staging", "prod")
PLATFORM_GROUPS = (
    "log",
    "http",
    "metrics",
    "tracing",
    "retry",
    "limits",
    "tls",
    "proxy",
    "dns",
    "pool",
)
APP_GROUPS = ("svc", "db", "cache", "queue", "worker", "api", "auth", "search", "storage", "jobs")
MODES = ("fast", "safe", "slow")
# key name -> JSON Schema; five keys per group, five lines per group plus its header
KEYS = ("enabled", "port", "host", "timeout", "mode")


@dataclass(frozen=True, slots=True)
class Injected:
    """An error the generator put in the tree, and what configctl must report for it."""

    file: str
    line: int
    rule: str
    what: str


def app_name(i: int) -> str:
    return f"app-{i:04d}"


def _schema(i: int) -> dict[str, object]:
    """The value schema of app ``i``: every group an object of five typed keys."""

    def group(max_port: int) -> dict[str, object]:
        return {
            "type": "object",
            "additionalProperties": False,
            "required": ["enabled", "port"],
            "properties": {
                "enabled": {"type": "boolean"},
                "port": {"type": "integer", "minimum": 1, "maximum": max_port},
                "host": {"type": "string", "minLength": 1},
                "timeout": {"type": "number", "minimum": 0, "maximum": 600},
                "mode": {"enum": list(MODES)},
            },
        }

    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://bench.invalid/{app_name(i)}.json",
        "title": f"values of {app_name(i)}",
        "type": "object",
        "additionalProperties": False,
        "required": ["svc", "log"],
        "properties": {
            **{g: group(65535) for g in PLATFORM_GROUPS},
            # the app's own groups: a per-app port ceiling makes every schema distinct
            **{g: group(60000 + i % 5000) for g in APP_GROUPS},
        },
    }


def _group_lines(group: str, rng: random.Random, who: str) -> list[str]:
    return [
        f"{group}:",
        f"  enabled: {rng.choice(('true', 'false'))}",
        f"  port: {rng.randint(1024, 59999)}",
        f"  host: {group}.{who}.internal",
        f"  timeout: {rng.randint(1, 3000) / 10}",
        f"  mode: {rng.choice(MODES)}",
    ]


def _values(groups: tuple[str, ...], rng: random.Random, who: str) -> list[str]:
    lines = [f"# values of {who} (generated)"]
    for g in groups:
        lines.extend(_group_lines(g, rng, who))
    return lines


def _line_of(lines: list[str], group: str, key: str) -> int:
    """1-based line of ``key`` inside ``group`` in a generated values file."""
    start = lines.index(f"{group}:")
    for j in range(start + 1, len(lines)):
        if lines[j].startswith(f"  {key}:"):
            return j + 1
    raise KeyError((group, key))


def _write(path: Path, lines: list[str] | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = lines if isinstance(lines, str) else "\n".join(lines) + "\n"
    path.write_text(text, encoding="utf-8")


def generate(root: Path, n_apps: int, *, seed: int = 0, inject: bool = True) -> list[Injected]:
    """Write the tree under ``root`` (emptied first); return the injected errors."""
    if n_apps < 10 and inject:
        raise ValueError("at least 10 apps are needed to place the 10 injected errors")
    if root.exists():
        shutil.rmtree(root)
    rng = random.Random(seed)
    _write(
        root / "configctl.yaml",
        ["version: 1", f"environments: [{', '.join(ENVIRONMENTS)}]", "description: benchmark tree"],
    )
    _write(root / "global.yaml", _values(PLATFORM_GROUPS, rng, "global"))
    for env in ENVIRONMENTS:
        _write(root / "environments" / f"{env}.yaml", _values(PLATFORM_GROUPS, rng, env))

    # app index -> what to break in it; spread over the tree
    targets = {k: k * n_apps // 10 for k in range(10)} if inject else {}
    broken = {v: k for k, v in targets.items()}
    injected: list[Injected] = []

    for i in range(n_apps):
        name = app_name(i)
        base = root / "apps" / name
        rel = f"apps/{name}"
        kind = broken.get(i)
        files: dict[str, list[str]] = {}
        files["values.yaml"] = _values(APP_GROUPS, rng, name)
        env_files = ["prod"] + [e for e, skip in (("staging", 0), ("dev", 1)) if i % 3 != skip]
        if kind in (1, 3):
            env_files = sorted({*env_files, "prod"})
        if kind == 9:
            env_files = sorted({*env_files, "dev"})
        if kind == 7:  # the app layer's bad value must stay in service somewhere: no dev override
            env_files = [e for e in env_files if e != "dev"]
        for env in env_files:
            lines = [f"# {name} in {env} (generated)"]
            for g in APP_GROUPS[:8]:
                lines.extend(_group_lines(g, rng, f"{name}-{env}"))
            for g in PLATFORM_GROUPS[:2]:
                lines.extend(_group_lines(g, rng, f"{name}-{env}"))
            files[f"envs/{env}.yaml"] = lines

        values = files["values.yaml"]
        if kind == 0:  # a duplicate key: reported at the second occurrence
            at = _line_of(values, "svc", "port")
            values.insert(at, "  port: 9090")
            injected.append(
                Injected(f"{rel}/values.yaml", at + 1, "duplicate-key", "duplicate key")
            )
        elif kind == 1:  # a string where the schema wants an integer, set by the app-env layer
            prod = files["envs/prod.yaml"]
            at = _line_of(prod, "db", "port")
            prod[at - 1] = "  port: eighty"
            injected.append(Injected(f"{rel}/envs/prod.yaml", at, "schema", "type error"))
        elif kind == 2:  # a typo'd key: unknown-key with a did-you-mean
            at = _line_of(values, "worker", "timeout")
            values[at - 1] = values[at - 1].replace("timeout", "timout")
            injected.append(Injected(f"{rel}/values.yaml", at, "unknown-key", "unknown key"))
        elif kind == 3:  # YAML 1.1: `no` read as false where a string is expected
            prod = files["envs/prod.yaml"]
            at = _line_of(prod, "api", "host")
            prod[at - 1] = "  host: no"
            injected.append(
                Injected(f"{rel}/envs/prod.yaml", at, "schema", "`no` read as a boolean")
            )
        elif kind == 4:  # an environment nobody declared
            files["envs/qa.yaml"] = ["svc:", "  port: 8080"]
            injected.append(
                Injected(f"{rel}/envs/qa.yaml", 1, "undeclared-environment", "undeclared env")
            )
        elif kind == 5:  # NaN
            at = _line_of(values, "cache", "timeout")
            values[at - 1] = "  timeout: .nan"
            injected.append(Injected(f"{rel}/values.yaml", at, "non-finite-number", "NaN"))
        elif kind == 6:  # a key with a dot
            at = _line_of(values, "queue", "mode") + 1
            values.insert(at - 1, "  max.conns: 5")
            injected.append(Injected(f"{rel}/values.yaml", at, "key-dot", "dotted key"))
        elif kind == 7:  # an enum violation set by the app layer
            at = _line_of(values, "search", "mode")
            values[at - 1] = "  mode: turbo"
            injected.append(Injected(f"{rel}/values.yaml", at, "schema", "enum"))
        elif kind == 9:  # an unknown tag
            dev = files["envs/dev.yaml"]
            at = _line_of(dev, "auth", "enabled")
            dev[at - 1] = "  enabled: !Ref flag"
            injected.append(Injected(f"{rel}/envs/dev.yaml", at, "unknown-tag", "unknown tag"))

        for rel_file, lines in files.items():
            _write(base / rel_file, lines)
        if kind == 8:  # an app folder without app.yaml
            injected.append(Injected(f"{rel}/app.yaml", 1, "missing-app-manifest", "no app.yaml"))
        else:
            _write(
                base / "app.yaml",
                [f"description: synthetic app {i}", "owners: [team-bench]", "schema: schema.json"],
            )
        _write(base / "schema.json", json.dumps(_schema(i), indent=2))
    return sorted(injected, key=lambda e: (e.file, e.line))


def values_files(root: Path) -> list[Path]:
    """Every values layer of a generated tree (what check-jsonschema is given)."""
    out = [root / "global.yaml", *sorted((root / "environments").glob("*.yaml"))]
    for app in sorted((root / "apps").iterdir()):
        if (app / "values.yaml").exists():
            out.append(app / "values.yaml")
        out.extend(sorted((app / "envs").glob("*.yaml")))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--apps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-errors", action="store_true", help="generate a valid tree")
    args = parser.parse_args()
    injected = generate(args.out, args.apps, seed=args.seed, inject=not args.no_errors)
    n_files = sum(1 for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {n_files} files to {args.out}")
    for e in injected:
        print(f"  {e.file}:{e.line} [{e.rule}] {e.what}")


if __name__ == "__main__":
    main()
