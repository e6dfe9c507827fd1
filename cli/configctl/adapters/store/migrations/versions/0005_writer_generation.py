"""PostgreSQL: a generation of what a writer reads, so a writer may remember it.

Revision ID: 0005
Revises: 0004

A writer reads, under the writer lock, the heads of the pairs it may change, commit
statuses, cursors, rollout states, pins and quarantines; on PostgreSQL that read is a round
trip of its own, a third of a one-app apply (``bench/propagation.py``, part 2). Every write
to those tables now moves ``writer_generation`` on (a statement trigger: any writer, any
statement, ``TRUNCATE`` included), so a writer that remembers what it read and wrote, and at
which generation, can skip the read and send its whole unit of work in one round trip. The
first statement after the writer lock, the guard, checks that the
generation is the one the writer remembers, that the commits it takes as never recorded are
not, and that its leader epoch still holds; if not it raises ``CC001``
(``configctl_store_moved_on``) and the server skips the rest: nothing is written, and the
writer runs the unit of work again the ordinary way.

The generation is ``<token>:<n>``: the token (random, made here) tells two databases apart,
so a memory of one never matches another that counted to the same ``n``.

SQLite keeps the table and no trigger: in process, its reads cost no round trip, and its
writer remembers nothing.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

NOT_MOVED = "current_setting('configctl.generation_moved', true) IS DISTINCT FROM 'on'"
"""Checked before the trigger function is called at all: once the generation moved on in a
transaction, its other statements cost no function call."""

#: The tables whose writes move the generation on: everything a writer reads ahead.
WATCHED = ("versions", "commits", "sync_state", "rollout_state", "pins", "quarantines")



def upgrade() -> None:
    generation = op.create_table(
        "writer_generation",
        sa.Column("id", sa.SmallInteger, primary_key=True),
        sa.Column("token", sa.Text, nullable=False),
        sa.Column("n", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(generation, [{"id": 1, "token": uuid.uuid4().hex, "n": 0}])
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE FUNCTION configctl_next_generation() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          -- once per transaction. The triggers' WHEN (NOT_MOVED) spares the call for later
          -- statements; within one statement every WHEN is checked before any trigger
          -- runs (a writes statement fires several), so the function checks again.
          IF current_setting('configctl.generation_moved', true) = 'on' THEN
            RETURN NULL;
          END IF;
          PERFORM set_config('configctl.generation_moved', 'on', true);
          UPDATE writer_generation SET n = n + 1 WHERE id = 1;
          RETURN NULL;
        END $$
        """
    )
    for table in WATCHED:
        op.execute(
            f"CREATE TRIGGER {table}_generation AFTER INSERT OR UPDATE OR DELETE ON {table} "
            f"FOR EACH STATEMENT WHEN ({NOT_MOVED}) EXECUTE FUNCTION configctl_next_generation()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_generation_truncate AFTER TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION configctl_next_generation()"
        )
    # CC001: a SQLSTATE class of our own, never PostgreSQL's (``pg_batch.MOVED_ON``). The
    # guard itself is a plain statement (``pg_batch.opening``), planned once; this only
    # raises, when it has found the store moved on.
    op.execute(
        """
        CREATE FUNCTION configctl_moved_on(why text) RETURNS boolean LANGUAGE plpgsql AS $$
        BEGIN
          RAISE EXCEPTION 'the store moved on: %', why USING ERRCODE = 'CC001';
        END $$
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.drop_table("writer_generation")
        return
    op.execute("DROP FUNCTION configctl_moved_on(text)")
    for table in WATCHED:
        op.execute(f"DROP TRIGGER {table}_generation_truncate ON {table}")
        op.execute(f"DROP TRIGGER {table}_generation ON {table}")
    op.execute("DROP FUNCTION configctl_next_generation()")
    op.drop_table("writer_generation")
