"""Devices named by a network (CIDR) or a DHCP host name, and the hosts they adopted.

A device with `net` or only a `hostname` names the devices under test as `--device` does; each
host it matches becomes a device of its own whose `parent_id` is that declaration.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("net", sa.String(49)))
        batch.add_column(
            sa.Column(
                "parent_id",
                sa.Integer,
                sa.ForeignKey("devices.id", name="fk_devices_parent", ondelete="SET NULL"),
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.drop_constraint("fk_devices_parent", type_="foreignkey")
        batch.drop_column("parent_id")
        batch.drop_column("net")
