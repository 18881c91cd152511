"""The `musrenbang` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from musrenbang.config import Settings, get_settings
from musrenbang.logging import configure_logging
from musrenbang.runtime import NotConfigured, app_engine, configured_owner_url


def _owner_url(settings: Settings) -> URL:
    """For the operator's tools (migrate, audit): the configured database, else the
    embedded stack's under MUSRENBANG_HOME (`musrenbang up` on this machine)."""
    if settings.database_url:
        return configured_owner_url(settings)
    from musrenbang.embedded import embedded_owner_url

    return embedded_owner_url(settings)


def _tool_engine(settings: Settings) -> AsyncEngine:
    return app_engine(settings, _owner_url(settings))


def _verifier_keys(value: str) -> list[str]:
    """A verifier key given as itself, or as a file holding one or more (one a line)."""
    from musrenbang.events.tlog import NoteError, Verifier

    with contextlib.suppress(NoteError):
        return [Verifier.parse(value).text()]
    path = Path(value)
    if not path.is_file():
        raise ValueError(f"{value!r} is neither a verifier key nor a file holding one")
    keys = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    for key in keys:
        Verifier.parse(key)  # a malformed one is named now, not ignored later
    if not keys:
        raise ValueError(f"{value} holds no verifier key")
    return keys


async def _audit_verify(settings: Settings, checkpoint: str | None, key: str | None) -> int:
    from musrenbang.events.verify import (
        verify_against_checkpoint,
        verify_all,
        verify_read_models,
        verify_tree,
    )

    if (checkpoint is None) != (key is None):
        print("musrenbang audit verify: --checkpoint and --key go together", file=sys.stderr)
        return 2
    note, keys = None, []
    if checkpoint is not None and key is not None:
        try:
            note, keys = Path(checkpoint).read_text(), _verifier_keys(key)
        except (OSError, ValueError) as exc:
            print(f"musrenbang audit verify: {exc}", file=sys.stderr)
            return 2
    engine = _tool_engine(settings)
    try:
        async with engine.connect() as conn:
            result = await verify_all(conn)
            models = await verify_read_models(conn) if result.ok else None
            tree = await verify_tree(conn) if result.ok else None
            match = (  # over leaves the chain walk has just vouched for
                await verify_against_checkpoint(conn, note, keys) if note and result.ok else None
            )
    finally:
        await engine.dispose()
    if not result.ok:
        print(
            f"log BROKEN in {result.log_id} at seq {result.first_bad_seq}: {result.problem} "
            f"({result.checked} events verified before it)",
            file=sys.stderr,
        )
        return 1
    if models is not None and not models.ok:
        print(
            f"read model BROKEN at {models.record}: {models.problem} (the log is intact;"
            " `musrenbang audit rebuild` recreates the read models from it)",
            file=sys.stderr,
        )
        return 1
    if tree is not None and not tree.ok:
        print(f"tree BROKEN in {tree.log_id}: {tree.problem}", file=sys.stderr)
        return 1
    if match is not None and not match.ok:
        print(
            f"SECURITY ERROR: log {match.log_id} does not match the checkpoint of size"
            f" {match.size}: {match.problem}",
            file=sys.stderr,
        )
        return 1
    print(f"log intact: {result.checked} events verified")
    print(f"read models match the log: {models.checked if models else 0} events folded")
    print(f"the Merkle tree matches the log: {tree.checked if tree else 0} subtrees recomputed")
    if match is not None:
        print(f"log {match.log_id} matches the signed checkpoint of size {match.size}")
    return 0


async def _audit_checkpoint(settings: Settings, log_id: str | None) -> int:
    from musrenbang.events.checkpoints import latest
    from musrenbang.events.db import driver_connection
    from musrenbang.events.tree import log_ids

    engine = _tool_engine(settings)
    try:
        async with engine.connect() as conn:
            driver = await driver_connection(conn)
            logs = await log_ids(driver)
            if log_id is None and len(logs) != 1:
                names = ", ".join(logs) or "none yet"
                print(
                    f"musrenbang audit checkpoint: name a log with --log ({names})", file=sys.stderr
                )
                return 2
            found = await latest(driver, log_id or logs[0])
    finally:
        await engine.dispose()
    if found is None:
        print(f"log {log_id or logs[0]} has no signed checkpoint yet", file=sys.stderr)
        return 1
    sys.stdout.write(found.note)
    return 0


def _audit_watch(settings: Settings, args: argparse.Namespace) -> int:
    from musrenbang.events.tlog import Verifier
    from musrenbang.witness import Api, run_watch

    try:
        keys = _verifier_keys(args.key)
    except ValueError as exc:
        print(f"musrenbang audit watch: {exc}", file=sys.stderr)
        return 2
    base = args.api or f"http://{settings.api_host}:{settings.api_port}/api/v1"
    token = args.token or os.environ.get("MUSRENBANG_TOKEN")

    async def watch() -> int:
        api = Api(base, token)
        try:
            return await run_watch(api, Path(args.state), Verifier.parse(keys[0]), args.log)
        finally:
            await api.close()

    return asyncio.run(watch())


def _audit_verify_evidence(path: str, key: str) -> int:
    from musrenbang.events.evidence import check_bundle

    try:
        keys = _verifier_keys(key)
        bundle = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        print(f"musrenbang audit verify-evidence: {exc}", file=sys.stderr)
        return 2
    result = check_bundle(bundle, keys)
    if not result.ok:
        for problem in result.problems or ["the bundle proves nothing"]:
            print(f"SECURITY ERROR: {problem}", file=sys.stderr)
        return 1
    print(
        f"evidence holds: {result.checked} records of usulan {bundle['proposal_id']} are in"
        f" {result.origin} at size {result.size}, signed by the key given"
    )
    return 0


def _audit_keygen(name: str) -> int:
    from musrenbang.events.tlog import NoteError, generate_key

    try:
        skey, vkey = generate_key(name)
    except NoteError as exc:
        print(f"musrenbang audit keygen: {exc}", file=sys.stderr)
        return 2
    print(skey)
    print(vkey)
    return 0


def _migrate(settings: Settings) -> int:
    from musrenbang.events.db import migrate

    migrate(_owner_url(settings), settings.app_db_user, settings.app_db_password)
    print("database schema is up to date")
    return 0


async def _rebuild(settings: Settings) -> int:
    from musrenbang.events.db import create_engine
    from musrenbang.events.projections import rebuild

    engine = create_engine(_owner_url(settings))  # the read models are the owner's to rebuild
    try:
        async with engine.begin() as conn:
            count = await rebuild(conn)
    finally:
        await engine.dispose()
    print(f"read models rebuilt from {count} events")
    return 0


async def _worker(settings: Settings) -> int:
    from musrenbang.logging import get_logger
    from musrenbang.runtime import connect_temporal
    from musrenbang.worker import configured_worker

    engine = app_engine(settings)
    client = await connect_temporal(settings.temporal_target, settings.temporal_namespace)
    worker = configured_worker(settings, client, engine)
    get_logger("musrenbang.worker").info(
        "worker.started",
        task_queue=settings.temporal_task_queue,
        temporal=settings.temporal_target,
    )
    try:
        await worker.run()
    finally:
        await engine.dispose()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="musrenbang", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="bring the database schema up to date (as the owner)")
    sub.add_parser("worker", help="run the Temporal worker (workflows and activities)")
    sub.add_parser("api", help="run the HTTP API")
    sub.add_parser("up", help="run the whole embedded stack in the foreground")
    token = sub.add_parser("token", help="print a signed token for local use")
    token.add_argument("--role", required=True, choices=["admin", "coordinator", "auditor", "dprd"])
    token.add_argument("--wilayah", help="region code of the jurisdiction (e.g. 36.71.01)")
    token.add_argument("--opd", help="OPD slug of the jurisdiction (e.g. dinas-pupr)")
    token.add_argument("--subject", help="who the token names (default: derived)")
    token.add_argument("--fraksi", help="for dprd: the member's fraksi")
    token.add_argument("--hours", type=int, default=12)
    token.add_argument(
        "--region", help="the kota/kabupaten the token belongs to (e.g. 36.71); from --wilayah"
    )
    token.add_argument(
        "--regions", help="for auditor: the regions it reads, comma-separated, or * for all"
    )
    demo = sub.add_parser("demo", help="run a realistic cycle for Kota Tangerang through the API")
    demo.add_argument(
        "--kelurahan",
        type=int,
        default=None,
        help="only this many kelurahan take part (the rest submit nothing)",
    )
    demo.add_argument("--year", type=int, default=None)
    audit = sub.add_parser("audit", help="auditor commands")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser(
        "verify", help="verify the whole log and the read models; exit 0 when intact"
    )
    verify.add_argument("--checkpoint", help="a signed checkpoint note held outside, to match")
    verify.add_argument("--key", help="the log's verifier key (or a file holding it)")
    audit_sub.add_parser("rebuild", help="rebuild the read models from the log (as the owner)")
    keygen = audit_sub.add_parser(
        "keygen", help="print a new signer key (first line) and its verifier key (second)"
    )
    keygen.add_argument("name", help="the key's name, e.g. bappeda.tangerangkota.go.id")
    cp = audit_sub.add_parser("checkpoint", help="print a log's latest signed checkpoint")
    cp.add_argument("--log", help="the log (a region code, e.g. 36.71)")
    watch = audit_sub.add_parser(
        "watch", help="witness the logs through the API: exit non-zero on any inconsistency"
    )
    watch.add_argument("--state", required=True, help="folder of the witness's own state")
    watch.add_argument("--key", required=True, help="the log's verifier key (or a file)")
    watch.add_argument("--api", help="the API's base URL (default: the configured one)")
    watch.add_argument("--token", help="an auditor token (default: $MUSRENBANG_TOKEN)")
    watch.add_argument("--log", action="append", help="only this log (repeatable)")
    evidence = audit_sub.add_parser(
        "verify-evidence", help="check an usulan's evidence bundle offline"
    )
    evidence.add_argument("file", help="the bundle (GET /proposals/{id}/evidence)")
    evidence.add_argument("--key", required=True, help="the log's verifier key (or a file)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    configure_logging(settings.resolved_log_format, settings.log_level)
    if args.command == "migrate":
        return _migrate(settings)
    if args.command == "up":
        from musrenbang.stack import run_stack

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_stack(settings))
        return 0
    if args.command in ("api", "worker") and not settings.database_url:
        try:  # never an embedded server: a production process is told where its database is
            configured_owner_url(settings)
        except NotConfigured as exc:
            print(f"musrenbang {args.command}: {exc}", file=sys.stderr)
            return 2
    if args.command == "api":
        import uvicorn

        from musrenbang.api.app import create_app

        uvicorn.run(
            create_app(settings), host=settings.api_host, port=settings.api_port, log_config=None
        )
        return 0
    if args.command == "token":
        from musrenbang.api.auth import issue_token

        subject = args.subject or f"{args.role}.{args.opd or args.wilayah or 'pusat'}"
        try:
            token = issue_token(
                settings,
                subject,
                args.role,
                args.wilayah,
                args.opd,
                args.fraksi,
                args.hours,
                region=args.region,
                regions=args.regions.split(",") if args.regions else None,
            )
        except ValueError as exc:
            print(f"musrenbang token: {exc}", file=sys.stderr)
            return 2
        print(token)
        return 0
    if args.command == "demo":
        from musrenbang.demo import run_demo

        return asyncio.run(run_demo(settings, args.kelurahan, args.year))
    if args.command == "worker":
        try:
            return asyncio.run(_worker(settings))
        except KeyboardInterrupt:
            return 0
    if args.command == "audit" and args.audit_command == "verify":
        return asyncio.run(_audit_verify(settings, args.checkpoint, args.key))
    if args.command == "audit" and args.audit_command == "keygen":
        return _audit_keygen(args.name)
    if args.command == "audit" and args.audit_command == "checkpoint":
        return asyncio.run(_audit_checkpoint(settings, args.log))
    if args.command == "audit" and args.audit_command == "watch":
        return _audit_watch(settings, args)
    if args.command == "audit" and args.audit_command == "verify-evidence":
        return _audit_verify_evidence(args.file, args.key)
    if args.command == "audit" and args.audit_command == "rebuild":
        return asyncio.run(_rebuild(settings))
    raise SystemExit(f"unknown command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
