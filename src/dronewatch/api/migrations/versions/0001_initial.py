"""The first schema: keys, devices, LDM changes, alerts, flows, captures, ingest batches.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float),
        sa.Column("last_used_at", sa.Float),
    )
    op.create_table(
        "devices",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200)),
        sa.Column("mac", sa.String(17), unique=True),
        sa.Column("ip", sa.String(45), unique=True),
        sa.Column("hostname", sa.String(255)),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("local_subnets", sa.JSON, nullable=False),
        sa.Column("allowed_categories", sa.JSON, nullable=False),
        sa.Column("allowed_destinations", sa.JSON, nullable=False),
        sa.Column("roles", sa.JSON, nullable=False),
        sa.Column("discovered", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "ldm_changes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "device_id",
            sa.Integer,
            sa.ForeignKey("devices.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("ldm_on", sa.Boolean, nullable=False),
        sa.Column("changed_by", sa.String(100), nullable=False),
        sa.Column("recorded_at", sa.Float, nullable=False),
    )
    op.create_index("ix_ldm_changes_device_at", "ldm_changes", ["device_id", "at"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False, unique=True),
        sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id", ondelete="SET NULL")),
        sa.Column("device_ip", sa.String(45), nullable=False),
        sa.Column("device_mac", sa.String(17)),
        sa.Column("note", sa.String(64), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("vendor", sa.String(100)),
        sa.Column("rule_id", sa.String(200)),
        sa.Column("dest_name", sa.String(255)),
        sa.Column("dest_ip", sa.String(45)),
        sa.Column("dest_country", sa.String(2)),
        sa.Column("first_seen", sa.Float, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False),
        sa.Column("bytes_out", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("acked_by", sa.String(100)),
        sa.Column("acked_at", sa.Float),
        sa.Column("resolved_by", sa.String(100)),
        sa.Column("resolved_at", sa.Float),
        sa.Column("doc", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_alerts_last_seen", "alerts", ["last_seen"])
    op.create_index("ix_alerts_device_ip", "alerts", ["device_ip"])
    op.create_table(
        "flows",
        sa.Column("uid", sa.String(32), primary_key=True),
        sa.Column("agent", sa.String(100), nullable=False),
        sa.Column("device_ip", sa.String(45), nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("last_ts", sa.Float, nullable=False),
        sa.Column("resp_h", sa.String(45), nullable=False),
        sa.Column("resp_p", sa.Integer, nullable=False),
        sa.Column("proto", sa.String(8), nullable=False),
        sa.Column("server_name", sa.String(255)),
        sa.Column("category", sa.String(32)),
        sa.Column("vendor", sa.String(100)),
        sa.Column("scope", sa.String(16)),
        sa.Column("bytes_out", sa.BigInteger, nullable=False),
        sa.Column("bytes_in", sa.BigInteger, nullable=False),
        sa.Column("doc", sa.JSON, nullable=False),
    )
    op.create_index("ix_flows_device_ts", "flows", ["device_ip", "ts"])
    op.create_table(
        "captures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("agent", sa.String(100), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("packets", sa.BigInteger, nullable=False),
        sa.Column("drops", sa.BigInteger),
        sa.Column("complete", sa.Boolean, nullable=False),
        sa.Column("first_ts", sa.Float, nullable=False),
        sa.Column("last_ts", sa.Float),
        sa.Column("received_at", sa.Float, nullable=False),
    )
    op.create_table(
        "ingest_batches",
        sa.Column("batch_id", sa.String(100), primary_key=True),
        sa.Column("agent", sa.String(100), nullable=False),
        sa.Column("records", sa.Integer, nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
    )
    op.create_table(
        "counters",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "counters",
        "ingest_batches",
        "captures",
        "flows",
        "alerts",
        "ldm_changes",
        "devices",
        "api_keys",
    ):
        op.drop_table(table)
