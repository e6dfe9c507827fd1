"""PostgreSQL: a unit of work in a handful of round trips.

On PostgreSQL every statement is a round trip to the server, and SQLAlchemy's own work per
statement (building, compiling, typing each parameter and row) costs as much again: the
unit of work of a one-app commit took 16 statements and about 20 times the floor's
transaction (``bench/propagation.py``). The statements here do what the aggregate modules'
do, each in one statement whatever the number of rows, with the rows passed as one JSON
document (``jsonb_to_recordset``) and run on the session's psycopg connection itself, in
its transaction (no compilation, no result wrapping; a driver error leaves as
SQLAlchemy's, which the store turns into ``StoreError``):

- :func:`lock` takes the writer lock, bounded by the lock timeout, and reads the fencing
  epoch (``FOR SHARE``) in the same statement;
- :func:`read_ahead` reads what a writer reads first: commit statuses, cursors, the heads
  of some apps (or all), every rollout state, pin and quarantine;
- :func:`flush` writes what a unit of work queued: versions (key changes included), commit
  rows, audit rows, outbox messages (in order: the relay publishes by ascending id) and
  cursors.

SQLite, in process, has no round trip to save and keeps the aggregate modules' statements;
the store tests run every behaviour on both backends.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from configctl.adapters.store.versions import version_row
from configctl.core.records import NewVersion, PinRecord, VersionHead, VersionRecord

_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=lambda o: _iso(o))


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _doc(rows: Sequence[Mapping[str, Any]]) -> str:
    return _JSON.encode(list(rows))


def _run(s: Session | Connection, sql: str, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """Run ``sql`` on the psycopg connection of ``s`` (a session or a connection), in its
    transaction; its first row (None if it returns none)."""
    import psycopg

    conn = s.connection() if isinstance(s, Session) else s
    raw = cast("psycopg.Connection[tuple[Any, ...]]", conn.connection.driver_connection)
    try:
        with raw.cursor() as cur:
            cur.execute(sql.encode(), params)
            return cur.fetchone() if cur.description is not None else None
    except psycopg.Error as exc:
        raise sa_exc.DBAPIError.instance(sql, params, exc, psycopg.Error) from exc


def _one(s: Session | Connection, sql: str, params: Mapping[str, Any]) -> tuple[Any, ...]:
    """The one row of a ``SELECT`` without ``FROM`` filtering (always there)."""
    row = _run(s, sql, params)
    if row is None:  # pragma: no cover - such a SELECT always returns its row
        raise sa_exc.InterfaceError(sql, params, RuntimeError("no row"))
    return row


# --------------------------------------------------------------------------- lock


# The FROM clause sets, for this transaction only, the lock timeout (before the lock is
# waited for) and generic plans: the statements of a unit of work are prepared (psycopg
# prepares a statement's fifth run), and a generic plan is made once, where PostgreSQL's
# default keeps planning these small, many-table statements at every call.
_LOCK = (
    "SELECT pg_advisory_xact_lock(%(k)s) AS locked{fence} "
    "FROM (SELECT set_config('lock_timeout', %(t)s, true), "
    "set_config('plan_cache_mode', 'force_generic_plan', true)) AS settings"
)
_FENCE = ", (SELECT epoch FROM leader_lease WHERE name = %(n)s FOR SHARE) AS epoch"


def lock(s: Session | Connection, key: int, timeout_ms: int, fence: str | None) -> int | None:
    """Take the writer lock for the rest of the transaction, waiting at most
    ``timeout_ms``; with ``fence`` (a lease name) return its epoch, read ``FOR SHARE`` once
    the lock is held (acquiring an epoch takes the writer lock too, so it cannot move
    between the two), else None."""
    params: dict[str, Any] = {"k": key, "t": f"{max(1, timeout_ms)}ms"}
    if fence is not None:
        params["n"] = fence
    row = _one(s, _LOCK.format(fence=_FENCE if fence else ""), params)
    return int(row[1]) if fence is not None and row[1] is not None else None


# --------------------------------------------------------------------------- reads


@dataclass(frozen=True, slots=True)
class WriterReads:
    statuses: dict[str, str | None]
    cursors: dict[str, Any]
    heads: dict[tuple[str, str], VersionHead]
    versions: dict[tuple[str, str], VersionRecord]
    """The newest version of each pair of the apps asked for, snapshot included."""
    rollout_states: dict[tuple[str, str], dict[str, dict[str, Any]]]
    pins: list[PinRecord]
    quarantines: dict[tuple[str, str], dict[str, Any]]


_READ_AHEAD = """
WITH head AS (
  SELECT v.* FROM versions v
  JOIN (SELECT app, env, max(number) AS number FROM versions
        WHERE %(all)s OR %(rollbacks)s OR app = ANY(%(apps)s) GROUP BY app, env) h
    ON v.app = h.app AND v.env = h.env AND v.number = h.number
  WHERE %(all)s OR v.app = ANY(%(apps)s) OR (%(rollbacks)s AND v.reason <> 'commit')
)
SELECT
  (SELECT coalesce(json_object_agg(sha, status), '{}'::json) FROM commits WHERE sha = ANY(%(shas)s)),
  (SELECT coalesce(json_object_agg(name, value), '{}'::json) FROM sync_state WHERE name = ANY(%(names)s)),
  (SELECT coalesce(json_agg(json_build_array(app, env, number, checksum, commit_sha, reason)), '[]'::json)
     FROM head),
  (SELECT coalesce(json_agg(json_build_array(app, env, number, "values", checksum, commit_sha, reason,
                                               actor, created_at, rolled_back_to, rollouts)), '[]'::json)
     FROM head WHERE app = ANY(%(apps)s)),
  (SELECT coalesce(json_agg(json_build_array(app, env, key, state) ORDER BY app, env, key), '[]'::json)
     FROM rollout_state),
  (SELECT coalesce(json_agg(json_build_array(app, env, version, reason, actor, created_at, quarantined_commit)
                             ORDER BY app, env), '[]'::json)
     FROM pins),
  (SELECT coalesce(json_agg(json_build_array(app, env, commit_sha, checksum, version) ORDER BY app, env), '[]'::json)
     FROM quarantines)
"""


def read_ahead(
    s: Session, *, commits: Collection[str], cursors: Collection[str], apps: Collection[str] | None
) -> WriterReads:
    """In one statement: the status of ``commits``, the values of ``cursors``, the heads of
    ``apps`` with every pair a rollback holds (every pair when None) and the snapshots of
    the apps' heads (none when None), every rollout state, pin and quarantine, as the
    aggregate modules' reads give them."""
    every = apps is None
    params = {
        "shas": list(commits),
        "names": list(cursors),
        "all": every,
        "rollbacks": not every,
        "apps": sorted(apps or ()),
    }
    statuses_raw, cursors_raw, heads_raw, versions_raw, states_raw, pins_raw, quarantines_raw = (
        _one(s, _READ_AHEAD, params)
    )
    states: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for app, env, key, state in states_raw:
        states.setdefault((app, env), {})[key] = dict(state or {})
    return WriterReads(
        statuses={sha: statuses_raw.get(sha) for sha in commits},
        cursors={name: cursors_raw.get(name) for name in cursors},
        heads={
            (app, env): VersionHead(
                app=app, env=env, number=number, checksum=digest, commit_sha=sha, reason=reason
            )
            for app, env, number, digest, sha, reason in heads_raw
        },
        versions={
            (app, env): VersionRecord(
                app=app,
                env=env,
                number=number,
                values=values,
                checksum=digest,
                commit_sha=sha,
                reason=reason,
                actor=actor,
                created_at=datetime.fromisoformat(created),
                rolled_back_to=rolled_back_to,
                rollouts=tuple(rollouts or ()),
            )
            for app, env, number, values, digest, sha, reason, actor, created, rolled_back_to, rollouts in versions_raw
        },
        rollout_states=states,
        pins=[
            PinRecord(
                app=app,
                env=env,
                version=version,
                reason=reason,
                actor=actor,
                created_at=datetime.fromisoformat(created),
                quarantined_commit=commit,
            )
            for app, env, version, reason, actor, created, commit in pins_raw
        ],
        quarantines={
            (app, env): {"commit": commit, "checksum": digest, "version": version}
            for app, env, commit, digest, version in quarantines_raw
        },
    )


# --------------------------------------------------------------------------- writes


_FLUSH = """
WITH v AS (
  INSERT INTO versions (app, env, number, "values", checksum, commit_sha, reason, rolled_back_to,
                        actor, created_at, rollouts, changes)
  SELECT app, env, number, "values", checksum, commit_sha, reason, rolled_back_to, actor,
         created_at, rollouts, changes
  FROM jsonb_to_recordset(%(versions)s::jsonb) AS r(
    o int, app text, env text, number int, "values" jsonb, checksum text, commit_sha text,
    reason text, rolled_back_to int, actor text, created_at timestamptz, rollouts jsonb,
    changes jsonb)
  ORDER BY o
), c AS (
  INSERT INTO commits (sha, parents, author_name, author_email, authored_at, committer_name,
                       committer_email, committed_at, message, signature_status, signer, status,
                       reason, recorded_at)
  SELECT sha, parents, author_name, author_email, authored_at, committer_name, committer_email,
         committed_at, message, signature_status, signer, status, reason, recorded_at
  FROM jsonb_to_recordset(%(commits)s::jsonb) AS r(
    sha text, parents jsonb, author_name text, author_email text, authored_at timestamptz,
    committer_name text, committer_email text, committed_at timestamptz, message text,
    signature_status text, signer text, status text, reason text, recorded_at timestamptz)
  ON CONFLICT (sha) DO UPDATE SET
    parents = excluded.parents, author_name = excluded.author_name,
    author_email = excluded.author_email, authored_at = excluded.authored_at,
    committer_name = excluded.committer_name, committer_email = excluded.committer_email,
    committed_at = excluded.committed_at, message = excluded.message,
    signature_status = excluded.signature_status, signer = excluded.signer,
    status = excluded.status, reason = excluded.reason, recorded_at = excluded.recorded_at
), a AS (
  INSERT INTO audit_log (at, actor, host, action, app, env, commit_sha, version, details)
  SELECT at, actor, host, action, app, env, commit_sha, version, coalesce(details, '{}')
  FROM jsonb_to_recordset(%(audit)s::jsonb) AS r(
    o int, at timestamptz, actor text, host text, action text, app text, env text,
    commit_sha text, version int, details jsonb)
  ORDER BY o
), ob AS (
  INSERT INTO outbox (event_id, routing_key, payload, created_at, published_at, attempts, last_error)
  SELECT event_id, routing_key, payload, created_at, NULL, 0, NULL
  FROM jsonb_to_recordset(%(outbox)s::jsonb) AS r(
    o int, event_id text, routing_key text, payload jsonb, created_at timestamptz)
  ORDER BY o
), st AS (
  INSERT INTO sync_state (name, value, updated_at)
  SELECT name, value, %(now)s FROM jsonb_to_recordset(%(cursors)s::jsonb) AS r(name text, value jsonb)
  ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
), gone AS (
  DELETE FROM sync_state WHERE name = ANY(%(gone)s)
)
SELECT 1
"""


def flush(
    s: Session,
    *,
    versions: Sequence[tuple[NewVersion, int, datetime]] = (),
    commits: Sequence[Mapping[str, Any]] = (),
    audit: Sequence[Mapping[str, Any]] = (),
    outbox: Sequence[Mapping[str, Any]] = (),
    cursors: Mapping[str, Any] | None = None,
    now: datetime,
) -> None:
    """Write, in one statement: ``versions`` (each ``(version, number, made at)``,
    numbered by the caller under the writer lock; key changes included), commit rows
    (upserts; one row per sha), audit rows and outbox messages (in order) and ``cursors``
    (``None`` deletes one)."""
    cursors = cursors or {}
    if not (versions or commits or audit or outbox or cursors):
        return
    _run(
        s,
        _FLUSH,
        {
            "versions": _doc(
                [{**version_row(v, n, at), "o": o} for o, (v, n, at) in enumerate(versions)]
            ),
            "commits": _doc(commits),
            "audit": _doc([{**row, "o": i} for i, row in enumerate(audit)]),
            "outbox": _doc([{**row, "o": i} for i, row in enumerate(outbox)]),
            "cursors": _doc([{"name": n, "value": v} for n, v in cursors.items() if v is not None]),
            "gone": [n for n, v in cursors.items() if v is None],
            "now": now,
        },
    )
