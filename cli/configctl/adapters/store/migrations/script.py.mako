"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}

Write operations that mean the same on SQLite and PostgreSQL (SQLite runs them in batch
mode); use the portable types of ``configctl.adapters.store.models`` spelt out here, never
the models themselves, so this revision stays what it was when it shipped.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}
revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = None
depends_on = None


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
