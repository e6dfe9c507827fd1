"""``apps/<app>/rollouts.yaml``: from the parsed file to checked definitions per environment.

The file (schema ``schemas/v1/rollouts.schema.json``) holds two mappings, ``rollouts``
(a key gets a new value for part of the traffic) and ``flags`` (named booleans), each by
name. This module turns it into the JSON form that :mod:`configctl.core.rollouts`
evaluates, one list per (app, env), and checks what a JSON Schema cannot:

- every named environment is declared in ``configctl.yaml``;
- a schedule moves forward (strictly later times, percentages never lower), a window
  ends after it starts;
- a regex rule compiles and cannot backtrack catastrophically
  (:mod:`configctl.core.regex_safety`);
- two rollouts of one key in one environment both give an explicit, distinct priority;
- each rollout value satisfies the app's schema with the value substituted into the
  resolved values of every environment it applies in (errors at the value's line).

Pure: no I/O, no clock. Every finding names the rollout file and the line of the part at
fault, and all of them are reported.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from configctl.core import regex_safety
from configctl.core import rollouts as rollouts_mod
from configctl.core.model import Finding, Severity
from configctl.core.parse import Document

__all__ = [
    "ROLLOUTS_SCHEMA_ID",
    "RolloutDef",
    "check",
    "fold_state",
    "read",
    "to_basis_points",
]

ROLLOUTS_SCHEMA_ID: Final = "https://configctl.dev/schemas/v1/rollouts.schema.json"

_JSON_FIELDS: Final = (
    "priority",
    "seed",
    "stickiness",
    "percentage",
    "schedule",
    "start",
    "end",
    "users",
    "rules",
    "canary",
    "enabled",
)
_PERCENT_RE: Final = re.compile(r"(\d{1,3}(?:\.\d{1,2})?)%")

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RolloutDef:
    """One rollout or flag as written: its JSON form (no runtime state) and where it is."""

    name: str
    kind: str
    """``value`` or ``flag``."""
    key: str | None
    environments: tuple[str, ...] | None
    """None: every environment."""
    priority: int | None
    """None when the file does not give one (then 0)."""
    entry: dict[str, object]
    path: Path
    """Path of the entry inside the document (for locations)."""


def to_basis_points(raw: object) -> object:
    """``"12.5%"`` → 1250; anything else is returned as is (the schema judges it)."""
    if isinstance(raw, str):
        m = _PERCENT_RE.fullmatch(raw.strip())
        if m is not None:
            try:
                return int(Decimal(m.group(1)) * 100)
            except InvalidOperation:  # pragma: no cover - the pattern admits only numbers
                return raw
    return raw


def _entry(name: str, kind: str, body: Mapping[str, Any]) -> dict[str, object]:
    out: dict[str, object] = {"name": name, "kind": kind}
    if kind == "value":
        out["key"] = body.get("key")
        if "value" in body:
            out["value"] = copy.deepcopy(body["value"])
    for field in _JSON_FIELDS:
        if field in body:
            out[field] = copy.deepcopy(body[field])
    if "percentage" in out:
        out["percentage"] = to_basis_points(out["percentage"])
    schedule = out.get("schedule")
    if isinstance(schedule, dict) and isinstance(schedule.get("steps"), list):
        for step in schedule["steps"]:
            if isinstance(step, dict) and "percentage" in step:
                step["percentage"] = to_basis_points(step["percentage"])
    canary = out.get("canary")
    if isinstance(canary, dict) and "percentage" in canary:
        canary["percentage"] = to_basis_points(canary["percentage"])
    return out


def read(doc: Document | None) -> list[RolloutDef]:
    """The definitions of a rollouts file, in name order (malformed entries skipped).

    Call on a file that passed its schema for a complete answer; on a broken one it
    returns what can be read, so other checks still run.
    """
    if doc is None or not isinstance(doc.value, dict):
        return []
    out: list[RolloutDef] = []
    for _section, kind, name, body, path in _entries(doc):
        envs = body.get("environments")
        priority = body.get("priority")
        out.append(
            RolloutDef(
                name=name,
                kind=kind,
                key=body.get("key")
                if kind == "value" and isinstance(body.get("key"), str)
                else None,
                environments=tuple(e for e in envs if isinstance(e, str))
                if isinstance(envs, list)
                else None,
                priority=priority
                if isinstance(priority, int) and not isinstance(priority, bool)
                else None,
                entry=_entry(name, kind, body),
                path=path,
            )
        )
    out.sort(key=lambda d: (d.kind != "value", d.name))
    return out


def _entries(doc: Document) -> list[tuple[str, str, str, dict[str, Any], Path]]:
    """(section, kind, name, body, path) of every entry, in either form of a section:
    a mapping by name, or a list of entries that each carry a ``name``."""
    out: list[tuple[str, str, str, dict[str, Any], Path]] = []
    if not isinstance(doc.value, dict):
        return out
    for section, kind in (("rollouts", "value"), ("flags", "flag")):
        group = doc.value.get(section)
        if isinstance(group, dict):
            out.extend(
                (section, kind, str(name), body, (section, name))
                for name, body in group.items()
                if isinstance(body, dict)
            )
        elif isinstance(group, list):
            out.extend(
                (section, kind, body["name"], body, (section, i))
                for i, body in enumerate(group)
                if isinstance(body, dict) and isinstance(body.get("name"), str)
            )
    return out


def applies(definition: RolloutDef, env: str) -> bool:
    return definition.environments is None or env in definition.environments


def for_env(definitions: Sequence[RolloutDef], env: str) -> list[dict[str, object]]:
    """The JSON forms (without runtime state) of the definitions that apply in ``env``."""
    return [copy.deepcopy(d.entry) for d in definitions if applies(d, env)]


def fold_state(
    entries: Sequence[Mapping[str, object]], states: Mapping[str, Mapping[str, object]]
) -> list[dict[str, object]]:
    """Entries with the runtime state of each (by name) folded in; ``active`` is left out.

    Only the fields the evaluator reads are folded (status, paused_at, shift_seconds), so
    bookkeeping in the store (the last announced stage, who acted) never changes a
    snapshot's checksum.
    """
    out: list[dict[str, object]] = []
    for entry in entries:
        item = dict(entry)
        state = states.get(str(entry.get("name")))
        if state is not None and (
            state.get("status", "active") != "active" or state.get("shift_seconds")
        ):
            item["state"] = {
                "status": state.get("status", "active"),
                "paused_at": state.get("paused_at"),
                "shift_seconds": state.get("shift_seconds", 0),
            }
        out.append(item)
    return out


# --------------------------------------------------------------------------- checks

ValueErrors = Callable[[Mapping[str, Any]], list[tuple[Path, str]]]
"""Validate resolved values against the app schema: (path, message) of each error."""


def check(
    doc: Document,
    *,
    environments: Sequence[str],
    schema_findings: list[Finding],
    values: Mapping[str, Mapping[str, Any]],
    value_errors: ValueErrors | None,
) -> list[Finding]:
    """Every finding of one rollouts file beyond ``schema_findings`` (its file-schema check).

    ``values`` maps each environment to the app's resolved values there; ``value_errors``
    checks a resolved mapping against the app's schema (None when the app has none).
    """
    findings = list(schema_findings)
    broken = {_entry_of(doc, f) for f in schema_findings}
    definitions = read(doc)
    names: dict[str, RolloutDef] = {}
    declared = set(environments)
    for d in definitions:
        loc = doc.location(d.path)
        if d.name in names:
            findings.append(
                Finding.at(
                    loc,
                    "rollout-duplicate-name",
                    f"`{d.name}` is defined more than once; rollout and flag names must be unique",
                )
            )
        names[d.name] = d
        for i, env in enumerate(d.environments or ()):
            if env not in declared:
                findings.append(
                    Finding.at(
                        doc.location((*d.path, "environments", i)),
                        "rollout-environment",
                        f"rollout `{d.name}` names environment `{env}`, which configctl.yaml does not declare",
                        hint=f"declared: {', '.join(environments) or 'none'}",
                    )
                )
        findings.extend(_check_parts(doc, d, echo=d.path not in broken))
    findings.extend(_priority_conflicts(doc, definitions, environments))
    if value_errors is not None:
        for d in definitions:
            if d.kind != "value" or d.key is None:
                continue
            findings.extend(_value_findings(doc, d, environments, values, value_errors))
    return findings


def _entry_of(doc: Document, finding: Finding) -> Path | None:
    """The (section, name) path of the entry a schema finding is in, if any."""
    best: Path | None = None
    for _section, _kind, _name, _body, path in _entries(doc):
        loc = doc.location(path)
        if (loc.file, loc.line) <= (finding.file, finding.line) and (
            best is None or doc.location(best).line <= loc.line
        ):
            best = path
    return best


def _check_parts(doc: Document, d: RolloutDef, *, echo: bool) -> list[Finding]:
    """Schedule, window and rule checks; ``echo``: also ask the evaluator (not for an
    entry with schema errors, whose complaints it would only repeat)."""
    out: list[Finding] = []
    entry = d.entry
    times: list[tuple[float, int]] = []
    schedule = entry.get("schedule")
    if isinstance(schedule, dict):
        steps = schedule.get("steps")
        for i, step in enumerate(steps if isinstance(steps, list) else []):
            if not isinstance(step, dict):
                continue
            at_path = (*d.path, "schedule", "steps", i, "at")
            try:
                t = rollouts_mod.parse_time(step.get("at"), "at")
            except ValueError as exc:
                out.append(
                    Finding.at(
                        doc.location(at_path), "rollout-schedule", f"rollout `{d.name}`: {exc}"
                    )
                )
                continue
            pct = step.get("percentage")
            if not isinstance(pct, int):
                continue
            if times:
                prev_t, prev_p = times[-1]
                if t <= prev_t:
                    out.append(
                        Finding.at(
                            doc.location(at_path),
                            "rollout-schedule",
                            f"rollout `{d.name}`: schedule goes backwards: step {i} is not later than step {i - 1}",
                            hint="list the steps in time order, each later than the one before",
                        )
                    )
                elif pct < prev_p:
                    out.append(
                        Finding.at(
                            doc.location((*d.path, "schedule", "steps", i, "percentage")),
                            "rollout-schedule",
                            f"rollout `{d.name}`: schedule goes backwards: step {i} lowers the percentage from {prev_p} to {pct} basis points",
                            hint="a schedule only widens a rollout; use `configctl rollout abort` or a new rollout to narrow it",
                        )
                    )
            times.append((t, pct))
    if entry.get("percentage") is not None and entry.get("schedule") is not None:
        out.append(
            Finding.at(
                doc.location((*d.path, "schedule")),
                "rollout-invalid",
                f"rollout `{d.name}` gives both `percentage` and `schedule`; give one",
                hint="a fixed share is `percentage`; a share that grows with time is `schedule`",
            )
        )
    window: dict[str, float] = {}
    for bound in ("start", "end"):
        if entry.get(bound) is not None:
            try:
                window[bound] = rollouts_mod.parse_time(entry[bound], bound)
            except ValueError as exc:
                out.append(
                    Finding.at(
                        doc.location((*d.path, bound)),
                        "rollout-window",
                        f"rollout `{d.name}`: {exc}",
                    )
                )
    if "start" in window and "end" in window and window["end"] <= window["start"]:
        out.append(
            Finding.at(
                doc.location((*d.path, "end")),
                "rollout-window",
                f"rollout `{d.name}`: `end` is not after `start`",
            )
        )
    rules = entry.get("rules")
    for i, rule in enumerate(rules if isinstance(rules, list) else []):
        if not isinstance(rule, dict):
            continue
        value_path = (*d.path, "rules", i, "value")
        op, value = rule.get("op"), rule.get("value")
        if op == "regex" and isinstance(value, str):
            try:
                risk = regex_safety.backtracking_risk(value)
            except re.error as exc:
                out.append(
                    Finding.at(
                        doc.location(value_path),
                        "rollout-regex",
                        f"rollout `{d.name}`: invalid regex: {exc}",
                    )
                )
                continue
            if risk is not None:
                out.append(
                    Finding.at(
                        doc.location(value_path),
                        "rollout-regex",
                        f"rollout `{d.name}`: regex can backtrack catastrophically: {risk}",
                        hint="use a character class, a bounded repeat ({1,20}) or a possessive one (a++)",
                    )
                )
        elif (
            isinstance(op, str)
            and op.startswith("semver_")
            and isinstance(value, str)
            and rollouts_mod.parse_semver(value) is None
        ):
            out.append(
                Finding.at(
                    doc.location(value_path),
                    "rollout-rule",
                    f"rollout `{d.name}`: `{value}` is not a semantic version (like 1.4.0)",
                )
            )
    if echo and not out:
        # Whatever else the evaluator refuses (it is the final judge of the JSON form).
        try:
            rollouts_mod.RolloutSet.from_json([entry])
        except ValueError as exc:
            out.append(Finding.at(doc.location(d.path), "rollout-invalid", str(exc)))
    return out


def _priority_conflicts(
    doc: Document, definitions: Sequence[RolloutDef], environments: Sequence[str]
) -> list[Finding]:
    out: list[Finding] = []
    reported: set[tuple[str, str]] = set()
    for env in environments:
        by_key: dict[str, list[RolloutDef]] = {}
        for d in definitions:
            if d.kind == "value" and d.key is not None and applies(d, env):
                by_key.setdefault(d.key, []).append(d)
        for key, group in by_key.items():
            if len(group) < 2:
                continue
            for i, a in enumerate(group):
                for b in group[i + 1 :]:
                    if (a.name, b.name) in reported:
                        continue
                    if a.priority is None or b.priority is None:
                        problem = "give both an explicit `priority` (higher is tried first)"
                        target = b if b.priority is None else a
                    elif a.priority == b.priority:
                        problem = f"both have priority {a.priority}; make them differ"
                        target = b
                    else:
                        continue
                    reported.add((a.name, b.name))
                    out.append(
                        Finding.at(
                            doc.location(target.path),
                            "rollout-priority-conflict",
                            f"rollouts `{a.name}` and `{b.name}` both change `{key}` in environment {env}: {problem}",
                        )
                    )
    return out


def _substitute(values: Mapping[str, Any], key: str, value: object) -> dict[str, Any] | None:
    """A copy of ``values`` with ``key`` set to ``value``; None if a parent is not a mapping."""
    out = copy.deepcopy(dict(values))
    node: dict[str, Any] = out
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = {}
            node[part] = child
        if not isinstance(child, dict):
            return None
        node = child
    node[parts[-1]] = copy.deepcopy(value)
    return out


def _value_findings(
    doc: Document,
    d: RolloutDef,
    environments: Sequence[str],
    values: Mapping[str, Mapping[str, Any]],
    value_errors: ValueErrors,
) -> list[Finding]:
    if d.key is None or "value" not in d.entry:
        return []  # a missing value is the file schema's finding
    loc = doc.location((*d.path, "value"))
    grouped: dict[str, list[str]] = {}
    for env in environments:
        if not applies(d, env) or env not in values:
            continue
        substituted = _substitute(values[env], d.key, d.entry.get("value"))
        if substituted is None:
            grouped.setdefault(
                f"`{d.key}` cannot be set: a parent key holds a value, not a mapping", []
            ).append(env)
            continue
        errors = value_errors(substituted)
        if not errors:
            continue
        # Errors the base values have too belong to the value files and are reported there.
        base = set(value_errors(values[env]))
        for path, message in errors:
            if (path, message) not in base:
                grouped.setdefault(message, []).append(env)
    out: list[Finding] = []
    for message, envs in grouped.items():
        out.append(
            Finding.at(
                loc,
                "rollout-schema",
                f"rollout `{d.name}` sets {message} (in environment{'s' if len(envs) > 1 else ''} {', '.join(envs)})",
                severity=Severity.ERROR,
            )
        )
    return out
