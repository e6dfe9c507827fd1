"""Locate and load configctl's own JSON Schemas (the file kinds of a config repository).

Order: ``CONFIGCTL_SCHEMAS_DIR`` → the copy packaged in the wheel (``configctl/_schemas``)
→ the repository's ``schemas/`` when running from a checkout (editable installs do not
contain force-included files). Schemas are keyed by their ``$id``.
"""

from __future__ import annotations

import json
import os
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from configctl.errors import UsageError


def _candidates() -> list[Traversable]:
    out: list[Traversable] = []
    env = os.environ.get("CONFIGCTL_SCHEMAS_DIR")
    if env:
        out.append(Path(env))
    packaged = resources.files("configctl").joinpath("_schemas")
    out.append(packaged)
    out.append(Path(__file__).resolve().parents[3] / "schemas")
    return out


def schemas_root() -> Traversable:
    for root in _candidates():
        if root.is_dir():
            return root
    raise UsageError("configctl's JSON Schemas are missing from this installation", hint="reinstall configctl")


def _walk(root: Traversable, prefix: str = "") -> list[tuple[str, Traversable]]:
    out: list[tuple[str, Traversable]] = []
    for child in sorted(root.iterdir(), key=lambda c: c.name):
        rel = f"{prefix}{child.name}"
        if child.is_dir():
            out.extend(_walk(child, rel + "/"))
        elif child.name.endswith(".json"):
            out.append((rel, child))
    return out


@cache
def schema_files() -> tuple[tuple[str, str], ...]:
    """``(relative path, text)`` of every shipped schema."""
    return tuple((rel, t.read_text(encoding="utf-8")) for rel, t in _walk(schemas_root()))


@cache
def _by_id() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for _, text in schema_files():
        schema = json.loads(text)
        # Data shipped beside the schemas (rollout-vectors.json) has an $id but no $schema.
        if "$schema" in schema:
            out[schema["$id"]] = schema
    return out


def file_schemas() -> dict[str, Any]:
    """Every shipped schema by ``$id``."""
    return dict(_by_id())


def export(dest: Path) -> list[Path]:
    """Write every schema under ``dest`` (keeping the ``v1/`` folders); returns the paths."""
    written: list[Path] = []
    for rel, text in schema_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written
