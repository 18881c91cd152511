"""What coordinators and auditors ask of the log and its read models: a cycle, its forums
and the usulan a forum holds; an usulan's state and history with its lineage; a cycle's
funnel, integrity findings and a flat export; the logs and their sizes. Reads only."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from musrenbang.domain.catalogue import EventType as ET
from musrenbang.domain.catalogue import forum_stream, proposal_stream
from musrenbang.domain.records import State, evolve_proposal
from musrenbang.domain.regions import place_names
from musrenbang.events.store import read_stream

EXITS = {
    "ProposalRejected": "rejected",
    "ProposalDeferred": "deferred",
    "ProposalMerged": "merged",
    "ProposalNotAccommodated": "not_accommodated",
    "ProposalNotDeliberated": "not_deliberated",
}


async def ping(conn: AsyncConnection) -> None:
    """The cheapest statement the server answers (a health check)."""
    await conn.execute(text("SELECT 1"))


async def cycle_state(conn: AsyncConnection, cycle_id: str) -> State | None:
    """The cycle's read model with its status and last seq; None: no such cycle."""
    row = (
        await conn.execute(
            text("SELECT status, state, last_seq FROM read.cycles WHERE cycle_id = :c"),
            {"c": cycle_id},
        )
    ).first()
    return None if row is None else {**row.state, "status": row.status, "last_seq": row.last_seq}


async def cycles(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Every cycle, newest year first: its id, region, name, year, status and stage."""
    rows = await conn.execute(
        text(
            "SELECT cycle_id, log_id, status, state->>'name' AS name,"
            " (state->>'year')::int AS year, state->>'current_stage' AS current_stage,"
            " last_seq FROM read.cycles ORDER BY (state->>'year')::int DESC, cycle_id"
        )
    )
    return [
        {
            "cycle_id": r.cycle_id,
            "region": r.log_id,
            "name": r.name,
            "year": r.year,
            "status": r.status,
            "current_stage": r.current_stage,
            "last_seq": r.last_seq,
        }
        for r in rows
    ]


def _like(text_: str) -> str:
    """`text_` as a LIKE pattern that matches it literally, anywhere."""
    escaped = text_.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def search_proposals(
    conn: AsyncConnection,
    cycle_id: str,
    *,
    kelurahan: str | None = None,
    bidang: str | None = None,
    status: str | None = None,
    stage: str | None = None,
    unit: str | None = None,
    words: str | None = None,
    after: str | None = None,
    limit: int = 100,
    names: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The cycle's usulan that match: in a kelurahan (or a kecamatan, by its code's
    prefix), of a bidang, a status, at a stage, whose masalah or gagasan holds `words`;
    by id, from after `after`."""
    rows = await conn.execute(
        text(
            "SELECT proposal_id, status, stage, unit, state FROM read.proposals"
            " WHERE cycle_id = :c"
            " AND (CAST(:kel AS text) IS NULL OR starts_with(state->'details'->>'kelurahan', :kel))"
            " AND (CAST(:bidang AS text) IS NULL OR state->'details'->>'bidang' = :bidang)"
            " AND (CAST(:status AS text) IS NULL OR status = :status)"
            " AND (CAST(:stage AS text) IS NULL OR stage = :stage)"
            " AND (CAST(:unit AS text) IS NULL OR unit = :unit)"
            " AND (CAST(:words AS text) IS NULL OR state->'details'->>'masalah' ILIKE :words"
            "      OR state->'details'->>'gagasan' ILIKE :words)"
            " AND (CAST(:after AS text) IS NULL OR proposal_id > :after)"
            " ORDER BY proposal_id LIMIT :limit"
        ),
        {
            "c": cycle_id,
            "kel": kelurahan,
            "bidang": bidang,
            "status": status,
            "stage": stage,
            "unit": unit,
            "words": _like(words) if words else None,
            "after": after,
            "limit": limit,
        },
    )
    if names is None:  # the cycle's names, unless the caller read them already
        names = await cycle_names(conn, cycle_id) or {}
    out = []
    for r in rows:
        details = r.state.get("details", {})
        out.append(
            {
                "proposal_id": r.proposal_id,
                "receipt": r.state.get("receipt"),
                "kind": r.state.get("kind"),
                "status": r.status,
                "stage": r.stage,
                "unit": r.unit,
                "masalah": details.get("masalah"),
                "bidang": details.get("bidang"),
                "cost": details.get("cost"),
                "kelurahan": details.get("kelurahan"),
                **place_names(details, names),
            }
        )
    return out


async def cycle_names(conn: AsyncConnection, cycle_id: str) -> dict[str, str] | None:
    """The names the cycle was planned with (kelurahan, kecamatan, OPD: code or slug to
    name), or None when there is no such cycle."""
    row = (
        await conn.execute(
            text("SELECT state->'names' AS names FROM read.cycles WHERE cycle_id = :c"),
            {"c": cycle_id},
        )
    ).first()
    if row is None:
        return None
    return dict(row.names or {})


async def forum_counts(conn: AsyncConnection, cycle_id: str) -> list[dict[str, Any]]:
    """How many forums of the cycle are at each stage and status."""
    rows = await conn.execute(
        text(
            "SELECT stage, status, count(*) AS n FROM read.forums WHERE cycle_id = :c GROUP BY 1, 2"
        ),
        {"c": cycle_id},
    )
    return [{"stage": r.stage, "status": r.status, "count": r.n} for r in rows]


async def forum_state(conn: AsyncConnection, fid: str) -> State | None:
    """The forum's read model with its status and last seq; None: it never opened."""
    row = (
        await conn.execute(
            text("SELECT status, state, last_seq FROM read.forums WHERE forum_id = :f"), {"f": fid}
        )
    ).first()
    return None if row is None else {**row.state, "status": row.status, "last_seq": row.last_seq}


async def forum_status(conn: AsyncConnection, fid: str) -> str | None:
    row = (
        await conn.execute(text("SELECT status FROM read.forums WHERE forum_id = :f"), {"f": fid})
    ).first()
    return None if row is None else str(row.status)


async def held_proposals(
    conn: AsyncConnection,
    cycle_id: str,
    stage: str,
    unit: str,
    names: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The usulan at a forum: id, status, masalah and cost, its kelurahan and OPD with
    their names."""
    rows = await conn.execute(
        text(
            "SELECT proposal_id, status, state->'details'->>'masalah' AS masalah, "
            "(state->'details'->>'cost')::bigint AS cost, state->'details' AS details"
            " FROM read.proposals "
            "WHERE cycle_id = :c AND stage = :s AND unit = :u ORDER BY proposal_id"
        ),
        {"c": cycle_id, "s": stage, "u": unit},
    )
    if names is None:
        names = await cycle_names(conn, cycle_id) or {}
    out = []
    for r in rows:
        details = r.details or {}
        place = place_names(details, names)
        opd = details.get("opd_akhir") or details.get("opd")
        out.append(
            {
                "proposal_id": r.proposal_id,
                "status": r.status,
                "masalah": r.masalah,
                "cost": r.cost,
                "kelurahan": details.get("kelurahan"),
                "kelurahan_name": place["kelurahan_name"],
                "opd": opd,
                "opd_name": place["opd_name"],
            }
        )
    return out


@dataclass(frozen=True)
class ForumRow:
    """A forum's read-model row."""

    forum_id: str
    stage: str
    unit: str
    status: str
    state: State
    last_seq: int


async def cycle_forums(
    conn: AsyncConnection, cycle_id: str, stage: str | None, unit_prefix: str | None
) -> list[ForumRow]:
    """The cycle's forums (of one stage, under a unit prefix), by stage and unit."""
    rows = await conn.execute(
        text(
            "SELECT forum_id, stage, unit, status, state, last_seq FROM read.forums"
            " WHERE cycle_id = :c AND (CAST(:s AS text) IS NULL OR stage = :s)"
            " AND (CAST(:u AS text) IS NULL OR starts_with(unit, :u)) ORDER BY stage, unit"
        ),
        {"c": cycle_id, "s": stage, "u": unit_prefix},
    )
    return [ForumRow(**r._mapping) for r in rows]


async def proposal_log(conn: AsyncConnection, pid: str) -> str | None:
    """The log the usulan is recorded in, from the log itself (not a read model)."""
    row = (
        await conn.execute(
            text("SELECT log_id FROM audit.events WHERE stream = :s LIMIT 1"),
            {"s": proposal_stream(pid)},
        )
    ).first()
    return None if row is None else str(row.log_id)


async def log_ids(conn: AsyncConnection) -> list[str]:
    rows = await conn.execute(text("SELECT log_id FROM audit.logs ORDER BY log_id"))
    return [str(name) for name in rows.scalars()]


async def log_sizes(conn: AsyncConnection) -> list[tuple[str, int, int | None]]:
    """Each log with its size and the size of its latest checkpoint (None: none yet)."""
    rows = await conn.execute(
        text(
            "SELECT l.log_id, l.head_seq, (SELECT max(size) FROM audit.checkpoints c"
            " WHERE c.log_id = l.log_id) AS signed FROM audit.logs l ORDER BY l.log_id"
        )
    )
    return [(r.log_id, r.head_seq, r.signed) for r in rows]


async def proposal_state(
    conn: AsyncConnection, pid: str, as_of: datetime | None = None
) -> State | None:
    """The usulan as it stood at `as_of` (folded from the log), or now (the read model)."""
    if as_of is None:
        row = (
            await conn.execute(
                text("SELECT state FROM read.proposals WHERE proposal_id = :p"), {"p": pid}
            )
        ).first()
        return None if row is None else dict(row.state)
    events = await read_stream(conn, proposal_stream(pid), as_of=as_of)
    state: State | None = None
    for event in events:
        state = evolve_proposal(state, event.type, event.payload)
    return state


async def history(conn: AsyncConnection, pid: str) -> dict[str, Any] | None:
    """Every event of the usulan, ward to RKPD, and of the usulan merged into it or that
    it was merged into, each with its stage, actor, reason, seq and hash."""
    own = await read_stream(conn, proposal_stream(pid))
    if not own:
        return None
    lineage = {"merged_into": None, "absorbed": []}  # type: dict[str, Any]
    for event in own:
        if event.type == "ProposalMerged":
            if "into" in event.payload:
                lineage["merged_into"] = event.payload["into"]
            if "absorbed" in event.payload:
                lineage["absorbed"].append(event.payload["absorbed"])
    related = {}
    for other in filter(None, [lineage["merged_into"], *lineage["absorbed"]]):
        related[other] = [_entry(e) for e in await read_stream(conn, proposal_stream(other))]
    return {
        "proposal_id": pid,
        "events": [_entry(e) for e in own],
        "lineage": lineage,
        "related": related,
    }


def _entry(event: Any) -> dict[str, Any]:
    payload = event.payload
    return {
        "seq": event.seq,
        "log_id": event.log_id,
        "type": event.type,
        "stage": payload.get("stage"),
        "unit": payload.get("unit"),
        "actor": event.actor,
        "reason": payload.get("reason"),
        "reason_code": payload.get("reason_code"),
        "payload": payload,
        "occurred_at": event.occurred_at.isoformat(),
        "recorded_at": event.recorded_at.isoformat(),
        "hash": event.hash.hex(),
        "prev_hash": event.prev_hash.hex(),
    }


# `payload` is computed from the content each time a query names it (a virtual column,
# revision 0012): a query that reads it more than once a row takes it once, in a subquery
# that OFFSET 0 keeps from being merged into the outer one.
_FUNNEL = text("""
SELECT p->>'stage' AS stage, type,
       coalesce(p->>'reason_code', p->>'reason') AS reason, count(DISTINCT stream) AS n
  FROM (SELECT stream, type, payload AS p FROM audit.events
         WHERE cycle_id = :c AND stream LIKE 'proposal:%'
           AND type IN ('ProposalSubmitted', 'PokirSubmitted', 'ProposalForwarded',
                        'ProposalIncluded', 'ProposalRejected', 'ProposalDeferred',
                        'ProposalMerged', 'ProposalNotAccommodated', 'ProposalNotDeliberated')
        OFFSET 0) e
 WHERE NOT (type = 'ProposalMerged' AND p ? 'absorbed')
 GROUP BY 1, 2, 3
""")
_ARRIVED = text("""
SELECT payload->>'to_stage' AS stage, count(DISTINCT stream) AS n FROM audit.events
 WHERE cycle_id = :c AND type = 'ProposalForwarded' GROUP BY 1
""")


async def funnel(conn: AsyncConnection, cycle_id: str, stages: list[str]) -> list[dict[str, Any]]:
    """Per stage: how many usulan entered, left forward, and left otherwise, and why."""
    rows = (await conn.execute(_FUNNEL, {"c": cycle_id})).all()
    arrived = {r.stage: r.n for r in await conn.execute(_ARRIVED, {"c": cycle_id})}
    out = []
    for stage in stages:
        mine = [r for r in rows if r.stage == stage]
        entered = arrived.get(stage, 0) + sum(
            r.n for r in mine if r.type in ("ProposalSubmitted", "PokirSubmitted")
        )
        exits: dict[str, dict[str, Any]] = {}
        for r in mine:
            if r.type in EXITS:
                bucket = exits.setdefault(EXITS[r.type], {"count": 0, "reasons": {}})
                bucket["count"] += r.n
                if r.reason:
                    bucket["reasons"][r.reason] = bucket["reasons"].get(r.reason, 0) + r.n
        onward = "ProposalIncluded" if stage == stages[-1] else "ProposalForwarded"
        forwarded = sum(r.n for r in mine if r.type == onward)
        out.append({"stage": stage, "entered": entered, "forwarded": forwarded, "left": exits})
    return out


_NO_ANCESTOR = text("""
WITH ev AS (
    SELECT stream, version, type, p->>'stage' AS stage, p->>'to_stage' AS to_stage
      FROM (SELECT stream, version, type, payload AS p FROM audit.events
             WHERE cycle_id = :c AND stream LIKE 'proposal:%' OFFSET 0) e),
first_at AS (SELECT stream, stage, min(version) AS v FROM ev WHERE stage IS NOT NULL GROUP BY 1, 2)
SELECT f.stream, f.stage FROM first_at f
 WHERE NOT EXISTS (SELECT 1 FROM ev e WHERE e.stream = f.stream AND e.version < f.v
                      AND e.type = 'ProposalForwarded' AND e.to_stage = f.stage)
   AND NOT EXISTS (SELECT 1 FROM ev e WHERE e.stream = f.stream AND e.version = f.v
                      AND (e.type = 'PokirSubmitted'
                           OR (e.type = 'ProposalSubmitted' AND e.stage = :first)))
 ORDER BY 1, 2
""")
_RKPD_ORIGINS = text("""
SELECT item, (SELECT e.type || ':' || coalesce(e.payload->>'stage', '') FROM audit.events e
               WHERE e.stream = 'proposal:' || item ORDER BY e.version LIMIT 1) AS origin
  FROM audit.events a, jsonb_array_elements_text(a.payload->'items') AS item
 WHERE a.type = 'RkpdAdopted' AND a.cycle_id = :c
""")


_AFTER_ESCALATION = text("""
SELECT s.stream, s.p->>'stage' AS stage, s.p->>'unit' AS unit, s.seq,
       min(e.seq) AS escalated_seq
  FROM (SELECT stream, seq, payload AS p FROM audit.events
         WHERE cycle_id = :c AND type = 'ProposalSubmitted' OFFSET 0) s
  JOIN audit.events e ON e.type = 'EscalationRaised' AND e.seq < s.seq
   AND e.stream = 'forum:' || :c || '-' || (s.p->>'stage') || '-' || (s.p->>'unit')
 GROUP BY 1, 2, 3, 4 ORDER BY 4
""")
_DUPLICATES = text("""
SELECT state->'details'->>'kelurahan' AS kelurahan, lower(btrim(state->'details'->>'masalah'))
       AS masalah, state->'details'->>'bidang' AS bidang, array_agg(proposal_id ORDER BY 1) AS ids
  FROM read.proposals WHERE cycle_id = :c AND status <> 'merged'
 GROUP BY 1, 2, 3 HAVING count(*) > 1
UNION ALL
SELECT NULL, 'reference ' || (state->'details'->>'reference'), NULL, array_agg(proposal_id)
  FROM read.proposals WHERE cycle_id = :c AND state->'details'->>'reference' IS NOT NULL
 GROUP BY state->'details'->>'reference' HAVING count(*) > 1
""")


async def stranded(conn: AsyncConnection, cycle_id: str, stages: list[str]) -> list[Any]:
    """Usulan waiting at a forum that never opened although every forum of the stage
    before has closed (so the cycle had its chance to open it)."""
    forums = {
        (r.stage, r.unit): r.status
        for r in await conn.execute(
            text("SELECT stage, unit, status FROM read.forums WHERE cycle_id = :c"),
            {"c": cycle_id},
        )
    }
    waiting = await conn.execute(
        text(
            "SELECT proposal_id, stage, unit FROM read.proposals"
            " WHERE cycle_id = :c AND status IN ('submitted', 'forwarded') ORDER BY 1"
        ),
        {"c": cycle_id},
    )
    out = []
    for row in waiting:
        if (row.stage, row.unit) in forums or row.stage not in stages[1:]:
            continue
        before = stages[stages.index(row.stage) - 1]
        prior = [status for (stage, _), status in forums.items() if stage == before]
        if prior and all(status == "closed" for status in prior):
            out.append({"proposal_id": row.proposal_id, "stage": row.stage, "unit": row.unit})
    return out


async def findings(
    conn: AsyncConnection, cycle_id: str, first_stage: str, stages: list[str] | None = None
) -> dict[str, Any]:
    """Usulan at a stage with no ancestor in the stage before; RKPD items that trace to no
    kelurahan submission or pokir; usulan stranded at a forum that never opened; usulan
    submitted into a forum after its deadline was escalated; likely duplicates."""
    orphans = [
        {"proposal_id": r.stream.split(":", 1)[1], "stage": r.stage}
        for r in await conn.execute(_NO_ANCESTOR, {"c": cycle_id, "first": first_stage})
    ]
    untraced = [
        {"proposal_id": r.item, "first_event": r.origin}
        for r in await conn.execute(_RKPD_ORIGINS, {"c": cycle_id})
        if r.origin not in (f"ProposalSubmitted:{first_stage}", "PokirSubmitted:forum-pd")
    ]
    late = [
        {
            "proposal_id": r.stream.split(":", 1)[1],
            "stage": r.stage,
            "unit": r.unit,
            "seq": r.seq,
            "escalated_seq": r.escalated_seq,
        }
        for r in await conn.execute(_AFTER_ESCALATION, {"c": cycle_id})
    ]
    duplicates = [
        {"kelurahan": r.kelurahan, "masalah": r.masalah, "bidang": r.bidang, "proposal_ids": r.ids}
        for r in await conn.execute(_DUPLICATES, {"c": cycle_id})
    ]
    lost = await stranded(conn, cycle_id, stages or [first_stage])
    return {
        "without_ancestor": orphans,
        "rkpd_untraced": untraced,
        "stranded": lost,
        "submitted_after_escalation": late,
        "duplicates": duplicates,
        "ok": not (orphans or untraced or lost or late or duplicates),
    }


async def cycle_proposal_events(conn: AsyncConnection, cycle_id: str) -> list[dict[str, Any]]:
    """Every event of the cycle's usulan, in the log's order: type, stream, payload, the
    actor and when it happened."""
    rows = await conn.execute(
        text(
            "SELECT stream, type, payload, actor, occurred_at FROM audit.events"
            " WHERE cycle_id = :c AND starts_with(stream, 'proposal:') ORDER BY log_id, seq"
        ),
        {"c": cycle_id},
    )
    return [
        {
            "proposal_id": r.stream.split(":", 1)[1],
            "type": r.type,
            "payload": r.payload,
            "actor": r.actor,
            "at": r.occurred_at.isoformat(),
        }
        for r in rows
    ]


async def cycle_proposal_states(conn: AsyncConnection, cycle_id: str) -> dict[str, State]:
    rows = await conn.execute(
        text("SELECT proposal_id, state FROM read.proposals WHERE cycle_id = :c"),
        {"c": cycle_id},
    )
    return {r.proposal_id: dict(r.state) for r in rows}


async def proposal_by_receipt(conn: AsyncConnection, receipt: str) -> str | None:
    """The usulan whose receipt code (nomor usulan) is `receipt`, if any."""
    row = (
        await conn.execute(
            text("SELECT proposal_id FROM read.proposals WHERE state->>'receipt' = :r LIMIT 1"),
            {"r": receipt},
        )
    ).first()
    return None if row is None else str(row.proposal_id)


async def proposal_events(conn: AsyncConnection, proposal_id: str) -> list[dict[str, Any]]:
    """An usulan's own events, oldest first: type, payload, actor, when, and its seq."""
    rows = await conn.execute(
        text(
            "SELECT type, payload, actor, occurred_at, log_id, seq FROM audit.events"
            " WHERE stream = :s ORDER BY version"
        ),
        {"s": proposal_stream(proposal_id)},
    )
    return [
        {
            "type": r.type,
            "payload": r.payload,
            "actor": r.actor,
            "at": r.occurred_at,
            "log_id": r.log_id,
            "seq": r.seq,
        }
        for r in rows
    ]


async def forum_records(
    conn: AsyncConnection, forum_id: str
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """A forum's opening payload and its closing (payload, type and seq), each None when
    the log has none."""
    rows = (
        await conn.execute(
            text(
                "SELECT type, payload, seq FROM audit.events WHERE stream = :s"
                " AND type = ANY(:t) ORDER BY version"
            ),
            {
                "s": forum_stream(forum_id),
                "t": [ET.FORUM_OPENED, ET.FORUM_CLOSED, ET.FORUM_AUTO_CLOSED],
            },
        )
    ).all()
    opened = next((dict(r.payload) for r in rows if r.type == ET.FORUM_OPENED), None)
    closed = next(
        (
            {"payload": dict(r.payload), "type": r.type, "seq": r.seq}
            for r in rows
            if r.type != ET.FORUM_OPENED
        ),
        None,
    )
    return opened, closed


async def forum_proposal_events(
    conn: AsyncConnection,
    cycle_id: str,
    stage: str,
    unit: str,
    incoming: list[str],
    through_seq: int | None = None,
) -> list[dict[str, Any]]:
    """The events (through `through_seq`) of every usulan a forum held: those that came in
    with it and those with an event at its stage and unit."""
    rows = await conn.execute(
        text(
            "WITH held AS ("
            " SELECT DISTINCT stream FROM (SELECT stream, payload AS p FROM audit.events"
            " WHERE cycle_id = :c AND starts_with(stream, 'proposal:')"
            " AND (CAST(:through AS bigint) IS NULL OR seq <= :through) OFFSET 0) e"
            " WHERE p->>'stage' = :s AND p->>'unit' = :u"
            " UNION SELECT 'proposal:' || x FROM unnest(CAST(:incoming AS text[])) AS x)"
            " SELECT stream, type, payload, seq FROM audit.events"
            " WHERE stream IN (SELECT stream FROM held)"
            " AND (CAST(:through AS bigint) IS NULL OR seq <= :through)"
            " ORDER BY log_id, seq"
        ),
        {"c": cycle_id, "s": stage, "u": unit, "incoming": incoming, "through": through_seq},
    )
    return [
        {
            "proposal_id": r.stream.split(":", 1)[1],
            "type": r.type,
            "payload": r.payload,
            "seq": r.seq,
        }
        for r in rows
    ]


async def log_head_seq(conn: AsyncConnection, log_id: str) -> int:
    row = (
        await conn.execute(
            text("SELECT coalesce(max(seq), 0) AS n FROM audit.events WHERE log_id = :l"),
            {"l": log_id},
        )
    ).first()
    return int(row.n) if row is not None else 0
