"""The `musrenbang` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence
from datetime import timedelta

from musrenbang.config import Settings, get_settings
from musrenbang.logging import configure_logging
from musrenbang.stack import app_engine


async def _audit_verify(settings: Settings) -> int:
    from musrenbang.events.verify import verify_all

    engine = app_engine(settings)
    try:
        async with engine.connect() as conn:
            result = await verify_all(conn)
    finally:
        await engine.dispose()
    if result.ok:
        print(f"log intact: {result.checked} events verified")
        return 0
    print(
        f"log BROKEN in {result.log_id} at seq {result.first_bad_seq}: {result.problem} "
        f"({result.checked} events verified before it)",
        file=sys.stderr,
    )
    return 1


def _migrate(settings: Settings) -> int:
    from musrenbang.events.db import migrate
    from musrenbang.stack import owner_url

    migrate(owner_url(settings), settings.app_db_user, settings.app_db_password)
    print("database schema is up to date")
    return 0


async def _rebuild(settings: Settings) -> int:
    from musrenbang.events.projections import rebuild

    engine = app_engine(settings)
    try:
        async with engine.begin() as conn:
            count = await rebuild(conn)
    finally:
        await engine.dispose()
    print(f"read models rebuilt from {count} events")
    return 0


async def _worker(settings: Settings) -> int:
    from musrenbang.logging import get_logger
    from musrenbang.stack import connect_temporal
    from musrenbang.worker import build_worker, load_signer

    signer = load_signer(settings)  # production: build_worker refuses to go on without
    engine = app_engine(settings)
    client = await connect_temporal(settings.temporal_target, settings.temporal_namespace)
    worker = build_worker(
        client,
        settings.temporal_task_queue,
        engine,
        settings.webhook_url,
        signer,
        timedelta(minutes=settings.checkpoint_interval_minutes),
    )
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
    audit_sub.add_parser("verify", help="verify the whole log; exit 0 when intact")
    audit_sub.add_parser("rebuild", help="rebuild the read models from the log")
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
        return asyncio.run(_audit_verify(settings))
    if args.command == "audit" and args.audit_command == "rebuild":
        return asyncio.run(_rebuild(settings))
    raise SystemExit(f"unknown command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
