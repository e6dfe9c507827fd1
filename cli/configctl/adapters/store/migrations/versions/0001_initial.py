"""The initial schema: commits, versions, key changes, audit log, outbox, pins, rollout
state, sync state and the leader lease.

Revision ID: 0001
Revises:

Spelt out table by table (not ``metadata.create_all``) so this revision never changes when
the models do; ``tests/integration/test_store.py`` checks that the migrated schema equals
the models on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from configctl.adapters.store.models import IdType, JsonType, UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SHA = 64
NAME = 63


def upgrade() -> None:
    op.create_table(
        "commits",
        sa.Column("sha", sa.String(SHA), nullable=False),
        sa.Column("parents", JsonType, nullable=False),
        sa.Column("author_name", sa.String(255), nullable=False),
        sa.Column("author_email", sa.String(255), nullable=False),
        sa.Column("authored_at", UtcDateTime, nullable=False),
        sa.Column("committer_name", sa.String(255), nullable=False),
        sa.Column("committer_email", sa.String(255), nullable=False),
        sa.Column("committed_at", UtcDateTime, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("signature_status", sa.String(16), nullable=False),
        sa.Column("signer", sa.String(512), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("recorded_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("sha", name="pk_commits"),
    )
    op.create_index("ix_commits_status_recorded_at", "commits", ["status", "recorded_at"])

    op.create_table(
        "versions",
        sa.Column("id", IdType, autoincrement=True, nullable=False),
        sa.Column("app", sa.String(NAME), nullable=False),
        sa.Column("env", sa.String(NAME), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("values", JsonType, nullable=False),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("commit_sha", sa.String(SHA), nullable=True),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("rolled_back_to", sa.Integer, nullable=True),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_versions"),
        sa.UniqueConstraint("app", "env", "number", name="uq_versions_app_env_number"),
    )

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

    op.create_table(
        "audit_log",
        sa.Column("id", IdType, autoincrement=True, nullable=False),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("app", sa.String(NAME), nullable=True),
        sa.Column("env", sa.String(NAME), nullable=True),
        sa.Column("commit_sha", sa.String(SHA), nullable=True),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("details", JsonType, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_app_env", "audit_log", ["app", "env"])
    op.create_index("ix_audit_log_actor", "audit_log", ["actor"])

    op.create_table(
        "outbox",
        sa.Column("id", IdType, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("routing_key", sa.String(255), nullable=False),
        sa.Column("payload", JsonType, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("published_at", UtcDateTime, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("event_id", name="uq_outbox_event_id"),
    )
    op.create_index("ix_outbox_published_at_id", "outbox", ["published_at", "id"])

    op.create_table(
        "pins",
        sa.Column("app", sa.String(NAME), nullable=False),
        sa.Column("env", sa.String(NAME), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("quarantined_commit", sa.String(SHA), nullable=True),
        sa.PrimaryKeyConstraint("app", "env", name="pk_pins"),
    )

    op.create_table(
        "rollout_state",
        sa.Column("app", sa.String(NAME), nullable=False),
        sa.Column("env", sa.String(NAME), nullable=False),
        sa.Column("key", sa.String(1024), nullable=False),
        sa.Column("state", JsonType, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("app", "env", "key", name="pk_rollout_state"),
    )

    op.create_table(
        "sync_state",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("value", JsonType, nullable=True),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_sync_state"),
    )

    op.create_table(
        "leader_lease",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("epoch", sa.BigInteger, nullable=False),
        sa.Column("acquired_at", UtcDateTime, nullable=False),
        sa.Column("renewed_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_leader_lease"),
    )


def downgrade() -> None:
    for table in (
        "leader_lease",
        "sync_state",
        "rollout_state",
        "pins",
        "outbox",
        "audit_log",
        "key_changes",
        "versions",
        "commits",
    ):
        op.drop_table(table)
