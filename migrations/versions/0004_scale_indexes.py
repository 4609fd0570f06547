"""indexes for stores with tens of millions of responses

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

- ``responses (endpoint_id, seq)``: the responses of some endpoints after (or up to) a
  sequence number, in ledger order (``load_evidence``, reports);
- ``responses (endpoint_id, collected_at)``: an endpoint's responses in a time window (the
  daily token budget, windowed analyses and reports);
- ``responses (collected_at)``: every endpoint's responses in a time window (``auditor
  status``: tokens today; ``auditor db stats``: growth per day);
- ``attempts (status, finished_at)``: failed attempts of the last day (``auditor status``).

On PostgreSQL ``CREATE INDEX`` blocks writes to the table (not reads) while it builds:
1.6 to 3.6 s for all four on 490,000 responses and 500,000 attempts on a 2-core machine
(BENCHMARKS.md, "Database at scale"); stop the daemons and workers for the upgrade.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = [
    ("ix_responses_endpoint_seq", "responses", ["endpoint_id", "seq"]),
    ("ix_responses_endpoint_collected", "responses", ["endpoint_id", "collected_at"]),
    ("ix_responses_collected_at", "responses", ["collected_at"]),
    ("ix_attempts_status_finished", "attempts", ["status", "finished_at"]),
]


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
