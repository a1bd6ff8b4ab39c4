"""What security adds to each request: the key lookup, a lockout-row write, an audit append.

Why: every data request now reads its API key from the database (no cache, so revocation is
immediate on every replica) and every enrol/verify appends one hash-chained audit row under the
chain's lock, and a failed verify writes the lockout row. Next to a verify's ~25-450 ms CNN run these
should be small; this measures them on SQLite (a temp file) and, when given, PostgreSQL::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_security_overhead.py --runs 300 \\
        --postgres postgresql://postgres@127.0.0.1:5432/DBNAME --out benchmarks/results/security_overhead.txt

The PostgreSQL database should be an empty throwaway one (the schema is migrated into it).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from service.runtime.config import normalise_database_url
from service.security import audit, keys, lockout
from service.storage.database import create_db_engine, make_session_factory, upgrade_to_head


def _time(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1e3)
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * (len(samples) - 1))]


def bench(url: str, runs: int) -> list[str]:
    engine = create_db_engine(url)
    upgrade_to_head(engine)
    factory = make_session_factory(engine)
    with factory() as session:
        secret = keys.create_key(session, f"bench-{os.getpid()}-{time.time_ns()}", frozenset({"verify"}))
    policy = lockout.LockoutPolicy(max_failures=10**9)
    event = audit.AuditEvent("verify", "denied", user_id="bench", key_name="bench", summary={"votes": 0})

    def authenticate() -> None:
        with factory() as session:
            assert keys.authenticate(session, secret) is not None

    def failure() -> None:
        with factory() as session:
            lockout.record_failure(session, policy, "bench")

    rows = []
    for name, fn in (("key lookup", authenticate), ("lockout failure write", failure),
                     ("audit append", lambda: audit.append(factory, event))):  # fmt: skip
        _time(fn, 10)  # warm-up (connections, statement caches)
        median, p95 = _time(fn, runs)
        rows.append(f"{engine.dialect.name:<10} {name:<22} median {median:7.3f} ms   p95 {p95:7.3f} ms")
    engine.dispose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--postgres", help="URL of an empty throwaway PostgreSQL database")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = bench(f"sqlite:///{tmp}/bench.db", args.runs)
    if args.postgres:
        rows += bench(normalise_database_url(args.postgres), args.runs)
    header = [
        f"# {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores "
        f"(shared with other jobs), Python {platform.python_version()}, runs={args.runs}",
    ]
    text = "\n".join(header + rows) + "\n"
    print(text, end="")
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
