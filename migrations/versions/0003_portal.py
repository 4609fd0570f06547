"""the legal portal: users, server-side sessions, sign-in attempts, API tokens, the
hash-chained custody log and background report jobs

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "web_users",
        sa.Column("id", ID, nullable=False),
        sa.Column("username", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=True),
        sa.Column("oidc_subject", sa.String(length=300), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("password_changed_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_users")),
        sa.UniqueConstraint("username", name=op.f("uq_web_users_username")),
        sa.UniqueConstraint("oidc_subject", name=op.f("uq_web_users_oidc_subject")),
    )
    op.create_table(
        "web_sessions",
        sa.Column("id", ID, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_seen_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["web_users.id"],
                                name=op.f("fk_web_sessions_user_id_web_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_web_sessions_token_hash")),
    )
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_sessions_user_id"), ["user_id"], unique=False)
    op.create_table(
        "web_signin_attempts",
        sa.Column("id", ID, nullable=False),
        sa.Column("username", sa.String(length=128), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_signin_attempts")),
    )
    with op.batch_alter_table("web_signin_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_web_signin_attempts_username_at", ["username", "at"],
                              unique=False)
        batch_op.create_index("ix_web_signin_attempts_address_at", ["address", "at"],
                              unique=False)
    op.create_table(
        "web_api_tokens",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_by", ID, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_used_at", TS, nullable=True),
        sa.Column("revoked_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["created_by"], ["web_users.id"],
                                name=op.f("fk_web_api_tokens_created_by_web_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_api_tokens")),
        sa.UniqueConstraint("name", name=op.f("uq_web_api_tokens_name")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_web_api_tokens_token_hash")),
    )
    op.create_table(
        "custody_log",
        sa.Column("id", ID, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("report_id", ID, nullable=True),
        sa.Column("manifest_sha256", sa.String(length=64), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("record_hash", sa.String(length=64), nullable=False),
        sa.Column("prev_chain", sa.String(length=64), nullable=False),
        sa.Column("chain", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["report_id"], ["reports.id"],
                                name=op.f("fk_custody_log_report_id_reports")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_custody_log")),
        sa.UniqueConstraint("chain", name=op.f("uq_custody_log_chain")),
        sa.UniqueConstraint("seq", name=op.f("uq_custody_log_seq")),
    )
    with op.batch_alter_table("custody_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_custody_log_report_id"), ["report_id"],
                              unique=False)
    custody_head = op.create_table(
        "custody_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("chain", sa.String(length=64), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_custody_head")),
    )
    # The genesis of the custody chain: every append locks and advances this one row.
    op.bulk_insert(
        custody_head,
        [{"id": 1, "seq": 0, "chain": "0" * 64, "updated_at": datetime(2026, 1, 1, tzinfo=UTC)}],
    )
    op.create_table(
        "report_jobs",
        sa.Column("id", ID, nullable=False),
        sa.Column("suspect", sa.String(length=64), nullable=False),
        sa.Column("protected", sa.String(length=64), nullable=True),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.Column("runner", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("stage", sa.String(length=64), nullable=True),
        sa.Column("progress", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("report_id", ID, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["report_id"], ["reports.id"],
                                name=op.f("fk_report_jobs_report_id_reports")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_jobs")),
    )


def downgrade() -> None:
    op.drop_table("report_jobs")
    op.drop_table("custody_head")
    with op.batch_alter_table("custody_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_custody_log_report_id"))
    op.drop_table("custody_log")
    op.drop_table("web_api_tokens")
    with op.batch_alter_table("web_signin_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_web_signin_attempts_address_at")
        batch_op.drop_index("ix_web_signin_attempts_username_at")
    op.drop_table("web_signin_attempts")
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_sessions_user_id"))
    op.drop_table("web_sessions")
    op.drop_table("web_users")
