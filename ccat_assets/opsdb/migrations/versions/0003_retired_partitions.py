"""retired partitions: sub-group keys removed from Dagster's dynamic partition sets

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 05:00:00.000000

A fully reduced sub-group may leave its pipeline's dynamic partition set, so Dagster's UI
stays fast with years of scans (``docs/scale.md``). This table remembers each removal, so
the sensors that register sub-groups as partitions leave those keys out and ``ccat-wm
check`` does not call them missing. Only a new table: nothing existing changes, and
downgrading drops it (the keys then come back at the next registration).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "retired_partition",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("partitions_name", sa.String(length=255), nullable=False),
        sa.Column("partition_key", sa.Text(), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retired_partition")),
        sa.UniqueConstraint("partitions_name", "partition_key",
                            name=op.f("uq_retired_partition_partitions_name_partition_key")),
    )


def downgrade() -> None:
    op.drop_table("retired_partition")
