"""Rollout evaluation: the one pure function the CLI, the reconciler and the SDK share.

A *rollout* serves a new value of one dotted key to part of the traffic; a *flag* is a
named boolean built from the same parts. Both arrive here in their **JSON form** (the form
a snapshot carries for one (app, env): definitions from ``rollouts.yaml`` filtered to that
environment, with the runtime state from the store folded in). :meth:`RolloutSet.from_json`
checks and compiles that form once per snapshot; evaluation afterwards is a few tuple
walks, one hash and no allocation beyond the result.

Bucketing (documented so clients in other languages can match it; see
``schemas/v1/rollout-vectors.json``)::

    bucket(seed, unit) = murmur3_32(utf8(seed + ":" + unit), seed=0) as unsigned % 10000

``seed`` is the rollout's ``seed`` (its name unless set), ``unit`` the value of its
stickiness attribute (``user_id`` unless set; a string as is, an integer in decimal, any
other type counts as missing). A unit is *in* when ``bucket < percentage`` (basis points),
so raising the percentage only ever adds units: whoever is in at 10 % is in at 20 %
(monotone), and the same unit lands in the same bucket on every replica (sticky).
The modulo bias of 2^32 mod 10000 is below 2 in a million, far under one basis point.
Canary instances are bucketed the same way on ``instance_id`` with the seed
``<seed>/instances``, so the instance share and the user share are independent.

Evaluation order of one rollout (first match decides):

1. state ``aborted`` → not served; state ``promoted`` → served to everyone (``static``);
2. outside the ``start``/``end`` window → not served;
3. the unit is one of the explicit ``users`` → served (``targeting_match``, rule ``users``);
4. any attribute rule that does not hold (missing attribute included) → not served;
5. the instance is a named canary or its instance bucket is under the canary percentage
   → served (``targeting_match``, rule ``canary``);
6. a percentage (fixed, from the schedule at ``now``, or frozen while paused) is given:
   served when the unit's bucket is under it (``split``, rule ``percentage``); a missing
   unit is not served;
7. no percentage: rules that held (and no canary) → served (``targeting_match``, rule
   ``rules``); only users or a canary given → not served (only those are in); no part
   at all (a bare window, a plain flag) → served to everyone (``static``, rule ``all``).

Rollouts of one key are tried by descending ``priority`` then name; the first that serves
wins. Nothing here raises for a missing or odd context: it falls back to the base value
(``default``). Time is an input (``now``); this module reads no clock.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import mmh3

__all__ = [
    "BUCKETS",
    "EMPTY_ROLLOUTS",
    "OPERATORS",
    "STATUSES",
    "Evaluation",
    "Reason",
    "RolloutSet",
    "bucket",
    "parse_semver",
    "parse_time",
]

BUCKETS: Final = 10_000
"""Buckets per rollout: percentages are basis points (1 % = 100)."""

#: Rule operators of the JSON (and YAML) form.
OPERATORS: Final = frozenset(
    {
        "in",
        "not_in",
        "equals",
        "not_equals",
        "lt",
        "lte",
        "gt",
        "gte",
        "semver_eq",
        "semver_lt",
        "semver_lte",
        "semver_gt",
        "semver_gte",
        "regex",
        "exists",
    }
)

#: Runtime states of a rollout, kept in the store and folded into the JSON form.
STATUSES: Final = frozenset({"active", "paused", "promoted", "aborted"})

#: A context string longer than this never matches a regex rule: it bounds the cost of
#: the polynomial backtracking that the validator's detector lets through.
REGEX_INPUT_LIMIT: Final = 4096


class Reason(enum.StrEnum):
    """Why a value was served; the names follow OpenFeature's resolution reasons."""

    STATIC = "static"
    TARGETING_MATCH = "targeting_match"
    SPLIT = "split"
    DEFAULT = "default"
    DISABLED = "disabled"
    ERROR = "error"


@dataclass(frozen=True, slots=True, kw_only=True)
class Evaluation:
    """The value served for one key or flag, and why.

    ``rollout`` names the rollout (or flag) that decided, ``rule`` the part of it that did
    (``users``, ``rules``, ``canary``, ``percentage``, ``all``, ``promoted``), ``bucket``
    the unit's bucket when one was computed, ``variant`` is ``on``/``off`` (served or not).
    A key without any rollout evaluates to its base value with reason ``static`` and all
    other fields None.
    """

    value: object
    reason: Reason
    rollout: str | None
    rule: str | None
    bucket: int | None
    variant: str | None

    def to_dict(self) -> dict[str, object]:
        return {
            "value": self.value,
            "reason": str(self.reason),
            "rollout": self.rollout,
            "rule": self.rule,
            "bucket": self.bucket,
            "variant": self.variant,
        }


def bucket(seed: str, unit: str) -> int:
    """The bucket (0..9999) of ``unit`` in the rollout seeded ``seed`` (see module doc)."""
    return mmh3.hash(f"{seed}:{unit}", 0, False) % BUCKETS


# --------------------------------------------------------------------------- helpers


def parse_time(raw: object, what: str) -> float:
    """Seconds since the epoch of an RFC 3339 time with a zone; ValueError otherwise."""
    if isinstance(raw, datetime):
        moment = raw
    elif isinstance(raw, str):
        try:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError as exc:
            raise ValueError(f"{what}: not an RFC 3339 time: {raw!r}") from exc
    else:
        raise ValueError(f"{what}: not a time string")
    if moment.tzinfo is None:
        raise ValueError(f"{what}: a time needs a zone (Z or +hh:mm): {raw!r}")
    return moment.timestamp()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


_SEMVER_RE: Final = re.compile(
    r"v?(0|[1-9]\d*)(?:\.(0|[1-9]\d*))?(?:\.(0|[1-9]\d*))?"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)

SemVer = tuple[int, int, int, tuple[tuple[int, int, str], ...]]


def parse_semver(text: str) -> SemVer | None:
    """A sortable key for a semantic version, or None when ``text`` is not one.

    Lenient where services are (a leading ``v``, a missing minor or patch counts as 0);
    strict SemVer 2.0 precedence otherwise: a pre-release sorts before its release,
    numeric identifiers numerically and before alphanumeric ones, build metadata ignored.
    """
    m = _SEMVER_RE.fullmatch(text)
    if m is None:
        return None
    major, minor, patch, pre = m.group(1), m.group(2), m.group(3), m.group(4)
    if pre is None:
        # A release sorts after every pre-release of it: an identifier tuple that is
        # greater than any pre-release's.
        pre_key: tuple[tuple[int, int, str], ...] = ((2, 0, ""),)
    else:
        pre_key = tuple(
            (0, int(part), "") if part.isdigit() else (1, 0, part) for part in pre.split(".")
        )
    return (int(major), int(minor or 0), int(patch or 0), pre_key)


def _unit_of(value: object) -> str | None:
    """The bucketing unit of an attribute value: str as is, int in decimal, else None."""
    if isinstance(value, str):
        return value if value else None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    return None


Predicate = Callable[[Mapping[str, object]], bool]
Clock = Callable[[], "datetime | float"]
"""Gives ``now`` when a rule needs it: evaluation reads it only for windows and schedules."""
Served = Callable[[Mapping[str, object] | None, Clock, str | None], bool]
"""Whether one rollout serves a context: ``(context, clock, instance_id)``."""
Pick = Callable[[Mapping[str, object] | None, object, Clock, str | None], object]
"""The value of one key for a context: ``(context, base, clock, instance_id)``; ``base``
when no rollout of the key serves it."""


def _compile_rule(raw: Mapping[str, object], where: str) -> tuple[Predicate, dict[str, object]]:
    """Compile one attribute rule into a predicate on the context, and its JSON form."""
    attribute = raw.get("attribute")
    op = raw.get("op")
    if not isinstance(attribute, str) or not attribute:
        raise ValueError(f"{where}: 'attribute' must be a non-empty string")
    if not isinstance(op, str) or op not in OPERATORS:
        raise ValueError(f"{where}: unknown op {op!r} (one of {', '.join(sorted(OPERATORS))})")
    value = raw.get("value")
    missing = object()
    attr = attribute

    if op == "exists":
        want = True if value is None else value
        if not isinstance(want, bool):
            raise ValueError(f"{where}: 'exists' takes true or false")
        return (lambda c: (c.get(attr) is not None) is want), {
            "attribute": attr,
            "op": op,
            "value": want,
        }
    if op in {"in", "not_in"}:
        if not isinstance(value, list) or not all(
            isinstance(v, str | int | float | bool) for v in value
        ):
            raise ValueError(f"{where}: '{op}' takes a list of scalars")
        members = frozenset(_scalar_key(v) for v in value)
        if op == "in":
            return (lambda c: _scalar_key(c.get(attr, missing)) in members), {
                "attribute": attr,
                "op": op,
                "value": list(value),
            }

        def not_in(c: Mapping[str, object]) -> bool:
            got = c.get(attr)
            return got is not None and _scalar_key(got) not in members

        return not_in, {"attribute": attr, "op": op, "value": list(value)}
    if op in {"equals", "not_equals"}:
        if not isinstance(value, str | int | float | bool):
            raise ValueError(f"{where}: '{op}' takes a scalar")
        target = _scalar_key(value)
        if op == "equals":
            return (lambda c: _scalar_key(c.get(attr, missing)) == target), {
                "attribute": attr,
                "op": op,
                "value": value,
            }
        return (lambda c: c.get(attr) is not None and _scalar_key(c.get(attr)) != target), {
            "attribute": attr,
            "op": op,
            "value": value,
        }
    if op in {"lt", "lte", "gt", "gte"}:
        bound = _number(value)
        if bound is None or not math.isfinite(bound):
            raise ValueError(f"{where}: '{op}' takes a finite number")
        compare = _NUMERIC[op]

        def numeric(c: Mapping[str, object]) -> bool:
            got = _number(c.get(attr))
            return got is not None and compare(got, bound)

        return numeric, {"attribute": attr, "op": op, "value": value}
    if op.startswith("semver_"):
        if not isinstance(value, str) or (ref := parse_semver(value)) is None:
            raise ValueError(f"{where}: '{op}' takes a semantic version string")
        compare_sv = _SEMVER[op]

        def semver(c: Mapping[str, object]) -> bool:
            got = c.get(attr)
            if not isinstance(got, str):
                return False
            parsed = parse_semver(got)
            return parsed is not None and compare_sv(parsed, ref)

        return semver, {"attribute": attr, "op": op, "value": value}
    # regex
    if not isinstance(value, str):
        raise ValueError(f"{where}: 'regex' takes a pattern string")
    try:
        pattern = re.compile(value)
    except re.error as exc:
        raise ValueError(f"{where}: invalid regex: {exc}") from exc
    search = pattern.search

    def regex(c: Mapping[str, object]) -> bool:
        got = c.get(attr)
        if isinstance(got, int | float) and not isinstance(got, bool):
            got = str(got)
        return isinstance(got, str) and len(got) <= REGEX_INPUT_LIMIT and search(got) is not None

    return regex, {"attribute": attr, "op": op, "value": value}


def _scalar_key(value: object) -> object:
    """Compare scalars by JSON meaning: 1 == 1.0, but True is not 1 and "1" is not 1."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int | float):
        return ("n", float(value))
    if isinstance(value, str):
        return ("s", value)
    return ("x", id(value))


_NUMERIC: Final[dict[str, Callable[[float, float], bool]]] = {
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
}
_SEMVER: Final[dict[str, Callable[[SemVer, SemVer], bool]]] = {
    "semver_eq": lambda a, b: a == b,
    "semver_lt": lambda a, b: a < b,
    "semver_lte": lambda a, b: a <= b,
    "semver_gt": lambda a, b: a > b,
    "semver_gte": lambda a, b: a >= b,
}


def _bp(raw: object, where: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= BUCKETS:
        raise ValueError(f"{where}: a percentage is an integer of basis points, 0..{BUCKETS}")
    return raw


# --------------------------------------------------------------------------- one rollout


@dataclass(frozen=True, slots=True)
class _Schedule:
    """Points (time, basis points) in strictly increasing time; ``linear`` interpolates."""

    linear: bool
    times: tuple[float, ...]
    points: tuple[int, ...]

    def at(self, t: float) -> int:
        """Basis points at ``t``: 0 before the first point, the last one after the last."""
        times = self.times
        if t < times[0]:
            return 0
        # A schedule has a handful of points; a linear scan beats bisect's call overhead.
        i = len(times) - 1
        while times[i] > t:
            i -= 1
        if not self.linear or i == len(times) - 1:
            return self.points[i]
        t0, t1 = times[i], times[i + 1]
        p0, p1 = self.points[i], self.points[i + 1]
        return p0 + int((p1 - p0) * (t - t0) / (t1 - t0))

    def stage(self, t: float) -> int:
        """How many points have been reached at ``t`` (0 = not started)."""
        return sum(1 for x in self.times if x <= t)


@dataclass(frozen=True, slots=True)
class _Rollout:
    name: str
    flag: bool
    key: str | None
    value: object
    priority: int
    seed: str
    canary_seed: str
    stickiness: str
    percentage: int | None
    schedule: _Schedule | None
    start: float | None
    end: float | None
    users: frozenset[str]
    rules: tuple[Predicate, ...]
    canary_instances: frozenset[str]
    canary_percentage: int | None
    has_canary: bool
    enabled: bool
    status: str
    paused_at: float | None
    shift: float
    timed: bool
    raw: dict[str, object]
    served: Served
    """The specialised ``decide(...)[0]``: the hot path of :meth:`RolloutSet.value`."""

    def percent_at(self, t: float) -> int | None:
        """The percentage in force at ``t`` (None when the rollout has none)."""
        if self.schedule is not None:
            if self.status == "paused" and self.paused_at is not None:
                t = self.paused_at
            return self.schedule.at(t - self.shift)
        return self.percentage

    def stage_at(self, t: float) -> int:
        """Schedule stage at ``t`` (0 when there is no schedule or it has not started)."""
        if self.schedule is None:
            return 0
        if self.status == "paused" and self.paused_at is not None:
            t = self.paused_at
        return self.schedule.stage(t - self.shift)

    def decide(
        self, context: Mapping[str, object] | None, t: float, instance_id: str | None
    ) -> tuple[bool, Reason, str | None, int | None]:
        """(served, reason, rule, bucket) for one context; never raises for context shape."""
        status = self.status
        if status == "aborted" or not self.enabled:
            return (False, Reason.DISABLED, None, None)
        if status == "promoted":
            return (True, Reason.STATIC, "promoted", None)
        if self.timed and (
            (self.start is not None and t < self.start) or (self.end is not None and t >= self.end)
        ):
            return (False, Reason.DEFAULT, None, None)
        ctx: Mapping[str, object] = context if context is not None else {}
        unit = _unit_of(ctx.get(self.stickiness))
        if unit is not None and unit in self.users:
            return (True, Reason.TARGETING_MATCH, "users", None)
        for rule in self.rules:
            if not rule(ctx):
                return (False, Reason.DEFAULT, None, None)
        if self.has_canary and instance_id is not None:
            if instance_id in self.canary_instances:
                return (True, Reason.TARGETING_MATCH, "canary", None)
            if self.canary_percentage is not None and (
                bucket(self.canary_seed, instance_id) < self.canary_percentage
            ):
                return (True, Reason.TARGETING_MATCH, "canary", None)
        percent = self.percent_at(t)
        if percent is not None:
            if unit is None:
                return (False, Reason.DEFAULT, None, None)
            b = mmh3.hash(f"{self.seed}:{unit}", 0, False) % BUCKETS
            if b < percent:
                return (True, Reason.SPLIT, "percentage", b)
            return (False, Reason.DEFAULT, None, b)
        if self.rules:
            # Rules that held, with no canary or percentage to narrow them further.
            if self.has_canary:
                return (False, Reason.DEFAULT, None, None)
            return (True, Reason.TARGETING_MATCH, "rules", None)
        if self.has_canary or self.users:
            return (False, Reason.DEFAULT, None, None)  # only the named ones are in
        return (True, Reason.STATIC, "all", None)


_NAME_RE: Final = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,126}[A-Za-z0-9])?")


def _compile(raw: Mapping[str, object], index: int) -> _Rollout:
    """Check and compile one JSON-form entry; ValueError names the entry and the field."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"rollouts[{index}]: not an object")
    name = raw.get("name")
    if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
        raise ValueError(f"rollouts[{index}]: 'name' must match {_NAME_RE.pattern}")
    where = f"rollout {name!r}"
    kind = raw.get("kind", "value" if "key" in raw else "flag")
    if kind not in {"value", "flag"}:
        raise ValueError(f"{where}: 'kind' is 'value' or 'flag'")
    flag = kind == "flag"
    key = raw.get("key")
    value = raw.get("value")
    if flag:
        key, value = None, True
    elif not isinstance(key, str) or not key or any(not part for part in key.split(".")):
        raise ValueError(f"{where}: 'key' must be a dotted key")
    elif "value" not in raw:
        raise ValueError(f"{where}: 'value' is required")
    priority = raw.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ValueError(f"{where}: 'priority' must be an integer")
    seed = raw.get("seed", name)
    stickiness = raw.get("stickiness", "user_id")
    if not isinstance(seed, str) or not seed:
        raise ValueError(f"{where}: 'seed' must be a non-empty string")
    if not isinstance(stickiness, str) or not stickiness:
        raise ValueError(f"{where}: 'stickiness' must be a non-empty string")
    pct_raw = raw.get("percentage")
    percentage = None if pct_raw is None else _bp(pct_raw, f"{where}: percentage")

    schedule: _Schedule | None = None
    sched_raw = raw.get("schedule")
    if sched_raw is not None:
        if not isinstance(sched_raw, Mapping):
            raise ValueError(f"{where}: 'schedule' must be an object")
        mode = sched_raw.get("mode", "stepped")
        if mode not in {"stepped", "linear"}:
            raise ValueError(f"{where}: schedule mode is 'stepped' or 'linear'")
        steps = sched_raw.get("steps")
        if not isinstance(steps, list) or not steps:
            raise ValueError(f"{where}: schedule 'steps' must be a non-empty list")
        times: list[float] = []
        points: list[int] = []
        for i, step in enumerate(steps):
            if not isinstance(step, Mapping):
                raise ValueError(f"{where}: schedule step {i} is not an object")
            times.append(parse_time(step.get("at"), f"{where}: schedule step {i} 'at'"))
            points.append(_bp(step.get("percentage"), f"{where}: schedule step {i}"))
        for i in range(1, len(times)):
            if times[i] <= times[i - 1]:
                raise ValueError(f"{where}: schedule step {i} is not later than step {i - 1}")
            if points[i] < points[i - 1]:
                raise ValueError(f"{where}: schedule step {i} lowers the percentage")
        if percentage is not None:
            raise ValueError(f"{where}: give 'percentage' or 'schedule', not both")
        schedule = _Schedule(mode == "linear", tuple(times), tuple(points))

    start = None if raw.get("start") is None else parse_time(raw["start"], f"{where}: start")
    end = None if raw.get("end") is None else parse_time(raw["end"], f"{where}: end")
    if start is not None and end is not None and end <= start:
        raise ValueError(f"{where}: 'end' is not after 'start'")

    users_raw = raw.get("users", [])
    if not isinstance(users_raw, list) or not all(
        isinstance(u, str) or (isinstance(u, int) and not isinstance(u, bool)) for u in users_raw
    ):
        raise ValueError(f"{where}: 'users' must be a list of ids")
    rules_raw = raw.get("rules", [])
    if not isinstance(rules_raw, list):
        raise ValueError(f"{where}: 'rules' must be a list")
    compiled_rules: list[Predicate] = []
    rules_json: list[dict[str, object]] = []
    for i, rule in enumerate(rules_raw):
        if not isinstance(rule, Mapping):
            raise ValueError(f"{where}: rule {i} is not an object")
        predicate, rule_json = _compile_rule(rule, f"{where}: rule {i}")
        compiled_rules.append(predicate)
        rules_json.append(rule_json)

    canary_raw = raw.get("canary")
    instances: frozenset[str] = frozenset()
    canary_pct: int | None = None
    if canary_raw is not None:
        if not isinstance(canary_raw, Mapping):
            raise ValueError(f"{where}: 'canary' must be an object")
        inst = canary_raw.get("instances", [])
        if not isinstance(inst, list) or not all(isinstance(x, str) and x for x in inst):
            raise ValueError(f"{where}: canary 'instances' must be a list of instance ids")
        instances = frozenset(inst)
        if canary_raw.get("percentage") is not None:
            canary_pct = _bp(canary_raw["percentage"], f"{where}: canary percentage")
        if not instances and canary_pct is None:
            raise ValueError(f"{where}: a canary names instances or a percentage of them")

    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValueError(f"{where}: 'enabled' must be true or false")

    state = raw.get("state") or {}
    if not isinstance(state, Mapping):
        raise ValueError(f"{where}: 'state' must be an object")
    status = state.get("status", "active")
    if not isinstance(status, str) or status not in STATUSES:
        raise ValueError(f"{where}: state status is one of {', '.join(sorted(STATUSES))}")
    paused_at = (
        None
        if state.get("paused_at") is None
        else parse_time(state["paused_at"], f"{where}: state paused_at")
    )
    shift_raw = state.get("shift_seconds", 0)
    shift = _number(shift_raw)
    if shift is None or not math.isfinite(shift) or shift < 0:
        raise ValueError(f"{where}: state shift_seconds must be a number >= 0")

    canonical: dict[str, object] = {"name": name, "kind": kind}
    if not flag:
        canonical["key"] = key
        canonical["value"] = value
    canonical.update(
        {
            "priority": priority,
            "seed": seed,
            "stickiness": stickiness,
            "percentage": percentage,
            "schedule": None
            if schedule is None
            else {
                "mode": "linear" if schedule.linear else "stepped",
                "steps": [
                    {"at": _iso(t), "percentage": p}
                    for t, p in zip(schedule.times, schedule.points, strict=True)
                ],
            },
            "start": None if start is None else _iso(start),
            "end": None if end is None else _iso(end),
            "users": [str(u) for u in users_raw],
            "rules": rules_json,
            "canary": None
            if canary_raw is None
            else {"instances": sorted(instances), "percentage": canary_pct},
            "enabled": enabled,
            "state": {
                "status": status,
                "paused_at": None if paused_at is None else _iso(paused_at),
                "shift_seconds": shift,
            },
        }
    )
    rollout = _Rollout(
        name=name,
        flag=flag,
        key=key if isinstance(key, str) else None,
        value=value,
        priority=priority,
        seed=seed,
        canary_seed=f"{seed}/instances",
        stickiness=stickiness,
        percentage=percentage,
        schedule=schedule,
        start=start,
        end=end,
        users=frozenset(str(u) for u in users_raw),
        rules=tuple(compiled_rules),
        canary_instances=instances,
        canary_percentage=canary_pct,
        has_canary=canary_raw is not None,
        enabled=enabled,
        status=status,
        paused_at=paused_at,
        shift=shift,
        timed=start is not None or end is not None,
        raw=canonical,
        served=_never,
    )
    object.__setattr__(rollout, "served", _specialise(rollout))
    return rollout


def _never(_context: Mapping[str, object] | None, _clock: Clock, _instance_id: str | None) -> bool:
    return False


def _always(_context: Mapping[str, object] | None, _clock: Clock, _instance_id: str | None) -> bool:
    return True


def _specialise(r: _Rollout) -> Served:
    """The cheapest exact equivalent of ``r.decide(...)[0]``, reading the clock only if needed.

    Most rollouts are a plain percentage on one attribute: for those the hot path is one
    dict lookup, one string concatenation and one hash, without reading the clock. Every
    other shape goes through :meth:`_Rollout.decide`.
    """
    if r.status == "aborted" or not r.enabled:
        return _never
    if r.status == "promoted":
        return _always
    decide = r.decide
    if _percentage_only(r):
        prefix, attr, pct, hash32 = f"{r.seed}:", r.stickiness, r.percentage or 0, mmh3.hash

        def percentage_only(
            context: Mapping[str, object] | None,
            clock: Clock,  # noqa: ARG001 - a plain percentage needs no time
            instance_id: str | None,
            prefix: str = prefix,
            attr: str = attr,
            pct: int = pct,
            hash32: Callable[[str, int, bool], int] = hash32,
        ) -> bool:
            # Names bound as defaults are locals: the cheapest lookups CPython has.
            if context is not None:
                unit = context.get(attr)
                if unit.__class__ is str:
                    return bool(unit) and hash32(prefix + unit, 0, False) % BUCKETS < pct
                if unit is not None:
                    return decide(context, 0.0, instance_id)[0]
            return False

        return percentage_only

    needs_time = r.timed or r.schedule is not None

    def general(
        context: Mapping[str, object] | None, clock: Clock, instance_id: str | None
    ) -> bool:
        return decide(context, _timestamp(clock()) if needs_time else 0.0, instance_id)[0]

    return general


def _percentage_only(r: _Rollout) -> bool:
    """True for a rollout that is a plain percentage: no schedule, window, users, rules or canary."""
    return (
        r.percentage is not None
        and r.schedule is None
        and not r.timed
        and not r.users
        and not r.rules
        and not r.has_canary
    )


def _picker(candidates: tuple[_Rollout, ...]) -> Pick:
    """One key's evaluator: the first of its rollouts (priority order) that serves wins."""
    if len(candidates) == 1:
        return _pick_one(candidates[0])
    served = tuple((r.served, r.value) for r in candidates)

    def first(
        context: Mapping[str, object] | None, base: object, clock: Clock, instance_id: str | None
    ) -> object:
        for serves, value in served:
            if serves(context, clock, instance_id):
                return value
        return base

    return first


def _pick_one(r: _Rollout) -> Pick:
    """``key``'s picker when one rollout covers it: its value when served, else ``base``."""
    served, value = r.served, r.value
    if served is _never or served is _always or not _percentage_only(r):

        def one(
            context: Mapping[str, object] | None,
            base: object,
            clock: Clock,
            instance_id: str | None,
        ) -> object:
            return value if served(context, clock, instance_id) else base

        return one
    prefix, attr, pct, hash32, decide = (
        f"{r.seed}:",
        r.stickiness,
        r.percentage or 0,
        mmh3.hash,
        r.decide,
    )

    def percentage(
        context: Mapping[str, object] | None,
        base: object,
        clock: Clock,  # noqa: ARG001 - a plain percentage needs no time
        instance_id: str | None,
        prefix: str = prefix,
        attr: str = attr,
        pct: int = pct,
        hash32: Callable[[str, int, bool], int] = hash32,
        value: object = value,
    ) -> object:
        # The percentage test inlined: the hot path of `get` on a key under a rollout.
        if context is not None:
            unit = context.get(attr)
            if unit.__class__ is str:
                if unit and hash32(prefix + unit, 0, False) % BUCKETS < pct:
                    return value
                return base
            if unit is not None and decide(context, 0.0, instance_id)[0]:
                return value
        return base

    return percentage


def _timestamp(now: datetime | float) -> float:
    if isinstance(now, datetime):
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        return now.timestamp()
    return float(now)


# --------------------------------------------------------------------------- the set


class RolloutSet:
    """The compiled rollouts and flags of one (app, env): immutable, thread-safe.

    Build it once per snapshot with :meth:`from_json`; share it between threads freely
    (nothing in it changes after construction).
    """

    __slots__ = ("_by_key", "_flags", "_items", "_pickers", "flags", "keys")

    keys: frozenset[str]
    """Dotted value keys that have a rollout; other keys never need evaluating."""
    flags: frozenset[str]
    """Names of the boolean feature flags."""

    def __init__(self, items: Sequence[_Rollout] = ()) -> None:
        by_key: dict[str, list[_Rollout]] = {}
        flags: dict[str, _Rollout] = {}
        names: set[str] = set()
        for r in items:
            if r.name in names:
                raise ValueError(f"rollout {r.name!r} is defined twice")
            names.add(r.name)
            if r.flag:
                flags[r.name] = r
            elif r.key is not None:
                by_key.setdefault(r.key, []).append(r)
        self._items: tuple[_Rollout, ...] = tuple(items)
        self._by_key: dict[str, tuple[_Rollout, ...]] = {
            k: tuple(sorted(v, key=lambda r: (-r.priority, r.name))) for k, v in by_key.items()
        }
        self._flags: dict[str, _Rollout] = flags
        self._pickers: dict[str, Pick] = {k: _picker(v) for k, v in self._by_key.items()}
        self.keys = frozenset(self._by_key)
        self.flags = frozenset(flags)

    @classmethod
    def from_json(cls, raw: Sequence[Mapping[str, object]]) -> RolloutSet:
        """Check and compile the JSON form; ValueError names the bad entry and field."""
        checked: object = raw  # the caller's type is a promise the JSON may not keep
        if not isinstance(checked, list | tuple):
            raise ValueError("rollouts must be a JSON array")
        return cls([_compile(entry, i) for i, entry in enumerate(checked)])

    def to_json(self) -> list[dict[str, object]]:
        """The canonical JSON form (defaults filled in); ``from_json`` of it is equal."""
        return [dict(r.raw) for r in self._items]

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RolloutSet) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(tuple(r.name for r in self._items))

    def __repr__(self) -> str:
        return f"RolloutSet({[r.name for r in self._items]!r})"

    def names(self) -> tuple[str, ...]:
        """Every rollout and flag name, in definition order."""
        return tuple(r.name for r in self._items)

    def entry(self, name: str) -> dict[str, object]:
        """The canonical JSON form of one rollout or flag; KeyError if unknown."""
        for r in self._items:
            if r.name == name:
                return dict(r.raw)
        raise KeyError(name)

    def percentage(self, name: str, *, now: datetime | float) -> int | None:
        """The percentage in force for ``name`` at ``now`` (promoted: all, aborted: 0)."""
        r = self._get(name)
        if r.status == "promoted":
            return BUCKETS
        if r.status == "aborted" or not r.enabled:
            return 0
        return r.percent_at(_timestamp(now))

    def stage(self, name: str, *, now: datetime | float) -> int:
        """The schedule stage of ``name`` at ``now``: how many of its steps have been reached."""
        return self._get(name).stage_at(_timestamp(now))

    def _get(self, name: str) -> _Rollout:
        for r in self._items:
            if r.name == name:
                return r
        raise KeyError(name)

    # ---- evaluation

    def evaluate(
        self,
        key: str,
        base: object,
        context: Mapping[str, object] | None,
        *,
        now: datetime | float,
        instance_id: str | None = None,
    ) -> Evaluation:
        """The value of ``key`` for ``context``: a rollout's value, or ``base``.

        ``now`` is a timezone-aware datetime (or seconds since the epoch). A key without
        rollouts gives ``base`` with reason ``static``; with rollouts none of which serves,
        ``base`` with reason ``default`` (``disabled`` when every one is aborted).
        """
        candidates = self._by_key.get(key)
        if candidates is None:
            return Evaluation(
                value=base, reason=Reason.STATIC, rollout=None, rule=None, bucket=None, variant=None
            )
        t = _timestamp(now)
        first_bucket: int | None = None
        first_name: str | None = None
        all_disabled = True
        for r in candidates:
            served, reason, rule, b = r.decide(context, t, instance_id)
            if served:
                return Evaluation(
                    value=r.value, reason=reason, rollout=r.name, rule=rule, bucket=b, variant="on"
                )
            if reason is not Reason.DISABLED:
                all_disabled = False
            if first_name is None:
                first_name, first_bucket = r.name, b
        return Evaluation(
            value=base,
            reason=Reason.DISABLED if all_disabled else Reason.DEFAULT,
            rollout=first_name,
            rule=None,
            bucket=first_bucket,
            variant="off",
        )

    def value(
        self,
        key: str,
        base: object,
        context: Mapping[str, object] | None,
        *,
        now: datetime | float,
        instance_id: str | None = None,
    ) -> object:
        """Only the value of :meth:`evaluate`, without building an Evaluation (hot path)."""
        pick = self._pickers.get(key)
        if pick is None:
            return base
        return pick(context, base, lambda: now, instance_id)

    def picker(self, key: str) -> Pick | None:
        """The evaluator of one key, for a caller that evaluates it on every read (the SDK);
        None when ``key`` has no rollout. It reads ``clock`` only when a rule needs the time."""
        return self._pickers.get(key)

    def flag(self, name: str) -> Served:
        """The evaluator of flag ``name`` (see :meth:`picker`); KeyError for an unknown flag."""
        return self._flags[name].served

    def evaluate_flag(
        self,
        name: str,
        context: Mapping[str, object] | None,
        *,
        now: datetime | float,
        instance_id: str | None = None,
    ) -> Evaluation:
        """Whether flag ``name`` is on for ``context``; KeyError for an unknown flag."""
        r = self._flags[name]
        served, reason, rule, b = r.decide(context, _timestamp(now), instance_id)
        return Evaluation(
            value=served,
            reason=reason,
            rollout=name,
            rule=rule,
            bucket=b,
            variant="on" if served else "off",
        )

    def enabled(
        self,
        name: str,
        context: Mapping[str, object] | None,
        *,
        now: datetime | float,
        instance_id: str | None = None,
    ) -> bool:
        """Only the value of :meth:`evaluate_flag` (hot path); KeyError for an unknown flag."""
        return self._flags[name].served(context, lambda: now, instance_id)


EMPTY_ROLLOUTS: Final = RolloutSet()
"""The rollouts of a pair that has none."""
