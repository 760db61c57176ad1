"""Captures: the flows the agent's full flow table ended early in each coverage report (a flood
of new flows), which leave every verdict over that time incomplete.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("captures") as batch:
        batch.add_column(sa.Column("evicted_flows", sa.BigInteger))


def downgrade() -> None:
    with op.batch_alter_table("captures") as batch:
        batch.drop_column("evicted_flows")
