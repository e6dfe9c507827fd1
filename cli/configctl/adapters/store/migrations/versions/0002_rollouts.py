"""Versions carry their rollouts: a nullable JSON column ``versions.rollouts``.

Revision ID: 0002
Revises: 0001

A version holds the whole snapshot a client needs, so the rollouts of the pair (their JSON
form, runtime state folded in) live beside the values. NULL means none: every version
written before this revision reads as a version without rollouts, and its checksum (of
the values alone) stays the checksum of such a version (``records.snapshot_checksum``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from configctl.adapters.store.models import JsonType

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("versions") as batch:
        batch.add_column(sa.Column("rollouts", JsonType, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("versions") as batch:
        batch.drop_column("rollouts")
