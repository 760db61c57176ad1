"""Captures: the flows that ended in each coverage report with content gaps (and their missed
bytes) or with their inspection stopped, which a verdict over that time names.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

COLUMNS = ("gap_flows", "missed_bytes", "inspection_stopped")


def upgrade() -> None:
    with op.batch_alter_table("captures") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.BigInteger))


def downgrade() -> None:
    with op.batch_alter_table("captures") as batch:
        for name in COLUMNS:
            batch.drop_column(name)
