"""Captures: the protected 802.11 data frames each coverage report's interval could not read, by
the MAC that sent them (a JSON object), which leave the verdict of a device that sent any
incomplete.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("captures") as batch:
        batch.add_column(sa.Column("encrypted", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("captures") as batch:
        batch.drop_column("encrypted")
