"""A version carries its key changes: a JSON column ``versions.changes``; ``key_changes`` goes.

Revision ID: 0004
Revises: 0003

The key changes of a version were rows of their own, one per dotted key: a first apply of
1,000 apps wrote 300,000 of them, with a foreign key and two indexes to keep up, and was
most of that apply's time on PostgreSQL (``bench/apply.py --profile-initial``). They are
only ever read by version (``history``, ``show``) or by key within one (app, env)
(``history --key``), so they now travel with their version, as a JSON array in key order
of ``{"key", "change", "old", "new"}`` (``old`` and ``new`` left out when NULL, as the
columns held them).

The upgrade moves every row into its version's array (versions without rows get ``[]``)
and drops the table; the downgrade makes the rows again from the arrays.

It also adds ``ix_versions_held``, a partial index of the versions a rollback or release
made (``reason <> 'commit'``): a writer looks at the pairs such a version holds at every
apply, and found them by grouping every version (a scan that grew with the store).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from alembic import op

from configctl.adapters.store.models import IdType, JsonTextType, JsonType

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_BATCH = 1000
HELD_INDEX = "ix_versions_held"
HELD_WHERE = "reason <> 'commit'"

_versions = sa.table("versions", sa.column("id", IdType), sa.column("changes", JsonTextType))
_key_changes = sa.table(
    "key_changes",
    sa.column("id", IdType),
    sa.column("version_id", IdType),
    sa.column("key", sa.String(1024)),
    sa.column("change", sa.String(16)),
    sa.column("old_value", JsonType),
    sa.column("new_value", JsonType),
)


def _grouped(bind: sa.Connection) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """Each version id that has key changes, with them as array items in key order (the
    order the store writes: Python's, not the database's collation)."""
    q = sa.select(
        _key_changes.c.version_id,
        _key_changes.c.key,
        _key_changes.c.change,
        _key_changes.c.old_value,
        _key_changes.c.new_value,
    ).order_by(_key_changes.c.version_id, _key_changes.c.id)
    current: int | None = None
    items: list[dict[str, Any]] = []
    for version_id, key, change, old, new in bind.execute(q):
        if version_id != current:
            if current is not None:
                yield current, sorted(items, key=_by_key)
            current, items = version_id, []
        item: dict[str, Any] = {"key": key, "change": change}
        if old is not None:
            item["old"] = old
        if new is not None:
            item["new"] = new
        items.append(item)
    if current is not None:
        yield current, sorted(items, key=_by_key)


def _by_key(item: dict[str, Any]) -> str:
    return str(item["key"])


def upgrade() -> None:
    with op.batch_alter_table("versions") as batch:
        batch.add_column(sa.Column("changes", JsonTextType, nullable=True))
    bind = op.get_bind()
    update = (
        sa.update(_versions)
        .where(_versions.c.id == sa.bindparam("vid"))
        .values(changes=sa.bindparam("items", type_=JsonTextType))
    )
    batch_rows: list[dict[str, Any]] = []
    for version_id, items in list(_grouped(bind)):
        batch_rows.append({"vid": version_id, "items": items})
        if len(batch_rows) >= _BATCH:
            bind.execute(update, batch_rows)
            batch_rows = []
    if batch_rows:
        bind.execute(update, batch_rows)
    bind.execute(
        sa.update(_versions)
        .where(_versions.c.changes.is_(None))
        .values(changes=sa.literal([], JsonTextType))
    )
    with op.batch_alter_table("versions") as batch:
        batch.alter_column("changes", existing_type=JsonTextType, nullable=False)
    op.drop_index("ix_key_changes_key_version_id", table_name="key_changes")
    op.drop_index("ix_key_changes_version_id", table_name="key_changes")
    op.drop_table("key_changes")
    op.create_index(
        HELD_INDEX,
        "versions",
        ["app", "env"],
        postgresql_where=sa.text(HELD_WHERE),
        sqlite_where=sa.text(HELD_WHERE),
    )


def downgrade() -> None:
    bind = op.get_bind()
    op.drop_index(HELD_INDEX, table_name="versions")
    rows = [
        {
            "version_id": version_id,
            "key": item["key"],
            "change": item["change"],
            "old_value": item.get("old"),
            "new_value": item.get("new"),
        }
        for version_id, items in bind.execute(
            sa.select(_versions.c.id, _versions.c.changes).order_by(_versions.c.id)
        ).all()
        for item in items or ()
    ]
    # The column goes first: on SQLite the batch operation copies ``versions`` into a new
    # table and drops the old one, which would cascade to key changes made before it.
    with op.batch_alter_table("versions") as batch:
        batch.drop_column("changes")
    op.create_table(
        "key_changes",
        sa.Column("id", IdType, autoincrement=True, nullable=False),
        sa.Column("version_id", IdType, nullable=False),
        sa.Column("key", sa.String(1024), nullable=False),
        sa.Column("change", sa.String(16), nullable=False),
        sa.Column("old_value", JsonType, nullable=True),
        sa.Column("new_value", JsonType, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_key_changes"),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["versions.id"],
            name="fk_key_changes_version_id_versions",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_key_changes_version_id", "key_changes", ["version_id"])
    op.create_index("ix_key_changes_key_version_id", "key_changes", ["key", "version_id"])
    for i in range(0, len(rows), _BATCH * 10):
        bind.execute(sa.insert(_key_changes), rows[i : i + _BATCH * 10])
