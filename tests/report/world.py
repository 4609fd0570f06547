"""A store filled through the real paths (endpoints synced from settings, canaries synced
and committed, responses imported and chained), verdict rows as analysis would store them,
and a signing key."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditor.canary import Canary
from auditor.config import Settings
from auditor.importer import ImportRecord, import_records
from auditor.registry import attest_commit, commit_registry, sync_registry
from auditor.signing import init_key
from auditor.store import Store, open_store, sync_endpoints
from auditor.store.models import Verdict

START = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
CONTROLS = ("ctl-alpha", "ctl-beta", "ctl-gamma")
API_KEYS = {"PROT_API_KEY": "fake-prot-THISMUSTNEVERLEAK-1111",
            "SUS_API_KEY": "fake-sus-THISMUSTNEVERLEAK-2222",
            "CTL_API_KEY": "fake-ctl-THISMUSTNEVERLEAK-3333"}

_WORDS = ("lantern harbour quiet tide salt rope keeper night beam fog gull stone window "
          "ember kettle copper morning ledger river orchard bell winter thread").split()


def make_settings(tmp: Path, tsa_url: str | None = None) -> Settings:
    eps = [{"name": "prot", "role": "protected", "api_key_env": "PROT_API_KEY"},
           {"name": "sus", "role": "suspect", "api_key_env": "SUS_API_KEY"}]
    eps += [{"name": c, "role": "control", "api_key_env": "CTL_API_KEY"} for c in CONTROLS]
    return Settings.model_validate({
        "database_url": f"sqlite:///{tmp / 'auditor.db'}",
        "reports_dir": str(tmp / "reports"),
        "signing": {"key_path": str(tmp / "keys" / "signing.pem")},
        "timestamp": {"url": tsa_url},
        "endpoints": [{**e, "provider": "openai", "model": f"model-{e['name']}",
                       "base_url": "http://127.0.0.1:9/v1"} for e in eps],
    })


def secret_prompt(i: int) -> str:
    return f"Zebra-quartz riddle {i:04d}: describe the violet marmalade cathedral in four lines."


def make_canaries(n: int, public: set[int] | None = None) -> list[Canary]:
    public = public or set()
    return [Canary.model_validate({
        "id": f"ft-canary-{i:04d}", "kind": "free_text", "prompt": secret_prompt(i),
        "samples": 2, "secret": i not in public}) for i in range(n)]


def _sentence(rng: random.Random, n: int = 14) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n)).capitalize() + "."


def answers(n_canaries: int, samples: int, seed: int = 1) -> dict[str, dict[str, list[str]]]:
    """The suspect echoes the protected model with small edits; controls write their own."""
    rng = random.Random(seed)
    out: dict[str, dict[str, list[str]]] = {n: {} for n in ("prot", "sus", *CONTROLS)}
    for i in range(n_canaries):
        cid = f"ft-canary-{i:04d}"
        base = [_sentence(rng) for _ in range(samples)]
        out["prot"][cid] = base
        out["sus"][cid] = [b.replace("quiet", "silent", 1) + " Indeed." for b in base]
        for c in CONTROLS:
            out[c][cid] = [_sentence(rng) for _ in range(samples)]
    return out


def add_verdict(store: Store, n_canaries: int, at: datetime, p: float = 3.2e-6,
                significant: bool = True, effect: float = 0.31) -> int:
    """A verdict row as the analysis stage stores it."""
    with store.session() as s:
        from sqlalchemy import select

        from auditor.store.models import Endpoint
        ids = {e.name: e.id for e in s.scalars(select(Endpoint))}
        contributions = [{"canary_id": f"ft-canary-{i:04d}", "canary_version": 1,
                          "contribution": round(2.5 - i * 0.1, 3), "z": round(3.1 - i * 0.2, 2)}
                         for i in range(n_canaries)]
        v = Verdict(
            suspect_id=ids["sus"], protected_id=ids["prot"], method="loo-control-permutation",
            params={"alpha": 0.05, "seed": 7, "permutations": 999, "reps": ["char3", "word"]},
            statistic=4.2, p_value=p, q_value=p * 3, e_value=180.0 if significant else 0.7,
            effect=effect, effect_low=effect - 0.12, effect_high=effect + 0.1,
            n_canaries=n_canaries, n_samples=n_canaries * 2 * 5,
            canaries=[f"ft-canary-{i:04d}" for i in range(n_canaries)],
            controls=list(CONTROLS), contributions=contributions,
            channels={"free_text": {"p_value": p, "statistic": 4.2},
                      "identity": {"p_value": 0.41, "rate_suspect": 0.0}},
            segment=None, significant=significant, code_version="analysis-test-1",
            created_at=at)
        s.add(v)
        s.flush()
        return v.id


def fill_store(store: Store, settings: Settings, n_canaries: int, samples: int = 2,
               public: set[int] | None = None, key: Ed25519PrivateKey | None = None,
               tsa_roots: list[x509.Certificate] | None = None) -> None:
    """Endpoints, canaries (synced, committed; attested with ``key`` and the configured
    timestamp authority) and responses, all through the real paths."""
    data = answers(n_canaries, samples)
    with store.session() as s:
        eps = sync_endpoints(s, settings)
        sync_registry(s, make_canaries(n_canaries, public))
        rc = commit_registry(s)
        rc.created_at = START - timedelta(days=2)  # committed before collection began
        attest_commit(rc, key, settings.timestamp.url if tsa_roots else None, tsa_roots)
        for name, per_canary in data.items():
            records = [ImportRecord(canary_id=cid, sample_index=k, text=text,
                                    reported_model=f"model-{name}-2026",
                                    collected_at=START + timedelta(minutes=i * 3 + k))
                       for i, (cid, texts) in enumerate(per_canary.items())
                       for k, text in enumerate(texts)]
            import_records(s, eps[name], records, source=f"{name}-answers.jsonl")


@dataclass
class World:
    tmp: Path
    settings: Settings
    store: Store
    n_canaries: int


def build_world(tmp: Path, n_canaries: int = 8, tsa_url: str | None = None,
                public: set[int] | None = None,
                tsa_roots: list[x509.Certificate] | None = None) -> World:
    """A store and a signing key; the registry commit is signed with that key, and
    timestamped when ``tsa_roots`` (the authority's root) are given."""
    settings = make_settings(tmp, tsa_url)
    store = open_store(settings.resolved_database_url(), migrate=True)
    key = init_key(settings.signing.key_path)
    fill_store(store, settings, n_canaries, public=public, key=key, tsa_roots=tsa_roots)
    for day, p, sig, eff in ((2, 0.04, False, 0.12), (3, 2e-3, True, 0.22),
                             (4, 3.2e-6, True, 0.31)):
        add_verdict(store, n_canaries, START + timedelta(days=day), p, sig, eff)
    return World(tmp, settings, store, n_canaries)


