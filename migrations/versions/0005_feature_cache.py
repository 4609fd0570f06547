"""the feature cache: a fixed featurisation basis and per-(endpoint, canary version)
sums of answer vectors, so that an analysis featurises each answer once; the runs of
each endpoint's reported model, kept as responses arrive

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "feature_bases",
        sa.Column("id", ID, nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("reps", sa.JSON(), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("n_answers", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feature_bases")),
    )
    op.create_table(
        "feature_sums",
        sa.Column("id", ID, nullable=False),
        sa.Column("basis_id", ID, nullable=False),
        sa.Column("endpoint_id", ID, nullable=False),
        sa.Column("canary_version_id", ID, nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["basis_id"], ["feature_bases.id"],
                                name=op.f("fk_feature_sums_basis_id_feature_bases"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["canary_version_id"], ["canary_versions.id"],
                                name=op.f("fk_feature_sums_canary_version_id_canary_versions")),
        sa.ForeignKeyConstraint(["endpoint_id"], ["endpoints.id"],
                                name=op.f("fk_feature_sums_endpoint_id_endpoints")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feature_sums")),
        sa.UniqueConstraint("basis_id", "endpoint_id", "canary_version_id",
                            name=op.f("uq_feature_sums_basis_id_endpoint_id_canary_version_id")),
    )

    if op.get_bind().dialect.name == "postgresql":
        # the sums are float64 noise to a compressor: store them out of line, uncompressed
        op.execute("ALTER TABLE feature_sums ALTER COLUMN data SET STORAGE EXTERNAL")
    op.create_table(
        "model_runs",
        sa.Column("id", ID, nullable=False),
        sa.Column("endpoint_id", ID, nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["endpoint_id"], ["endpoints.id"],
                                name=op.f("fk_model_runs_endpoint_id_endpoints")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_runs")),
        sa.UniqueConstraint("endpoint_id", "first_seq",
                            name=op.f("uq_model_runs_endpoint_id_first_seq")),
    )

    op.create_table(
        "model_runs_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_runs_head")),
    )


def downgrade() -> None:
    op.drop_table("model_runs_head")
    op.drop_table("model_runs")
    op.drop_table("feature_sums")
    op.drop_table("feature_bases")
