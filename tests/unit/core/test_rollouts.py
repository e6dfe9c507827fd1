"""The pure rollout evaluator (configctl.core.rollouts): the shipped vectors, stickiness and
monotonicity as properties, the hot path equal to the full evaluation, rules, runtime
states, and the JSON form's checks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mmh3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from configctl.core.cache import CachedSnapshot, decode_snapshot, encode_snapshot
from configctl.core.records import checksum, snapshot_checksum
from configctl.core.regex_safety import backtracking_risk
from configctl.core.rollouts import (
    BUCKETS,
    EMPTY_ROLLOUTS,
    Reason,
    RolloutSet,
    bucket,
    parse_semver,
)

VECTORS = Path(__file__).resolve().parents[3] / "schemas" / "v1" / "rollout-vectors.json"
NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --------------------------------------------------------------------------- vectors

_DOC = json.loads(VECTORS.read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", _DOC["buckets"], ids=lambda c: f"{c['seed']}:{c['unit']}"[:40])
def test_vector_buckets(case: dict[str, Any]) -> None:
    assert mmh3.hash(f"{case['seed']}:{case['unit']}".encode(), 0, False) == case["hash"]
    assert bucket(case["seed"], case["unit"]) == case["bucket"] == case["hash"] % BUCKETS


@pytest.mark.parametrize("index", range(len(_DOC["cases"])))
def test_vector_evaluations(index: int) -> None:
    case = _DOC["cases"][index]
    rs = RolloutSet.from_json(_DOC["rollout_sets"][case["rollouts"]])
    now = _at(case["now"])
    if "flag" in case:
        ev = rs.evaluate_flag(
            case["flag"], case["context"], now=now, instance_id=case["instance_id"]
        )
        assert (
            rs.enabled(case["flag"], case["context"], now=now, instance_id=case["instance_id"])
            is ev.value
        )
    else:
        ev = rs.evaluate(
            case["key"], case["base"], case["context"], now=now, instance_id=case["instance_id"]
        )
        assert (
            rs.value(
                case["key"], case["base"], case["context"], now=now, instance_id=case["instance_id"]
            )
            == ev.value
        )
    assert ev.to_dict() == case["expected"], case["note"]


def test_vectors_cover_every_reason_and_rule() -> None:
    reasons = {c["expected"]["reason"] for c in _DOC["cases"]}
    rules = {c["expected"]["rule"] for c in _DOC["cases"]}
    assert reasons >= {"static", "targeting_match", "split", "default", "disabled"}
    assert rules >= {"users", "rules", "canary", "percentage", "all", "promoted"}


# --------------------------------------------------------------------------- properties

units = st.one_of(st.text(min_size=1, max_size=40), st.integers(min_value=0, max_value=10**12))
seeds = st.text(min_size=1, max_size=30)


@given(seed=seeds, unit=units, low=st.integers(0, BUCKETS), high=st.integers(0, BUCKETS))
@settings(max_examples=400, deadline=None)
def test_monotone_a_unit_in_at_a_lower_percentage_stays_in(
    seed: str, unit: str | int, low: int, high: int
) -> None:
    low, high = min(low, high), max(low, high)
    make = lambda pct: RolloutSet.from_json(  # noqa: E731 - one-line factory
        [{"name": "r", "seed": seed, "key": "k", "value": "new", "percentage": pct}]
    )
    ctx = {"user_id": unit}
    if make(low).value("k", "old", ctx, now=NOW) == "new":
        assert make(high).value("k", "old", ctx, now=NOW) == "new"


@given(seed=seeds, unit=units, pct=st.integers(0, BUCKETS), hours=st.integers(-10_000, 10_000))
@settings(max_examples=300, deadline=None)
def test_sticky_same_unit_same_answer_on_every_replica(
    seed: str, unit: str | int, pct: int, hours: int
) -> None:
    entries = [
        {
            "name": "r",
            "seed": seed,
            "key": "k",
            "value": 1,
            "percentage": pct,
            "rules": [{"attribute": "x", "op": "exists", "value": False}],
        }
    ]
    # Two independently compiled sets (two replicas), asked at different times and with
    # unrelated attributes: the answer only depends on (seed, unit, percentage).
    a, b = RolloutSet.from_json(entries), RolloutSet.from_json(json.loads(json.dumps(entries)))
    first = a.evaluate("k", 0, {"user_id": unit}, now=NOW)
    second = b.evaluate(
        "k", 0, {"user_id": unit, "country": "DE"}, now=NOW + timedelta(hours=hours)
    )
    assert first == second
    assert first.bucket == bucket(seed, str(unit))
    assert (first.value == 1) is (first.bucket < pct)


@given(
    unit=units,
    hours=st.integers(0, 96),
    steps=st.lists(st.integers(0, BUCKETS), min_size=1, max_size=5).map(sorted),
    linear=st.booleans(),
)
@settings(max_examples=200, deadline=None)
def test_a_schedule_only_widens_over_time(
    unit: str | int, hours: int, steps: list[int], linear: bool
) -> None:
    start = datetime(2026, 12, 1, tzinfo=UTC)
    entry = {
        "name": "ramp",
        "key": "k",
        "value": "new",
        "schedule": {
            "mode": "linear" if linear else "stepped",
            "steps": [
                {"at": (start + timedelta(hours=12 * i)).isoformat(), "percentage": p}
                for i, p in enumerate(steps)
            ],
        },
    }
    rs = RolloutSet.from_json([entry])
    ctx = {"user_id": unit}
    earlier = start + timedelta(hours=hours)
    if rs.value("k", "old", ctx, now=earlier) == "new":
        assert rs.value("k", "old", ctx, now=earlier + timedelta(hours=7)) == "new"


contexts = st.one_of(
    st.none(),
    st.dictionaries(
        st.sampled_from(["user_id", "country", "age", "app_version", "email", "plan"]),
        st.one_of(
            st.text(max_size=12),
            st.integers(-5, 100),
            st.floats(allow_nan=False),
            st.booleans(),
            st.none(),
        ),
        max_size=6,
    ),
)
_SHAPES = [
    {"name": "p", "key": "k", "value": 1, "percentage": 5000},
    {"name": "u", "key": "k", "value": 2, "users": ["a", "b"], "priority": 3},
    {
        "name": "r",
        "key": "k",
        "value": 3,
        "priority": 2,
        "rules": [
            {"attribute": "country", "op": "in", "value": ["DE"]},
            {"attribute": "age", "op": "gte", "value": 18},
        ],
    },
    {
        "name": "s",
        "key": "k",
        "value": 4,
        "priority": 1,
        "rules": [{"attribute": "app_version", "op": "semver_gt", "value": "1.2.0"}],
        "percentage": 2000,
    },
    {
        "name": "w",
        "key": "k",
        "value": 5,
        "priority": -1,
        "start": "2026-12-01T00:00:00Z",
        "end": "2026-12-03T00:00:00Z",
        "rules": [{"attribute": "email", "op": "regex", "value": "@x\\.io$"}],
    },
    {
        "name": "c",
        "key": "k",
        "value": 6,
        "priority": 9,
        "canary": {"instances": ["i1"], "percentage": 4000},
    },
]


@given(
    ctx=contexts,
    shapes=st.lists(st.sampled_from(_SHAPES), unique_by=lambda s: s["name"], min_size=1),
    instance=st.sampled_from([None, "i1", "i2", "i3"]),
)
@settings(max_examples=300, deadline=None)
def test_hot_path_equals_full_evaluation_and_never_raises(
    ctx: dict[str, Any] | None, shapes: list[dict[str, Any]], instance: str | None
) -> None:
    rs = RolloutSet.from_json(shapes)
    ev = rs.evaluate("k", 0, ctx, now=NOW, instance_id=instance)
    assert rs.value("k", 0, ctx, now=NOW, instance_id=instance) == ev.value
    assert rs.value("k", 0, ctx, now=NOW.timestamp(), instance_id=instance) == ev.value


def test_a_plain_percentage_never_reads_the_clock_and_a_window_does() -> None:
    def no_clock() -> float:
        raise AssertionError("a plain percentage must not read the clock")

    plain = RolloutSet.from_json([{"name": "p", "key": "k", "value": 1, "percentage": 10_000}])
    pick = plain.picker("k")
    assert pick is not None
    assert plain.picker("other") is None
    assert pick({"user_id": "u"}, 0, no_clock, None) == 1
    assert pick({"user_id": ""}, 0, no_clock, None) == 0  # an empty unit is missing
    assert pick(None, 0, no_clock, None) == 0
    reads: list[int] = []

    def clock() -> float:
        reads.append(1)
        return NOW.timestamp()

    window = RolloutSet.from_json(
        [{"name": "w", "key": "k", "value": 1, "start": "2026-01-01T00:00:00Z", "percentage": 10_000}]
    )
    wpick = window.picker("k")
    assert wpick is not None
    assert wpick({"user_id": "u"}, 0, clock, None) == 1
    assert reads


# --------------------------------------------------------------------------- behaviour


def test_missing_context_falls_back_to_the_base_value() -> None:
    rs = RolloutSet.from_json(
        [{"name": "r", "key": "db.timeout", "value": 5, "percentage": BUCKETS}]
    )
    for ctx in (
        None,
        {},
        {"user_id": None},
        {"user_id": ""},
        {"user_id": 1.5},
        {"user_id": {"x": 1}},
    ):
        ev = rs.evaluate("db.timeout", 30, ctx, now=NOW)
        assert (ev.value, ev.reason, ev.variant) == (30, Reason.DEFAULT, "off")
    assert rs.evaluate("db.timeout", 30, {"user_id": "u"}, now=NOW).value == 5


def test_key_without_rollout_is_static_and_empty_set() -> None:
    ev = EMPTY_ROLLOUTS.evaluate("a.b", "x", {"user_id": "u"}, now=NOW)
    assert (ev.value, ev.reason, ev.rollout, ev.variant) == ("x", Reason.STATIC, None, None)
    assert not EMPTY_ROLLOUTS
    assert EMPTY_ROLLOUTS.keys == frozenset()
    assert EMPTY_ROLLOUTS.flags == frozenset()
    with pytest.raises(KeyError):
        EMPTY_ROLLOUTS.evaluate_flag("nope", {}, now=NOW)


def test_percentage_share_is_close_to_the_setting() -> None:
    rs = RolloutSet.from_json([{"name": "r", "key": "k", "value": 1, "percentage": 1000}])
    served = sum(rs.value("k", 0, {"user_id": f"user-{i}"}, now=NOW) == 1 for i in range(20_000))
    assert 1800 < served < 2200


def test_pause_freezes_the_schedule_and_shift_delays_it() -> None:
    steps = {
        "steps": [
            {"at": "2026-12-01T00:00:00Z", "percentage": 1000},
            {"at": "2026-12-02T00:00:00Z", "percentage": 9000},
        ]
    }
    base = {"name": "r", "key": "k", "value": 1, "schedule": steps}
    later = datetime(2026, 12, 5, tzinfo=UTC)
    assert RolloutSet.from_json([base]).percentage("r", now=later) == 9000
    paused = {**base, "state": {"status": "paused", "paused_at": "2026-12-01T12:00:00Z"}}
    assert RolloutSet.from_json([paused]).percentage("r", now=later) == 1000
    shifted = {**base, "state": {"status": "active", "shift_seconds": 3600}}
    rs = RolloutSet.from_json([shifted])
    assert rs.percentage("r", now=datetime(2026, 12, 2, 0, 30, tzinfo=UTC)) == 1000
    assert rs.percentage("r", now=datetime(2026, 12, 2, 1, 0, tzinfo=UTC)) == 9000
    assert rs.stage("r", now=datetime(2026, 12, 2, 1, 0, tzinfo=UTC)) == 2


@pytest.mark.parametrize(
    ("op", "value", "ctx", "expected"),
    [
        ("in", ["DE", "AT"], {"a": "DE"}, True),
        ("in", ["DE"], {"a": "de"}, False),
        ("in", [1, 2], {"a": 1.0}, True),
        ("in", ["1"], {"a": 1}, False),
        ("not_in", ["DE"], {"a": "FR"}, True),
        ("not_in", ["DE"], {}, False),
        ("equals", True, {"a": True}, True),
        ("equals", 1, {"a": True}, False),
        ("not_equals", "x", {"a": "y"}, True),
        ("lt", 10, {"a": 9.5}, True),
        ("lte", 10, {"a": 10}, True),
        ("gt", 10, {"a": "11"}, False),
        ("gte", 10, {"a": 10}, True),
        ("semver_gte", "1.10.0", {"a": "1.9.9"}, False),
        ("semver_gt", "1.2.0", {"a": "v1.10"}, True),
        ("semver_lt", "2.0.0", {"a": "2.0.0-rc.1"}, True),
        ("semver_eq", "1.2.3", {"a": "1.2.3+build.7"}, True),
        ("semver_lte", "1.0.0-alpha.2", {"a": "1.0.0-alpha.10"}, False),
        ("semver_gt", "1.0.0", {"a": "not-a-version"}, False),
        ("regex", "^u-[0-9]+$", {"a": "u-12"}, True),
        ("regex", "^u-[0-9]+$", {"a": "x" * 5000}, False),
        ("exists", True, {"a": 0}, True),
        ("exists", False, {}, True),
        ("exists", None, {"a": None}, False),
    ],
)
def test_rule_operators(op: str, value: Any, ctx: dict[str, Any], expected: bool) -> None:
    rule: dict[str, Any] = {"attribute": "a", "op": op}
    if value is not None:
        rule["value"] = value
    rs = RolloutSet.from_json([{"name": "f", "kind": "flag", "rules": [rule]}])
    assert rs.enabled("f", ctx, now=NOW) is expected


def test_semver_precedence() -> None:
    ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.1",
        "1.1",
        "2",
    ]
    keys = [parse_semver(v) for v in ordered]
    assert all(k is not None for k in keys)
    assert keys == sorted(keys)  # type: ignore[type-var]  # checked not None above
    assert parse_semver("01.2.3") is None


def test_to_json_round_trips_and_fills_defaults() -> None:
    rs = RolloutSet.from_json(
        [
            {"name": "r", "key": "a.b", "value": [1, 2], "percentage": 10},
            {"name": "f", "kind": "flag"},
        ]
    )
    again = RolloutSet.from_json(rs.to_json())
    assert again == rs
    assert again.to_json() == rs.to_json()
    first = rs.to_json()[0]
    assert first["seed"] == "r"
    assert first["stickiness"] == "user_id"
    assert first["state"]["status"] == "active"
    assert rs.keys == frozenset({"a.b"})
    assert rs.flags == frozenset({"f"})


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"key": "k", "value": 1}, "'name'"),
        ({"name": "r", "key": "k"}, "'value' is required"),
        ({"name": "r", "key": "a..b", "value": 1}, "dotted key"),
        ({"name": "r", "key": "k", "value": 1, "percentage": 10_001}, "basis points"),
        (
            {
                "name": "r",
                "key": "k",
                "value": 1,
                "percentage": 5,
                "schedule": {"steps": [{"at": "2026-01-01T00:00:00Z", "percentage": 1}]},
            },
            "not both",
        ),
        (
            {
                "name": "r",
                "key": "k",
                "value": 1,
                "schedule": {
                    "steps": [
                        {"at": "2026-01-02T00:00:00Z", "percentage": 1},
                        {"at": "2026-01-01T00:00:00Z", "percentage": 2},
                    ]
                },
            },
            "not later",
        ),
        (
            {
                "name": "r",
                "key": "k",
                "value": 1,
                "schedule": {
                    "steps": [
                        {"at": "2026-01-01T00:00:00Z", "percentage": 5},
                        {"at": "2026-01-02T00:00:00Z", "percentage": 2},
                    ]
                },
            },
            "lowers",
        ),
        (
            {
                "name": "r",
                "key": "k",
                "value": 1,
                "schedule": {"steps": [{"at": "2026-01-01T00:00:00", "percentage": 5}]},
            },
            "zone",
        ),
        (
            {
                "name": "r",
                "key": "k",
                "value": 1,
                "rules": [{"attribute": "a", "op": "like", "value": 1}],
            },
            "unknown op",
        ),
        (
            {
                "name": "r",
                "key": "k",
                "value": 1,
                "rules": [{"attribute": "a", "op": "regex", "value": "("}],
            },
            "invalid regex",
        ),
        ({"name": "r", "key": "k", "value": 1, "canary": {}}, "canary"),
        ({"name": "r", "key": "k", "value": 1, "state": {"status": "sleeping"}}, "status"),
    ],
)
def test_from_json_refuses_bad_entries(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RolloutSet.from_json([entry])


def test_from_json_refuses_duplicates_and_non_arrays() -> None:
    with pytest.raises(ValueError, match="twice"):
        RolloutSet.from_json([{"name": "r", "kind": "flag"}, {"name": "r", "kind": "flag"}])
    with pytest.raises(ValueError, match="array"):
        RolloutSet.from_json({"name": "r"})  # type: ignore[arg-type]  # the point of the test


def test_naive_now_is_refused() -> None:
    rs = RolloutSet.from_json(
        [{"name": "r", "key": "k", "value": 1, "start": "2026-01-01T00:00:00Z"}]
    )
    with pytest.raises(ValueError, match="timezone"):
        rs.evaluate("k", 0, {}, now=datetime(2026, 1, 2))  # noqa: DTZ001 - the point of the test


# --------------------------------------------------------------------------- snapshots


def test_snapshot_json_carries_rollouts_and_old_entries_still_decode() -> None:
    rollouts = tuple(
        RolloutSet.from_json([{"name": "r", "key": "k", "value": 1, "percentage": 50}]).to_json()
    )
    snap = CachedSnapshot(
        app="a",
        env="e",
        version=2,
        commit=None,
        checksum="c",
        values={"k": 0},
        updated_at=NOW,
        rollouts=rollouts,
    )
    text = encode_snapshot(snap)
    assert json.loads(text)["rollouts"] == list(rollouts)
    assert decode_snapshot(text) == snap
    old = json.loads(text)
    del old["rollouts"]
    assert decode_snapshot(json.dumps(old)).rollouts == ()
    old["rollouts"] = {"r": 1}
    with pytest.raises(ValueError, match="rollouts"):
        decode_snapshot(json.dumps(old))


def test_checksum_of_a_pair_without_rollouts_is_unchanged() -> None:
    assert snapshot_checksum({"a": 1}) == checksum({"a": 1})
    assert snapshot_checksum({"a": 1}, [{"name": "r"}]) != checksum({"a": 1})


# --------------------------------------------------------------------------- regex safety


@pytest.mark.parametrize(
    "pattern",
    [
        r"(a+)+$",
        r"(a*)*b",
        r"^(\w+\s?)*$",
        r"([a-z]+\.){2,}",
        r"(a|aa)*c",
        r"(x|.)*y",
        r"((ab)*)+",
        r"(.*a){12}",
        r"^([a-zA-Z0-9]+\.?)*@x\.com$",
    ],
)
def test_catastrophic_regexes_are_flagged(pattern: str) -> None:
    assert backtracking_risk(pattern) is not None


@pytest.mark.parametrize(
    "pattern",
    [
        r"^[a-z]+$",
        r"^\d{1,3}(\.\d{1,3}){3}$",
        r"(ab|cd)*",
        r".*foo.*",
        r"(?>a+)+",
        r"a*+b",
        r"^(DE|AT|CH)$",
        r"(\w|\d)+$",
        r"@example\.com$",
        r"^(foo|bar)+$",
    ],
)
def test_ordinary_regexes_pass(pattern: str) -> None:
    assert backtracking_risk(pattern) is None
