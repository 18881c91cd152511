"""What the API checks before it trusts a request or reports itself well: the address
holds no text the log cannot hold; PostgreSQL and Temporal each answer within a bound."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from musrenbang.domain.text import text_problem
from musrenbang.events import queries

CHECK_SECONDS = 3.0


def address_problem(path: str, query: Iterable[tuple[str, str]]) -> str | None:
    """Why the request's path or query cannot be served, or None."""
    problem = text_problem(path)
    if problem:
        return f"the path {problem}"
    for name, value in query:
        problem = text_problem(name)
        if problem:
            return f"a query parameter's name {problem}"
        problem = text_problem(value)
        if problem:
            return f"the query parameter {name} {problem}"
    return None


async def _timed(check: Any) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        await asyncio.wait_for(check, CHECK_SECONDS)
    except TimeoutError:
        return {"ok": False, "error": f"no answer within {CHECK_SECONDS:.0f} s"}
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"ok": True, "ms": round((time.perf_counter() - start) * 1000, 1)}


async def _postgres(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await queries.ping(conn)


async def _temporal(client: Client) -> None:
    ok = await client.service_client.check_health(timeout=timedelta(seconds=CHECK_SECONDS))
    if not ok:
        raise RuntimeError("the frontend reports itself not serving")


async def health_checks(engine: AsyncEngine, client: Client) -> dict[str, dict[str, Any]]:
    pg, tp = await asyncio.gather(_timed(_postgres(engine)), _timed(_temporal(client)))
    return {"postgres": pg, "temporal": tp}
