"""logs in a step's workspace are LOG products

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 10:00:00.000000

Before this revision the collector typed every file of an intermediate step's workspace folder
INTERMEDIATE, so a log a program wrote to ``$WORKFLOW_OUTPUT_DIR/logs/`` (relative path
``workspace/<step>/logs/...``) became an input of the next step. The collector now records
those files as LOG; this retypes the rows recorded before, so that every query that leaves
LOG products out (inputs, fingerprints, lineage, PROV) leaves them out too.

The match is exact: the second path segment must be the name of the step that made the
product (compared as a string prefix, not with LIKE, whose ``_`` would match any character
of a step name), and only the ``logs`` folder directly in the workspace folder counts.
Downstream runs keep their recorded inputs; lineage and PROV simply no longer show the logs
among them. A downstream (step, sub-group) whose completed run consumed such a log gets a new
input fingerprint (the log no longer counts) and is therefore reduced once more.

Only data changes, and only by one plain UPDATE that is right to repeat, so this works in
offline (``--sql``) mode too. Downgrading leaves the rows as they are: LOG is a valid type
in revision 0001 as well, and turning logs back into inputs would only restore the bug.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_product = sa.table(
    "data_product",
    sa.column("executed_reduction_step_id", sa.Integer),
    sa.column("relative_path", sa.String),
    sa.column("data_product_type", sa.String),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)
_run = sa.table("executed_reduction_step", sa.column("id", sa.Integer),
                sa.column("reduction_step_id", sa.Integer))
_step = sa.table("reduction_step", sa.column("id", sa.Integer), sa.column("name", sa.String))


def _in_its_workspace_logs() -> sa.ColumnElement[bool]:
    """The product's path starts with ``workspace/<its step>/logs/``."""
    prefix = sa.literal("workspace/", sa.String) + _step.c.name + sa.literal("/logs/", sa.String)
    return sa.exists(
        sa.select(_run.c.id)
        .join(_step, _step.c.id == _run.c.reduction_step_id)
        .where(_run.c.id == _product.c.executed_reduction_step_id,
               sa.func.substr(_product.c.relative_path, 1, sa.func.length(prefix)) == prefix)
    )


def upgrade() -> None:
    op.execute(
        sa.update(_product)
        .where(_product.c.data_product_type == "INTERMEDIATE",
               _product.c.relative_path.like("workspace/%/logs/%"),  # cheap first cut
               _in_its_workspace_logs())
        .values(data_product_type="LOG", updated_at=dt.datetime.now(dt.UTC))
    )


def downgrade() -> None:
    """Nothing to undo (see the module docstring)."""
