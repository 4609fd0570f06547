"""The store's hot queries on PostgreSQL before and after migration 0004's indexes.

Creates a scratch database on the server, migrates it to 0003, fills it on the server
(``generate_series``: 20 endpoints, 200 canary versions, cycles of 100 attempts over 60
days, 2% failed, an answer per ok attempt, 1.6 kB per response), prints
``EXPLAIN (ANALYZE)`` of each query, upgrades to the head (timed), prints them again and
drops the database (``--keep`` keeps it).

    python -m benchmarks.db_scale --attempts 500000
"""

from __future__ import annotations

import argparse
import time

import psycopg

from auditor.store import db

QUERIES = {
    "load_evidence: 2 of 20 endpoints, all, in seq order":
        "SELECT endpoint_id, canary_version_id, text, reported_model, seq, logprobs "
        "FROM responses WHERE endpoint_id IN (3, 7) ORDER BY seq",
    "load_evidence: 2 endpoints, after seq N (last 2%)":
        "SELECT endpoint_id, canary_version_id, text, reported_model, seq, logprobs "
        "FROM responses WHERE endpoint_id IN (3, 7) AND seq > {n98} ORDER BY seq",
    "load_evidence: 2 endpoints, after seq N (second half)":
        "SELECT endpoint_id, canary_version_id, text, reported_model, seq, logprobs "
        "FROM responses WHERE endpoint_id IN (3, 7) AND seq > {n50} ORDER BY seq",
    "one endpoint, after seq N (second half), in seq order":
        "SELECT endpoint_id, canary_version_id, text, reported_model, seq, logprobs "
        "FROM responses WHERE endpoint_id = 3 AND seq > {n50} ORDER BY seq",
    "load_evidence / report: 2 endpoints, last 7 days":
        "SELECT endpoint_id, canary_version_id, text, reported_model, seq, logprobs "
        "FROM responses WHERE endpoint_id IN (3, 7) AND collected_at >= now() - interval "
        "'7 days' AND collected_at <= now() ORDER BY seq",
    "spent_today (daily budget) shape, one endpoint, last 24 h":
        "SELECT sum(prompt_tokens), sum(completion_tokens) FROM responses WHERE endpoint_id "
        "= 3 AND collected_at >= now() - interval '1 day' AND imported IS false",
    "auditor status: tokens today per endpoint":
        "SELECT endpoint_id, sum(prompt_tokens), sum(completion_tokens) FROM responses "
        "WHERE collected_at >= date_trunc('day', now()) AND imported IS false "
        "GROUP BY endpoint_id",
    "auditor status: failed attempts in the last day":
        "SELECT endpoint_id, error_class, count(*) FROM attempts WHERE status = 'failed' "
        "AND finished_at >= now() - interval '1 day' GROUP BY endpoint_id, error_class",
    "auditor db stats: responses per day, 14 days":
        "SELECT date(timezone('UTC', collected_at)), count(*), count(*) FILTER (WHERE "
        "imported) FROM responses WHERE collected_at >= date_trunc('day', now()) - interval "
        "'13 days' GROUP BY 1",
    "daemon: claimable cycles":
        "SELECT DISTINCT attempts.cycle_id, attempts.endpoint_id FROM attempts JOIN cycles "
        "ON cycles.id = attempts.cycle_id WHERE cycles.kind IN ('probe', 'fingerprint') AND "
        "(attempts.status IN ('planned', 'interrupted') OR (attempts.status = 'running' AND "
        "attempts.lease_until < now()))",
    "daemon: orphaned cycles":
        "SELECT cycles.id FROM cycles WHERE cycles.kind IN ('probe') AND cycles.status != "
        "'done' AND NOT (EXISTS (SELECT attempts.id FROM attempts WHERE attempts.cycle_id = "
        "cycles.id AND attempts.status IN ('planned', 'running', 'interrupted')))",
    "auditor status: latest cycle with attempts of an endpoint":
        "SELECT cycles.id FROM cycles WHERE cycles.kind IN ('probe', 'fingerprint') AND "
        "EXISTS (SELECT attempts.id FROM attempts WHERE attempts.cycle_id = cycles.id AND "
        "attempts.endpoint_id = 3) ORDER BY cycles.id DESC LIMIT 1",
}
_DROP = ("Buffers", "Planning", "Heap Blocks", "Recheck", "Rows Removed", "Sort Method",
         "Worker", "Group Key", "Hash Cond", "Batches", "Memory", "Sort Key", "Heap Fetches")


def seed(conn: psycopg.Connection, attempts: int, endpoints: int = 20, canaries: int = 200,
         per_cycle: int = 100) -> None:
    n, cycles = attempts, attempts // per_cycle
    conn.execute(
        "INSERT INTO endpoints (id, name, provider, model, role, config_hash, created_at, "
        "updated_at) SELECT i, 'ep' || i, 'openai', 'm' || i, 'suspect', "
        f"md5(i::text) || md5(i::text), now(), now() FROM generate_series(1, {endpoints}) i")
    conn.execute(
        "INSERT INTO canary_versions (id, canary_id, version, kind, content, content_hash, "
        "salt, commitment, created_at) SELECT i, 'c' || i, 1, 'free_text', '{}'::json, "
        f"md5(i::text), md5('s' || i), md5('c' || i), now() FROM generate_series(1, {canaries}) i")
    span = "interval '60 days'"
    conn.execute(
        "INSERT INTO cycles (id, kind, endpoint_id, schedule_key, status, planned_at, "
        f"finished_at) SELECT i, 'probe', 1 + (i % {endpoints}), 'k' || i, CASE WHEN i > "
        f"{cycles} - 3 THEN 'running' ELSE 'done' END, now() - {span} + (i * {span} / "
        f"{cycles}), now() - {span} + (i * {span} / {cycles}) + interval '5 min' "
        f"FROM generate_series(1, {cycles}) i")
    conn.execute(
        "INSERT INTO attempts (id, cycle_id, endpoint_id, canary_version_id, sample_index, "
        f"status, tries, finished_at, latency_ms) SELECT i, 1 + ((i - 1) / {per_cycle}), "
        f"1 + (((i - 1) / {per_cycle}) % {endpoints}), 1 + ((i - 1) % {per_cycle}), 0, "
        f"CASE WHEN i > {n} - 250 THEN 'planned' WHEN i % 50 = 0 THEN 'failed' ELSE 'ok' END, "
        f"1, now() - {span} + (i * {span} / {n}), 100 + (i % 900) FROM generate_series(1, {n}) i")
    conn.execute(
        "INSERT INTO responses (id, attempt_id, endpoint_id, canary_version_id, sample_index, "
        "text, raw_sha256, raw_body, imported, collected_at, seq, record_hash, prev_chain, "
        "chain, prompt_tokens, completion_tokens) SELECT a.id, a.id, a.endpoint_id, "
        "a.canary_version_id, 0, repeat(md5(a.id::text), 6), md5(a.id::text) || "
        "md5(a.id::text), repeat(md5((a.id + 1)::text), 20), false, a.finished_at, a.id, "
        "md5('r' || a.id) || md5('r' || a.id), md5('p' || a.id) || md5('p' || a.id), "
        "md5('c' || a.id) || md5('x' || a.id), 20, 60 FROM attempts a WHERE a.status = 'ok'")
    conn.execute("VACUUM ANALYZE")


def explain(conn: psycopg.Connection, n: int) -> None:
    for title, sql in QUERIES.items():
        q = sql.format(n98=int(n * 0.98), n50=n // 2)
        plan = [str(r[0]) for r in conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) " + q)]  # type: ignore[arg-type]
        print(f"\n## {title}")
        print("\n".join(ln for ln in plan if not ln.strip().startswith(_DROP)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--attempts", type=int, default=500_000)
    ap.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--name", default="auditor_bench_db_scale")
    ap.add_argument("--keep", action="store_true", help="Keep the database afterwards.")
    args = ap.parse_args()
    with psycopg.connect(args.admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{args.name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{args.name}"')
    url = args.admin_url.rsplit("/", 1)[0] + "/" + args.name
    engine = db.make_engine(url)
    try:
        db.upgrade(engine, "0003")
        with psycopg.connect(url, autocommit=True) as conn:
            t = time.perf_counter()
            seed(conn, args.attempts)
            n = conn.execute("SELECT count(*) FROM responses").fetchone()[0]  # type: ignore[index]
            print(f"-- seeded {args.attempts:,} attempts, {n:,} responses in "
                  f"{time.perf_counter() - t:.1f} s\n\n# before (revision 0003)")
            explain(conn, args.attempts)
            t = time.perf_counter()
            db.upgrade(engine)
            print(f"\n# after (revision {db.current_revision(engine)}; upgrade took "
                  f"{time.perf_counter() - t:.1f} s)")
            conn.execute("ANALYZE")
            explain(conn, args.attempts)
    finally:
        engine.dispose()
        if not args.keep:
            with psycopg.connect(args.admin_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{args.name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
