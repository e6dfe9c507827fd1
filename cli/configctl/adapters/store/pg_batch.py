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
  epoch (``FOR SHARE``) in the same statement; :func:`begin` sends the ``BEGIN`` with it,
  in one round trip (psycopg's pipeline mode), where the driver would send it alone;
- :func:`read_ahead` reads what a writer reads first: commit statuses, cursors, the heads
  of some apps (or all), every rollout state, pin and quarantine;
- :func:`flush` writes what a unit of work queued: versions (key changes included; their
  document is read as ``json``, not ``jsonb``: only the snapshots are parsed, and the key
  changes, a ``json`` column, are kept as the text they came as), commit
  rows, audit rows, outbox messages (in order: the relay publishes by ascending id) and
  cursors.

A unit of work is then two round trips, one less than the least transaction that writes
one row (``BEGIN``, ``INSERT``, ``COMMIT``): ``BEGIN`` with the lock and the reads
(``read_ahead(begin=...)``), then the writes with the ``COMMIT`` (``COMMIT_WITH_AT_MOST``).
A writer that remembers the reads (``adapters.store.memory``; the guard, migration 0005)
makes it one: the lock, the writes and the guard in one statement (:data:`_LOCKED_WRITES`).

SQLite, in process, has no round trip to save and keeps the aggregate modules' statements;
the store tests run every behaviour on both backends.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Connection
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from configctl.adapters.store.engine import json_dumps
from configctl.adapters.store.versions import version_rows
from configctl.core.records import NewVersion, PinRecord, VersionHead, VersionRecord

if TYPE_CHECKING:  # imported where used: SQLite users do not pay for it
    from typing import TypeAlias

    import psycopg

    Target: TypeAlias = Session | Connection | psycopg.Connection[tuple[Any, ...]]
    """Where the statements run: a session, a connection, or the psycopg connection under
    one (a unit of work keeps it: asking SQLAlchemy each time costs a small statement)."""


def _doc(rows: Sequence[Mapping[str, Any]]) -> str:
    return json_dumps(list(rows))


def driver(s: Session | Connection) -> psycopg.Connection[tuple[Any, ...]]:
    """The psycopg connection under ``s``, in its transaction."""
    conn = s.connection() if isinstance(s, Session) else s
    return cast("psycopg.Connection[tuple[Any, ...]]", conn.connection.driver_connection)


def _raw(s: Target) -> psycopg.Connection[tuple[Any, ...]]:
    return driver(s) if isinstance(s, (Session, Connection)) else s


def _run(s: Target, sql: str, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """Run ``sql`` on the psycopg connection of ``s`` (a session or a connection), in its
    transaction; its first row (None if it returns none)."""
    return _pipeline(s, [(sql, params)])[0]


def _one(s: Target, sql: str, params: Mapping[str, Any]) -> tuple[Any, ...]:
    """The one row of a ``SELECT`` without ``FROM`` filtering (always there)."""
    return _present(_run(s, sql, params), sql)


def _present(row: tuple[Any, ...] | None, sql: str) -> tuple[Any, ...]:
    if row is None:  # pragma: no cover - a SELECT without FROM filtering returns its row
        raise sa_exc.InterfaceError(sql, None, RuntimeError("no row"))
    return row


def _pipeline(
    s: Target, statements: Iterable[tuple[str, Mapping[str, Any] | None]]
) -> list[tuple[Any, ...] | None]:
    """Run ``statements`` in order on the psycopg connection of ``s``, sent together in one
    round trip (psycopg's pipeline mode) when there are several; the first row of each
    (None if it returns none). The first that fails fails the rest (the server skips
    them) and its error is raised.

    Each statement is sent as soon as the iterable gives it: the server works on one
    while the next is made (see :func:`flush`)."""
    import psycopg

    raw = _raw(s)
    sent: list[str] = []
    try:
        if isinstance(statements, Sequence) and len(statements) == 1:
            with raw.cursor() as cur:
                sql, params = statements[0]
                sent.append(sql)
                cur.execute(sql.encode(), params)
                return [cur.fetchone() if cur.description is not None else None]
        cursors: list[psycopg.Cursor[tuple[Any, ...]]] = []
        try:
            with raw.pipeline():
                for sql, params in statements:
                    sent.append(sql)
                    cur = raw.cursor()
                    cursors.append(cur)
                    cur.execute(sql.encode(), params)
            return [cur.fetchone() if cur.description is not None else None for cur in cursors]
        finally:
            for cur in cursors:
                cur.close()
    except psycopg.Error as exc:
        raise sa_exc.DBAPIError.instance("; ".join(sent), None, exc, psycopg.Error) from exc


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


@dataclass(frozen=True, slots=True)
class WriterLock:
    """The writer lock of a store: its advisory-lock key, how long to wait for it, and the
    lease whose epoch to read with it (fencing), if any."""

    key: int
    timeout_ms: int
    fence: str | None = None

    def statement(self) -> tuple[str, dict[str, Any]]:
        params: dict[str, Any] = {"k": self.key, "t": f"{max(1, self.timeout_ms)}ms"}
        if self.fence is not None:
            params["n"] = self.fence
        return _LOCK.format(fence=_FENCE if self.fence else ""), params

    def epoch(self, row: tuple[Any, ...] | None) -> int | None:
        """The epoch in the lock statement's row (None without a fence)."""
        if self.fence is None or row is None or row[1] is None:
            return None
        return int(row[1])


_BEGIN: tuple[str, None] = ("BEGIN", None)


def lock(s: Target, writer: WriterLock) -> int | None:
    """Take the writer lock for the rest of the transaction (begun by the driver), waiting
    at most its timeout; with a fence return the lease's epoch, read ``FOR SHARE`` once
    the lock is held (acquiring an epoch takes the writer lock too, so it cannot move
    between the two), else None."""
    sql, params = writer.statement()
    return writer.epoch(_one(s, sql, params))


def begin(s: Target, writer: WriterLock) -> int | None:
    """``BEGIN`` and :func:`lock`, in one round trip, on a session in autocommit mode (the
    driver sends no ``BEGIN`` of its own); the epoch as :func:`lock` gives it."""
    return writer.epoch(_pipeline(s, [_BEGIN, writer.statement()])[1])


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
    epoch: int | None = None
    """The fencing epoch, when the reads began the transaction (``read_ahead(begin=...)``)."""
    generation: str | None = None
    """The store's generation the reads saw (migration 0005; ``adapters.store.memory``)."""


# The heads: of every pair (a scan, as the whole store is asked for), or of the apps in
# scope and the pairs a rollback holds, through the indexes: (app, env, number) for the
# apps and the newest version of each pair, the partial ``ix_versions_held`` for the
# pairs a rollback or release ever wrote to. Two statements, not one with a flag: a
# generic plan of "flag OR condition" cannot use an index.
_HEADS_ALL = """
WITH head AS (
  SELECT v.* FROM versions v
  JOIN (SELECT app, env, max(number) AS number FROM versions GROUP BY app, env) h
    ON v.app = h.app AND v.env = h.env AND v.number = h.number
)"""
_HEADS_SCOPED = """
WITH pairs AS (
  SELECT DISTINCT app, env FROM versions WHERE app = ANY(%(apps)s)
  UNION
  SELECT DISTINCT app, env FROM versions WHERE reason <> 'commit'
), head AS (
  SELECT v.* FROM pairs p
  CROSS JOIN LATERAL (SELECT * FROM versions v WHERE v.app = p.app AND v.env = p.env
                      ORDER BY v.number DESC LIMIT 1) v
  WHERE v.app = ANY(%(apps)s) OR v.reason <> 'commit'
)"""
_READ_AHEAD = """
SELECT
  (SELECT coalesce(json_object_agg(sha, status), '{}'::json) FROM commits WHERE sha = ANY(%(shas)s)),
  (SELECT coalesce(json_object_agg(name, value), '{}'::json) FROM sync_state WHERE name = ANY(%(names)s)),
  (SELECT coalesce(json_agg(json_build_array(app, env, number, checksum, commit_sha, reason)), '[]'::json)
     FROM head),
  (SELECT coalesce(json_agg(json_build_array(app, env, number, "values", checksum, commit_sha, reason,
                                               actor, created_at, rolled_back_to, rollouts)), '[]'::json)
     FROM head h WHERE app = ANY(%(apps)s) AND NOT EXISTS (
       SELECT FROM unnest(%(same_apps)s::text[], %(same_envs)s::text[], %(same_sums)s::text[]) AS s(app, env, checksum)
       WHERE s.app = h.app AND s.env = h.env AND s.checksum = h.checksum)),
  (SELECT coalesce(json_agg(json_build_array(app, env, key, state) ORDER BY app, env, key), '[]'::json)
     FROM rollout_state),
  (SELECT coalesce(json_agg(json_build_array(app, env, version, reason, actor, created_at, quarantined_commit)
                             ORDER BY app, env), '[]'::json)
     FROM pins),
  (SELECT coalesce(json_agg(json_build_array(app, env, commit_sha, checksum, version) ORDER BY app, env), '[]'::json)
     FROM quarantines),
  (SELECT token || ':' || n FROM writer_generation WHERE id = 1)
"""


def read_ahead(
    s: Target,
    *,
    commits: Collection[str],
    cursors: Collection[str],
    apps: Collection[str] | None,
    begin: WriterLock | None = None,
    unchanged: Mapping[tuple[str, str], str] | None = None,
) -> WriterReads:
    """In one statement: the status of ``commits``, the values of ``cursors``, the heads of
    ``apps`` with every pair a rollback holds (every pair when None) and the snapshots of
    the apps' heads (none when None), every rollout state, pin and quarantine, as the
    aggregate modules' reads give them.

    With ``begin`` the reads open the transaction: ``BEGIN``, the writer lock and the
    reads in one round trip (on a session in autocommit mode, as :func:`begin`). Each
    statement takes its own snapshot (READ COMMITTED), so the reads see what committed
    before the lock was held; the lock's epoch comes back in ``epoch``, for the caller
    to check before it uses the reads.

    ``unchanged``: checksums of pairs of ``apps`` the caller has: the snapshot of a head
    that has that checksum is not read (its pair does not change; nor is it sent back)."""
    same = sorted((app, env, digest) for (app, env), digest in (unchanged or {}).items())
    params = {
        "shas": list(commits),
        "names": list(cursors),
        "apps": sorted(apps or ()),
        "same_apps": [app for app, _, _ in same],
        "same_envs": [env for _, env, _ in same],
        "same_sums": [digest for _, _, digest in same],
    }
    sql = (_HEADS_ALL if apps is None else _HEADS_SCOPED) + _READ_AHEAD
    epoch: int | None = None
    if begin is None:
        row = _one(s, sql, params)
    else:
        _, locked, read = _pipeline(s, [_BEGIN, begin.statement(), (sql, params)])
        epoch, row = begin.epoch(locked), _present(read, sql)
    statuses_raw, cursors_raw, heads_raw, versions_raw, states_raw, pins_raw, quarantines_raw, generation = row
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
        epoch=epoch,
        generation=generation,
    )


# --------------------------------------------------------------------------- the guard


MOVED_ON = "CC001"
"""The SQLSTATE the guard raises when the store moved on (migration 0005)."""

# The guard: a statement that begins after the lock is held (a statement's snapshot is
# taken as it begins, so not the lock's own); ``configctl_moved_on`` raises CC001 and the
# server skips what follows. It ends the writes' statement (:func:`flush`), or stands
# alone before a unit of work's first other statement (:func:`opening`); in the one
# statement that also takes the lock (:data:`_LOCKED_WRITES`) the generation is checked by
# moving it on instead. The lease is read FOR SHARE (its newest version, whatever the
# snapshot); a commit recorded since the snapshot moved the generation on, so the commits
# need no lock.
_GENERATION_HELD = """
  WHEN NOT EXISTS (SELECT FROM writer_generation WHERE id = 1 AND token || ':' || n = %(g)s FOR SHARE)
    THEN configctl_moved_on('generation')"""
_GUARD_CASES = """
  WHEN EXISTS (SELECT FROM commits WHERE sha = ANY(%(absent)s))
    THEN configctl_moved_on('commits')
  WHEN %(lease)s::text IS NOT NULL AND NOT EXISTS (
      SELECT FROM leader_lease WHERE name = %(lease)s AND epoch = %(epoch)s FOR SHARE)
    THEN configctl_moved_on('epoch')
  ELSE true
END"""
_GUARD = "SELECT CASE" + _GENERATION_HELD + _GUARD_CASES


@dataclass(frozen=True, slots=True)
class Guard:
    """What a unit of work answered from memory (``adapters.store.memory``) takes for
    granted, checked under the writer lock before anything it wrote can commit: the store
    is at ``generation``, no commit of ``absent`` is recorded, and the lease of ``fence``
    still has its epoch."""

    writer: WriterLock
    generation: str
    absent: Sequence[str] = ()
    fence: tuple[str, int] | None = None

    def params(self) -> dict[str, Any]:
        return {
            "g": self.generation,
            "absent": list(self.absent),
            "lease": None if self.fence is None else self.fence[0],
            "epoch": None if self.fence is None else self.fence[1],
        }

    def lock(self) -> tuple[str, dict[str, Any]]:
        """The writer lock alone: the guard checks the fence."""
        return WriterLock(self.writer.key, self.writer.timeout_ms).statement()


def opening(guard: Guard) -> list[tuple[str, Mapping[str, Any] | None]]:
    """``BEGIN``, the writer lock and the guard, to send before anything else a unit of
    work answered from memory sends, when that is not its writes (:func:`flush` takes the
    guard with them)."""
    return [_BEGIN, guard.lock(), (_GUARD, guard.params())]


def next_generation(generation: str) -> str:
    """The generation after one transaction's writes (the triggers move it on once per
    transaction that writes: migration 0005)."""
    token, _, n = generation.rpartition(":")
    return f"{token}:{int(n) + 1}"


def run(s: Target, statements: Sequence[tuple[str, Mapping[str, Any] | None]]) -> None:
    """Run ``statements`` in one round trip (see :func:`_pipeline`)."""
    _pipeline(s, statements)


# --------------------------------------------------------------------------- writes


_WRITES_CTES = """v AS (
  INSERT INTO versions (app, env, number, "values", checksum, commit_sha, reason, rolled_back_to,
                        actor, created_at, rollouts, changes)
  SELECT app, env, number, "values", checksum, commit_sha, reason, rolled_back_to, actor,
         created_at, rollouts, changes
  FROM json_to_recordset(%(versions)s::json) AS r(
    o int, app text, env text, number int, "values" jsonb, checksum text, commit_sha text,
    reason text, rolled_back_to int, actor text, created_at timestamptz, rollouts jsonb,
    changes json)
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
"""
_WRITES = "\nWITH " + _WRITES_CTES
_FLUSH = _WRITES + "SELECT 1"
_FLUSH_GUARDED = _WRITES + _GUARD
"""The writes ending with the guard: if it raises, the statement (the writes) fails whole."""
_LOCK_FIRST = """
WITH lk AS MATERIALIZED (
  SELECT pg_advisory_xact_lock(%(k)s)
  FROM (SELECT set_config('lock_timeout', %(t)s, true),
               set_config('configctl.generation_moved', 'on', true)) AS settings
), gen AS (
  UPDATE writer_generation SET n = n + 1
  WHERE id = 1 AND token || ':' || n = %(g)s AND EXISTS (SELECT FROM lk)
  RETURNING n
), """
_GENERATION_MOVED = """SELECT CASE
  WHEN NOT EXISTS (SELECT FROM gen) THEN configctl_moved_on('generation')"""
_LOCKED_WRITES = _LOCK_FIRST + _WRITES_CTES + _GENERATION_MOVED + _GUARD_CASES
"""A unit of work answered from memory, whole, as one statement outside a transaction
block: PostgreSQL runs it in a transaction of its own, committed when it succeeds: one
message and one answer (no ``BEGIN``, no ``COMMIT``).

Its snapshot is older than the writer lock it may wait for, so the generation is checked
by moving it on (``gen``): an ``UPDATE`` finds a row another transaction changed and
committed as it is now, and updates nothing if that is not the remembered generation. The
lock is taken in the same condition, before the row is updated; the triggers then leave
the generation alone (``configctl.generation_moved``). The guard's CASE raises when no row
was updated, then checks the commits and the fence as :data:`_GUARD` does. The writes run
to completion whatever the order; if the guard raises, the statement fails whole."""


ANALYZE_AFTER = 1000
"""A flush that writes this many versions or more (a first apply) analyzes ``versions``:
the writer's reads are prepared with generic plans, made once per connection, and a plan
made before the planner knows the rows would scan the table where an index answers
(autovacuum analyzes too, but later). Only the columns the writer's reads filter on: the
snapshots and key changes are most of the bytes, and their statistics serve no plan."""


def flush(
    s: Target,
    *,
    versions: Sequence[tuple[NewVersion, int, datetime]] = (),
    commits: Sequence[Mapping[str, Any]] = (),
    audit: Sequence[Mapping[str, Any]] = (),
    outbox: Sequence[Mapping[str, Any]] = (),
    cursors: Mapping[str, Any] | None = None,
    now: datetime,
    commit: bool = False,
    guard: Guard | None = None,
) -> None:
    """Write, in one statement (a few for many versions: ``SPLIT_AFTER``) and one round
    trip: ``versions`` (each ``(version, number, made at)``,
    numbered by the caller under the writer lock; key changes included), commit rows
    (upserts; one row per sha), audit rows and outbox messages (in order) and ``cursors``
    (``None`` deletes one); ``ANALYZE versions`` after many versions (``ANALYZE_AFTER``),
    in the same round trip.

    With ``commit`` (the last writes of a transaction) a small flush sends the ``COMMIT``
    with them (``COMMIT_WITH_AT_MOST``), ending the transaction; the server skips it if a
    write fails: the error is raised, nothing is committed. A bigger one leaves the
    ``COMMIT`` to the caller's driver.

    With ``guard`` (a unit of work answered from memory, that has sent nothing yet) a small
    flush with ``commit`` is one statement in a transaction of its own: the writer lock, the
    writes and the guard (:data:`_LOCKED_WRITES`). Otherwise ``BEGIN`` and the writer lock go
    first and the guard ends the (last) writes' statement; with nothing to write, the guard
    alone. If the store moved on, the guard fails its statement and nothing is written."""
    cursors = cursors or {}
    writes = bool(versions or commits or audit or outbox or cursors)
    if not (writes or guard):
        return
    statements: Iterable[tuple[str, Mapping[str, Any] | None]]
    one_part = len(versions) < SPLIT_AFTER
    if guard is not None and writes and commit and len(versions) <= COMMIT_WITH_AT_MOST and one_part:
        # one statement, its own transaction (the driver is in autocommit mode, and this
        # unit of work has sent nothing yet)
        [(_, params)] = list(_flush_statements(versions, commits, audit, outbox, cursors, now, guard))
        _, lock_params = guard.lock()
        _pipeline(s, [(_LOCKED_WRITES, {**(params or {}), **lock_params})])
        return
    if guard is None:
        statements = _flush_statements(versions, commits, audit, outbox, cursors, now)
    elif writes:
        statements = chain([_BEGIN, guard.lock()], _flush_statements(versions, commits, audit, outbox, cursors, now, guard))
    else:
        statements = opening(guard)
    if commit and len(versions) <= COMMIT_WITH_AT_MOST:
        statements = chain(statements, [_COMMIT])
    _pipeline(s, statements)


COMMIT_WITH_AT_MOST = 20
"""A flush of at most this many versions (a commit that changed an app or a few) sends the
``COMMIT`` with its writes, one round trip less: a sixth of a one-app apply. A bigger one
sends it after: the round trip is nothing beside the server's writes, and a writer killed
while the server writes many versions then leaves nothing (the kill proofs catch a big
apply inside its transaction and see it leave nothing)."""
_COMMIT: tuple[str, None] = ("COMMIT", None)


SPLIT_AFTER = 1000
"""A flush of this many versions or more sends them in ``SPLIT_PARTS`` statements, each
as soon as its document is made, so the server inserts one part while the next is
encoded; fewer go with the rest in one statement."""
SPLIT_PARTS = 4
_QUEUED = ("commits", "audit", "outbox", "cursors")
"""The documents of :data:`_FLUSH` besides the versions (empty in all but the last part)."""


def _ordered(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` numbered (``o``) in order, for the ``ORDER BY o`` that keeps ids in order."""
    return [{**row, "o": o} for o, row in enumerate(rows)]


def _flush_statements(
    versions: Sequence[tuple[NewVersion, int, datetime]],
    commits: Sequence[Mapping[str, Any]],
    audit: Sequence[Mapping[str, Any]],
    outbox: Sequence[Mapping[str, Any]],
    cursors: Mapping[str, Any],
    now: datetime,
    guard: Guard | None = None,
) -> Iterator[tuple[str, Mapping[str, Any] | None]]:
    rows = version_rows(versions)
    size = -(-len(rows) // SPLIT_PARTS) if len(rows) >= SPLIT_AFTER else len(rows)
    # Parts run in order, so ``o`` (the id order within a statement) restarts with each.
    parts = [rows[i : i + size] for i in range(0, len(rows), size)] if rows else [rows]
    nothing = _doc([])
    for i, part in enumerate(parts):
        params: dict[str, Any] = {"versions": _doc(_ordered(part)), "now": now}
        if i < len(parts) - 1:
            params |= {**dict.fromkeys(_QUEUED, nothing), "gone": []}
        else:
            params |= {
                "commits": _doc(commits),
                "audit": _doc(_ordered(audit)),
                "outbox": _doc(_ordered(outbox)),
                "cursors": _doc([{"name": k, "value": v} for k, v in cursors.items() if v is not None]),
                "gone": [k for k, v in cursors.items() if v is None],
            }
        # The guard rides with the first part: each part moves the generation on, so a
        # later one would find the writer's own writes.
        if guard is not None and i == 0:
            yield (_FLUSH_GUARDED, params | guard.params())
        else:
            yield (_FLUSH, params)
    if len(versions) >= ANALYZE_AFTER:
        yield ("ANALYZE versions (app, env, number, reason)", None)
