"""Evidence bundles: an usulan's whole history, lineage included, proven against one
signed checkpoint, checkable offline by anyone holding the log's verifier key.

A bundle is JSON:

    {"format": "musrenbang-evidence/1", "proposal_id", "log_id",
     "checkpoint": "<the signed note>",
     "streams": {"proposal:<id>": <number of its events the checkpoint covers>, ...},
     "records": [{"seq", "leaf_index", "stream", "version", "recorded_at", "content",
                  "prev_hash", "hash", "inclusion_proof": [base64, ...]}, ...],
     "uncovered": [seqs recorded after the checkpoint]}

Each record carries exactly what its leaf hash covers (the event's canonical content,
its version and the time it was recorded, the hash before it and its seq), so a checker
recomputes the leaf (`SHA-256(0x00 || prev_hash || be64(seq) || record)`), then proves it
in the checkpoint's tree with the RFC 9162 inclusion proof. `check_bundle` does that with
no database.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from musrenbang.domain.catalogue import EventType as ET
from musrenbang.domain.catalogue import proposal_stream
from musrenbang.events import tlog, tree
from musrenbang.events.canonical import format_timestamp, leaf_hash, record_bytes
from musrenbang.events.errors import EventLogError

FORMAT = "musrenbang-evidence/1"
_STREAM = (
    "SELECT log_id, seq, content, version, recorded_at, prev_hash, hash FROM audit.events"
    " WHERE stream = %s ORDER BY version"
)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def lineage_streams(driver: Any, proposal_id: str) -> list[str]:
    """The usulan's stream and those of the usulan merged into it or it was merged into,
    followed through the log (not the read models)."""
    streams, todo = [], [proposal_stream(proposal_id)]
    while todo:
        stream = todo.pop(0)
        if stream in streams:
            continue
        streams.append(stream)
        rows = await (
            await driver.execute(
                "SELECT payload FROM audit.events WHERE stream = %s AND type = 'ProposalMerged'",
                (stream,),
            )
        ).fetchall()
        for (payload,) in rows:
            for key in ("into", "absorbed"):
                if isinstance(payload.get(key), str):
                    todo.append(proposal_stream(payload[key]))
    return streams


async def build_bundle(
    driver: Any, proposal_id: str, checkpoint_note: str, size: int
) -> dict[str, Any] | None:
    """The bundle of an usulan against the checkpoint of `size` leaves (None: no usulan)."""
    streams = await lineage_streams(driver, proposal_id)
    rows: list[Any] = []
    for stream in streams:
        rows.extend(await (await driver.execute(_STREAM, (stream,))).fetchall())
    if not rows:
        return None
    log_id = rows[0][0]
    covered = sorted((r for r in rows if r[0] == log_id and r[1] <= size), key=lambda r: r[1])
    proofs = await tree.inclusion_proofs(driver, log_id, [r[1] for r in covered], size)
    records = []
    for _, seq, content, version, recorded_at, prev, hash_ in covered:
        proof = proofs[seq]
        records.append(
            {
                "seq": seq,
                "leaf_index": seq - 1,
                "stream": json.loads(content)["stream"],
                "version": version,
                "recorded_at": format_timestamp(recorded_at),
                "content": content,
                "prev_hash": _b64(bytes(prev)),
                "hash": _b64(bytes(hash_)),
                "inclusion_proof": [_b64(p) for p in proof],
            }
        )
    counts = {s: sum(1 for r in records if r["stream"] == s) for s in streams}
    counts = {s: n for s, n in counts.items() if n}  # a stream all after the checkpoint: none
    return {
        "format": FORMAT,
        "proposal_id": proposal_id,
        "log_id": log_id,
        "checkpoint": checkpoint_note,
        "streams": counts,
        "records": records,
        "uncovered": sorted(r[1] for r in rows if r[0] != log_id or r[1] > size),
    }


@dataclass
class EvidenceCheck:
    ok: bool
    checked: int = 0
    problems: list[str] = field(default_factory=list)
    origin: str | None = None
    size: int | None = None


def check_bundle(bundle: Any, vkeys: Iterable[str]) -> EvidenceCheck:
    """Checks a bundle with no database: the checkpoint's signature by one of `vkeys`,
    each record's leaf hash recomputed from its content, its inclusion in the checkpoint's
    tree, and each stream complete (versions 1..n, none missing) up to the checkpoint."""
    result = EvidenceCheck(ok=False)
    try:
        if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} bundle")
        text = tlog.verify_note(str(bundle["checkpoint"]), list(vkeys))
        checkpoint = tlog.parse_checkpoint(text)
        result.origin, result.size = checkpoint.origin, checkpoint.size
        if not checkpoint.origin.endswith(f"/{bundle['log_id']}"):
            raise ValueError(
                f"the checkpoint is of {checkpoint.origin}, not of log {bundle['log_id']}"
            )
        streams = dict(bundle["streams"])
        own = proposal_stream(bundle["proposal_id"])
        versions: dict[str, list[int]] = {}
        merged: set[str] = set()
        for record in bundle["records"]:
            if record.get("stream") not in streams:
                result.problems.append(
                    f"seq {record.get('seq')}: of a stream the bundle does not list"
                )
                continue
            problem = _record_problem(record, checkpoint)
            if problem:
                result.problems.append(f"seq {record.get('seq')}: {problem}")
                continue
            versions.setdefault(record["stream"], []).append(int(record["version"]))
            merged.update(_lineage(record["content"]))
            result.checked += 1
        for stream, count in streams.items():
            got = sorted(versions.get(stream, []))
            if int(count) < 1 or got != list(range(1, int(count) + 1)):
                result.problems.append(f"{stream}: its events are not all here ({got})")
        if own not in streams:
            result.problems.append("the usulan's own stream is not in the bundle")
        missing = sorted(merged - set(streams))
        if missing:
            result.problems.append(f"merged usulan not in the bundle: {', '.join(missing)}")
    except (KeyError, TypeError, ValueError, AttributeError, EventLogError) as exc:
        result.problems.append(str(exc) or type(exc).__name__)
    result.ok = not result.problems and result.checked > 0
    return result


def _lineage(content: str) -> set[str]:
    """The streams a merge record names (the lineage a bundle must then include)."""
    event = json.loads(content)
    if event.get("type") != ET.PROPOSAL_MERGED:
        return set()
    payload = event.get("payload") or {}
    return {
        proposal_stream(payload[k]) for k in ("into", "absorbed") if isinstance(payload.get(k), str)
    }


def _record_problem(record: dict[str, Any], checkpoint: tlog.Checkpoint) -> str | None:
    seq, version = int(record["seq"]), int(record["version"])
    content = str(record["content"])
    event = json.loads(content)
    if not isinstance(event, dict) or event.get("stream") != record["stream"]:
        return "its stream is not the one its content names"
    recorded = datetime.fromisoformat(str(record["recorded_at"]).replace("Z", "+00:00"))
    if format_timestamp(recorded) != record["recorded_at"]:
        return "its recorded_at is not in the log's form"
    prev = base64.b64decode(record["prev_hash"], validate=True)
    leaf = leaf_hash(prev, seq, record_bytes(content, recorded, version))
    if leaf != base64.b64decode(record["hash"], validate=True):
        return "its content does not hash to its leaf"
    if int(record["leaf_index"]) != seq - 1:
        return "its leaf index is not seq - 1"
    proof = [base64.b64decode(p, validate=True) for p in record["inclusion_proof"]]
    try:
        tlog.verify_inclusion(seq - 1, checkpoint.size, leaf, proof, checkpoint.root)
    except tlog.ProofError as exc:
        return f"not in the signed tree: {exc}"
    return None
