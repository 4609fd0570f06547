"""ORM tables: the evidence store.

Every time is timezone-aware UTC. Hashes are SHA-256 hex. Endpoints never hold an API
key: the config names the environment variable, and only that name is stored.
"""

from __future__ import annotations

__all__ = [
    "Alert",
    "ApiToken",
    "Attempt",
    "Base",
    "CanaryVersion",
    "CustodyEntry",
    "CustodyHead",
    "Cycle",
    "Endpoint",
    "FeatureBasis",
    "FeatureSum",
    "Heartbeat",
    "LedgerHead",
    "ModelRun",
    "ModelRunsHead",
    "MonitorState",
    "RegistryCommit",
    "Report",
    "ReportJob",
    "Response",
    "SignInAttempt",
    "User",
    "Verdict",
    "WebSession",
    "utcnow",
]

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes; returns them aware in UTC on every backend (SQLite too)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Id = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class Endpoint(Base):
    __tablename__ = "endpoints"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    provider: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(200))
    base_url: Mapped[str | None] = mapped_column(String(500))
    role: Mapped[str] = mapped_column(String(16))
    api_key_env: Mapped[str | None] = mapped_column(String(100))
    config_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CanaryVersion(Base):
    """One version of one canary. A changed canary is a new row; old responses keep theirs."""

    __tablename__ = "canary_versions"
    __table_args__ = (
        UniqueConstraint("canary_id", "version"),
        UniqueConstraint("canary_id", "content_hash"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    canary_id: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    content: Mapped[dict[str, Any]] = mapped_column()
    content_hash: Mapped[str] = mapped_column(String(64))
    salt: Mapped[str] = mapped_column(String(64))
    commitment: Mapped[str] = mapped_column(String(64))
    source_file: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column()


class RegistryCommit(Base):
    """A Merkle root over the salted commitments of the live canary versions."""

    __tablename__ = "registry_commits"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    root: Mapped[str] = mapped_column(String(64), index=True)
    leaves: Mapped[list[Any]] = mapped_column()  # canary_version ids, in leaf order
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # the published statement of this root: signing key fingerprint, Ed25519 signature
    # and RFC 3161 timestamp (auditor.registry.attest_commit); None when not attested
    attestation: Mapped[dict[str, Any] | None] = mapped_column(default=None)


class Cycle(Base):
    """A batch of planned attempts: a scheduled probe, a fingerprint run or an import."""

    __tablename__ = "cycles"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="probe")  # probe|fingerprint|import
    endpoint_id: Mapped[int | None] = mapped_column(ForeignKey("endpoints.id"))
    schedule_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="planned")  # planned|running|done
    registry_root: Mapped[str | None] = mapped_column(String(64))
    planned_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    summary: Mapped[dict[str, Any] | None] = mapped_column()

    attempts: Mapped[list[Attempt]] = relationship(back_populates="cycle")


class Attempt(Base):
    """One request to make or made: planned before anything is sent."""

    __tablename__ = "attempts"
    __table_args__ = (
        UniqueConstraint(
            "cycle_id", "endpoint_id", "canary_version_id", "sample_index", name="uq_attempts_slot"
        ),
        Index("ix_attempts_status_cycle", "status", "cycle_id"),
        Index("ix_attempts_status_finished", "status", "finished_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycles.id", ondelete="CASCADE"))
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("endpoints.id"))
    canary_version_id: Mapped[int] = mapped_column(ForeignKey("canary_versions.id"))
    sample_index: Mapped[int] = mapped_column(Integer)
    # planned | running | ok | failed | interrupted | skipped
    status: Mapped[str] = mapped_column(String(16), default="planned")
    tries: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column()
    http_status: Mapped[int | None] = mapped_column(Integer)
    error_class: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(Text)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    request_id: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()

    cycle: Mapped[Cycle] = relationship(back_populates="attempts")


class Response(Base):
    """What came back, with its link in the hash-chained ledger.

    ``chain = sha256(prev_chain || sha256(canonical record))``; ``seq`` is the position.
    """

    __tablename__ = "responses"
    __table_args__ = (
        Index("ix_responses_endpoint_canary", "endpoint_id", "canary_version_id"),
        # at scale (migration 0004): an endpoint's responses by seq or time, all by time
        Index("ix_responses_endpoint_seq", "endpoint_id", "seq"),
        Index("ix_responses_endpoint_collected", "endpoint_id", "collected_at"),
        Index("ix_responses_collected_at", "collected_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("attempts.id"), unique=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("endpoints.id"))
    canary_version_id: Mapped[int] = mapped_column(ForeignKey("canary_versions.id"))
    sample_index: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    reported_model: Mapped[str | None] = mapped_column(String(200))
    system_fingerprint: Mapped[str | None] = mapped_column(String(200))
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    logprobs: Mapped[list[Any] | None] = mapped_column()
    raw_sha256: Mapped[str] = mapped_column(String(64))
    raw_body: Mapped[str | None] = mapped_column(Text)
    imported: Mapped[bool] = mapped_column(Boolean, default=False)
    collected_at: Mapped[datetime] = mapped_column(default=utcnow)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    record_hash: Mapped[str] = mapped_column(String(64))
    prev_chain: Mapped[str] = mapped_column(String(64))
    chain: Mapped[str] = mapped_column(String(64), unique=True)


class FeatureBasis(Base):
    """The featurisation's fixed part (``stats.features.Basis``, serialised in ``data``).

    The newest row is current. Every free-text answer with ``seq <= last_seq`` is in its
    ``feature_sums``; the row is locked while an analysis brings the sums up to date.
    """

    __tablename__ = "feature_bases"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64))
    reps: Mapped[list[Any]] = mapped_column()
    dim: Mapped[int] = mapped_column(Integer)
    n_answers: Mapped[int] = mapped_column(BigInteger)  # free-text answers stored at the fit
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FeatureSum(Base):
    """One (endpoint, canary version)'s sufficient statistics under one basis: the count
    and the sums of its answers' vectors (``stats.features.Group``, float64 in ``data``).
    ``digest`` is the XOR of the included responses' ``record_hash``: the set of answers
    the sum stands for, checkable against the ledger whatever order they came in."""

    __tablename__ = "feature_sums"
    __table_args__ = (UniqueConstraint("basis_id", "endpoint_id", "canary_version_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    basis_id: Mapped[int] = mapped_column(ForeignKey("feature_bases.id", ondelete="CASCADE"))
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("endpoints.id"))
    canary_version_id: Mapped[int] = mapped_column(ForeignKey("canary_versions.id"))
    n: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    digest: Mapped[str] = mapped_column(String(64))
    last_seq: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelRun(Base):
    """A run of one reported model in an endpoint's responses (seq ``first_seq`` to
    ``last_seq``; responses that report none are skipped), kept as responses arrive so
    that finding a change of model does not read the whole history."""

    __tablename__ = "model_runs"
    __table_args__ = (UniqueConstraint("endpoint_id", "first_seq"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("endpoints.id"))
    first_seq: Mapped[int] = mapped_column(BigInteger)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    model: Mapped[str] = mapped_column(String(200))


class ModelRunsHead(Base):
    """The one row saying how far ``model_runs`` has read the responses (``seq``)."""

    __tablename__ = "model_runs_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)


class LedgerHead(Base):
    """The single row every ledger append locks: serialises appends across processes."""

    __tablename__ = "ledger_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    chain: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Verdict(Base):
    __tablename__ = "verdicts"
    __table_args__ = (Index("ix_verdicts_suspect_created", "suspect_id", "created_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    suspect_id: Mapped[int] = mapped_column(ForeignKey("endpoints.id"))
    protected_id: Mapped[int] = mapped_column(ForeignKey("endpoints.id"))
    method: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column()
    statistic: Mapped[float | None] = mapped_column(Float)
    p_value: Mapped[float] = mapped_column(Float)
    q_value: Mapped[float | None] = mapped_column(Float)
    e_value: Mapped[float | None] = mapped_column(Float)
    effect: Mapped[float | None] = mapped_column(Float)
    effect_low: Mapped[float | None] = mapped_column(Float)
    effect_high: Mapped[float | None] = mapped_column(Float)
    n_canaries: Mapped[int] = mapped_column(Integer)
    n_samples: Mapped[int] = mapped_column(Integer)
    canaries: Mapped[list[Any]] = mapped_column()
    controls: Mapped[list[Any]] = mapped_column()
    contributions: Mapped[list[Any]] = mapped_column()
    channels: Mapped[dict[str, Any]] = mapped_column()
    segment: Mapped[str | None] = mapped_column(String(64))
    significant: Mapped[bool] = mapped_column(Boolean, default=False)
    code_version: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MonitorState(Base):
    """The anytime-valid e-process of one (suspect, protected) pair, between cycles."""

    __tablename__ = "monitor_states"
    __table_args__ = (UniqueConstraint("suspect_id", "protected_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    suspect_id: Mapped[int] = mapped_column(ForeignKey("endpoints.id"))
    protected_id: Mapped[int] = mapped_column(ForeignKey("endpoints.id"))
    state: Mapped[dict[str, Any]] = mapped_column()
    e_value: Mapped[float] = mapped_column(Float, default=1.0)
    last_response_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("suspect_id", "protected_id", "kind"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    suspect_id: Mapped[int] = mapped_column(ForeignKey("endpoints.id"))
    protected_id: Mapped[int] = mapped_column(ForeignKey("endpoints.id"))
    verdict_id: Mapped[int | None] = mapped_column(ForeignKey("verdicts.id"))
    kind: Mapped[str] = mapped_column(String(32))  # e.g. "eprocess"
    value: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column()
    delivery: Mapped[dict[str, Any] | None] = mapped_column()


class Report(Base):
    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    suspect_id: Mapped[int] = mapped_column(ForeignKey("endpoints.id"))
    protected_id: Mapped[int | None] = mapped_column(ForeignKey("endpoints.id"))
    verdict_id: Mapped[int | None] = mapped_column(ForeignKey("verdicts.id"))
    bundle_path: Mapped[str] = mapped_column(String(1000))
    bundle_sha256: Mapped[str] = mapped_column(String(64))
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    signer_fingerprint: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Heartbeat(Base):
    """A daemon or worker process saying it is alive."""

    __tablename__ = "heartbeats"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)  # host:pid:start
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))  # daemon|worker
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    beat_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default="running")
    info: Mapped[dict[str, Any] | None] = mapped_column()


# ---------------------------------------------------------------- the legal portal


class User(Base):
    """A local portal account (or one first seen through single sign-on: no password)."""

    __tablename__ = "web_users"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    username: Mapped[str] = mapped_column(String(128), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # legal | analyst | admin
    password_hash: Mapped[str | None] = mapped_column(String(200))  # argon2id; None: SSO only
    oidc_subject: Mapped[str | None] = mapped_column(String(300), unique=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    password_changed_at: Mapped[datetime | None] = mapped_column()


class WebSession(Base):
    """A server-side session: the cookie holds a random token, the row only its SHA-256."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("web_users.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    address: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column()


class SignInAttempt(Base):
    """One sign-in try: failures throttle further tries per account and per address."""

    __tablename__ = "web_signin_attempts"
    __table_args__ = (Index("ix_web_signin_attempts_username_at", "username", "at"),
                      Index("ix_web_signin_attempts_address_at", "address", "at"))

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    username: Mapped[str] = mapped_column(String(128))
    address: Mapped[str] = mapped_column(String(64))
    ok: Mapped[bool] = mapped_column(Boolean, default=False)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """A bearer token of the read-only JSON API; only its SHA-256 is stored."""

    __tablename__ = "web_api_tokens"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # legal | analyst
    created_by: Mapped[int | None] = mapped_column(ForeignKey("web_users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()


class CustodyEntry(Base):
    """Who received or made which evidence, when, from where; chained like the ledger:
    ``chain = sha256(prev_chain || sha256(canonical record))``."""

    __tablename__ = "custody_log"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(32))  # generate | download | verify | export
    report_id: Mapped[int | None] = mapped_column(ForeignKey("reports.id"), index=True)
    manifest_sha256: Mapped[str | None] = mapped_column(String(64))
    address: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column()
    record_hash: Mapped[str] = mapped_column(String(64))
    prev_chain: Mapped[str] = mapped_column(String(64))
    chain: Mapped[str] = mapped_column(String(64), unique=True)


class CustodyHead(Base):
    """The single row every custody append locks (as ``ledger_head`` for responses)."""

    __tablename__ = "custody_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    chain: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReportJob(Base):
    """A report the portal generates in the background, with its progress."""

    __tablename__ = "report_jobs"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    suspect: Mapped[str] = mapped_column(String(64))
    protected: Mapped[str | None] = mapped_column(String(64))
    requested_by: Mapped[str] = mapped_column(String(200))
    address: Mapped[str | None] = mapped_column(String(64))
    runner: Mapped[str | None] = mapped_column(String(200))  # host:pid of the portal running it
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued|running|done|failed
    stage: Mapped[str | None] = mapped_column(String(64))
    progress: Mapped[int] = mapped_column(Integer, default=0)  # percent
    error: Mapped[str | None] = mapped_column(Text)
    report_id: Mapped[int | None] = mapped_column(ForeignKey("reports.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
