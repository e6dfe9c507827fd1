"""The store read back with plain SQL, and the store fixture of the acceptance tests.

Table names are a documented contract, so a check reads them directly and never trusts
the code it checks. ``backend`` gives each test a fresh empty store: a SQLite file, or a
new PostgreSQL database (those cases carry the ``integration`` marker).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.servers import libpq_url

__all__ = ["TABLES", "Backend", "StoreProbe", "backend"]

TABLES = ("commits", "versions", "key_changes", "audit_log", "outbox", "pins")
"""The tables a write may touch, for before/after row counts. ``key_changes`` counts the
key changes the versions carry (``versions.changes``, a JSON array since revision 0004)."""

_KEY_CHANGES = "SELECT coalesce(sum(json_array_length(changes)), 0) FROM versions"
"""Both backends: ``versions.changes`` is JSON text on PostgreSQL too (``json``)."""


@dataclass
class StoreProbe:
    """Reads a store with plain SQL (table names are a documented contract)."""

    url: str
    """A SQLAlchemy URL (``sqlite:///...`` or ``postgresql+psycopg://...``)."""

    @contextlib.contextmanager
    def _conn(self) -> Iterator[Any]:
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        engine = create_engine(self.url, poolclass=NullPool)
        try:
            with engine.connect() as conn:
                yield conn
        finally:
            engine.dispose()

    def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        from sqlalchemy import text

        with self._conn() as conn:
            return [tuple(r) for r in conn.execute(text(sql), params)]

    def count(self, table: str) -> int:
        from sqlalchemy import inspect

        with self._conn() as conn:
            if table == "key_changes":
                table = "versions"
                sql = _KEY_CHANGES
            else:
                sql = f"SELECT count(*) FROM {table}"  # noqa: S608 - fixed names
            if not inspect(conn).has_table(table):
                return 0
        return int(self.rows(sql)[0][0])

    def counts(self) -> dict[str, int]:
        return {t: self.count(t) for t in TABLES}

    def versions(self) -> dict[tuple[str, str], list[int]]:
        out: dict[tuple[str, str], list[int]] = {}
        for app, env, number in self.rows(
            "SELECT app, env, number FROM versions ORDER BY app, env, number"
        ):
            out.setdefault((app, env), []).append(int(number))
        return out

    def commit_status(self, sha: str) -> str | None:
        found = self.rows("SELECT status FROM commits WHERE sha = :sha", sha=sha)
        return str(found[0][0]) if found else None

    def dump(self) -> str:
        """Every stored text that is not a served snapshot: key changes, audit, outbox, commits."""
        parts = []
        if self.count("versions"):
            parts.append(repr(self.rows("SELECT changes FROM versions")))
        for table in ("audit_log", "outbox", "commits", "pins", "sync_state"):
            if self.count(table):
                parts.append(repr(self.rows(f"SELECT * FROM {table}")))  # noqa: S608 - fixed names
        return "\n".join(parts)


@dataclass
class Backend:
    name: str
    cli_url: str
    """What the user passes as ``--db``."""
    probe: StoreProbe
    admin_url: str | None = None


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)],
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """A fresh empty store: a SQLite file, or a new PostgreSQL database (migrated by the test)."""
    if request.param == "sqlite":
        path = tmp_path / "configctl.db"
        return Backend("sqlite", f"sqlite:///{path}", StoreProbe(f"sqlite:///{path}"))
    url: str = request.getfixturevalue("pg_db_url")
    admin: str = request.getfixturevalue("pg_url")
    return Backend("postgresql", libpq_url(url), StoreProbe(url), admin_url=admin)
