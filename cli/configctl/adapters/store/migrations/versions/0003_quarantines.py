"""Quarantines get a table of their own: ``quarantines`` (one row per app and environment).

Revision ID: 0003
Revises: 0002

Until now a quarantine was a ``sync_state`` row named ``quarantine:<app>:<env>`` holding
``{"commit", "checksum", "version"}``. The upgrade moves each such row into the new table
(``updated_at`` becomes ``created_at``) and deletes it from ``sync_state``; the downgrade
moves them back. A row whose value lacks a checksum or a version never stopped anything
(the checksum is what apply compares) and is dropped.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from configctl.adapters.store.models import NAME_LENGTH, SHA_LENGTH, JsonType, UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

PREFIX = "quarantine:"

_sync_state = sa.table(
    "sync_state",
    sa.column("name", sa.String(255)),
    sa.column("value", JsonType),
    sa.column("updated_at", UtcDateTime),
)
_quarantines = sa.table(
    "quarantines",
    sa.column("app", sa.String(NAME_LENGTH)),
    sa.column("env", sa.String(NAME_LENGTH)),
    sa.column("commit_sha", sa.String(SHA_LENGTH)),
    sa.column("checksum", sa.String(64)),
    sa.column("version", sa.Integer),
    sa.column("created_at", UtcDateTime),
)


def upgrade() -> None:
    op.create_table(
        "quarantines",
        sa.Column("app", sa.String(NAME_LENGTH), nullable=False),
        sa.Column("env", sa.String(NAME_LENGTH), nullable=False),
        sa.Column("commit_sha", sa.String(SHA_LENGTH), nullable=True),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("app", "env", name="pk_quarantines"),
    )
    bind = op.get_bind()
    legacy = bind.execute(
        sa.select(_sync_state.c.name, _sync_state.c.value, _sync_state.c.updated_at).where(
            _sync_state.c.name.startswith(PREFIX, autoescape=True)
        )
    ).all()
    rows: list[dict[str, Any]] = []
    for name, value, updated_at in legacy:
        app, _, env = name[len(PREFIX) :].partition(":")
        if (
            not isinstance(value, dict)
            or value.get("checksum") is None
            or value.get("version") is None
        ):
            continue
        rows.append(
            {
                "app": app,
                "env": env,
                "commit_sha": value.get("commit"),
                "checksum": value["checksum"],
                "version": int(value["version"]),
                "created_at": updated_at,
            }
        )
    if rows:
        bind.execute(sa.insert(_quarantines), rows)
    bind.execute(
        sa.delete(_sync_state).where(_sync_state.c.name.startswith(PREFIX, autoescape=True))
    )


def downgrade() -> None:
    bind = op.get_bind()
    rows = [
        {
            "name": f"{PREFIX}{app}:{env}",
            "value": {"commit": commit, "checksum": digest, "version": version},
            "updated_at": created_at,
        }
        for app, env, commit, digest, version, created_at in bind.execute(
            sa.select(_quarantines)
        ).all()
    ]
    if rows:
        bind.execute(sa.insert(_sync_state), rows)
    op.drop_table("quarantines")
