"""CachedSnapshot and its JSON codec (configctl.core.cache), and the documented Redis layout."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from configctl.core.cache import CachedSnapshot, decode_snapshot, encode_snapshot

ROOT = Path(__file__).resolve().parents[3]
NOW = datetime(2025, 3, 14, 9, 26, 53, 120000, tzinfo=UTC)


def snap(**kw: object) -> CachedSnapshot:
    fields: dict[str, object] = {
        "app": "billing",
        "env": "prod",
        "version": 3,
        "commit": "a" * 40,
        "checksum": "sha256:abc",
        "values": {"database": {"host": "db", "port": 5432}, "flags": [1, 2], "ünï": "cödé"},
        "updated_at": NOW,
    }
    fields.update(kw)
    return CachedSnapshot(**fields)  # type: ignore[arg-type]


def test_round_trip() -> None:
    s = snap()
    assert decode_snapshot(encode_snapshot(s)) == s
    assert decode_snapshot(encode_snapshot(s).encode()) == s


def test_encoding_is_deterministic_and_compact() -> None:
    a = encode_snapshot(snap(values={"b": 1, "a": 2}))
    b = encode_snapshot(snap(values={"a": 2, "b": 1}))
    assert a == b
    assert ", " not in a
    doc = json.loads(a)
    assert list(doc) == sorted(doc)
    assert doc["updated_at"] == "2025-03-14T09:26:53.120000Z"


def test_updated_at_is_normalised_to_utc() -> None:
    local = NOW.astimezone(timezone(timedelta(hours=2)))
    assert json.loads(encode_snapshot(snap(updated_at=local)))["updated_at"].endswith("Z")


def test_null_commit() -> None:
    assert decode_snapshot(encode_snapshot(snap(commit=None))).commit is None


@pytest.mark.parametrize(
    "kw",
    [
        {"app": "Billing"},
        {"app": "bill:ing"},
        {"env": "prod/../x"},
        {"env": ""},
        {"version": 0},
        {"version": True},
        {"checksum": ""},
        {"updated_at": datetime(2025, 1, 1)},  # noqa: DTZ001 - the point: a naive time is refused
    ],
)
def test_invalid_snapshot_is_refused(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        snap(**kw)


def test_nan_is_not_encoded() -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - json's own message
        encode_snapshot(snap(values={"x": float("nan")}))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "[]",
        '{"app":"billing"}',
        json.dumps({**json.loads(encode_snapshot(snap())), "version": "3"}),
        json.dumps({**json.loads(encode_snapshot(snap())), "values": []}),
        json.dumps({**json.loads(encode_snapshot(snap())), "updated_at": "yesterday"}),
        json.dumps({**json.loads(encode_snapshot(snap())), "updated_at": "2025-01-01T00:00:00"}),
        json.dumps({**json.loads(encode_snapshot(snap())), "app": "BAD"}),
        json.dumps({**json.loads(encode_snapshot(snap())), "commit": 5}),
    ],
)
def test_decode_rejects_damaged(text: str) -> None:
    with pytest.raises(ValueError) as info:  # noqa: PT011 - each case has its own message
        decode_snapshot(text)
    assert "db" not in str(info.value)  # never quotes the content


def test_redis_layout_doc_matches_module_docstring() -> None:
    from configctl.adapters import redis_cache

    doc = (ROOT / "docs" / "redis-layout.md").read_text(encoding="utf-8")
    assert redis_cache.__doc__ is not None
    assert redis_cache.__doc__.strip() == doc.strip()
