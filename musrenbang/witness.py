"""`musrenbang audit watch`: the witness and monitor an Inspektorat runs on its own
machine, through the API, with no access to the database.

For each log it keeps, in its state folder, the last checkpoint it verified and a mirror
of the log's leaf hashes up to that checkpoint. Each run:

1. fetches the log's latest checkpoint and verifies its signature with the verifier key
   it was given (never one the server names);
2. refuses a checkpoint smaller than the one it holds, or of the same size with another
   root, and otherwise verifies the server's consistency proof between the two;
3. fetches the new leaf hashes and checks that its mirror, extended by them, has exactly
   the signed root: every new leaf is then proven included, and every old one still is.

Only then does it keep the new checkpoint. On any failure it prints a line beginning
`SECURITY ERROR` naming the log, both sizes and, comparing the server's leaves with its
mirror, the first seq whose leaf differs, exits non-zero, and keeps its state as it was.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from musrenbang.events import tlog

PAGE = 1 << 16  # leaves per request (the API's limit)
HASH = tlog.HASH_SIZE


class SecurityError(Exception):
    """What the log served cannot be the log the witness saw before."""


class Unreachable(Exception):
    """The API could not be asked (down, refused the token, ...)."""


@dataclass
class Held:
    """What the witness holds of one log."""

    size: int
    root: bytes
    note: str | None
    nodes: list[bytes]  # the compact range of the mirror (its subtree roots)


class LogState:
    """The state folder's files for one log: `<log>.checkpoint` (the note last verified),
    `<log>.leaves` (the mirror: 32 bytes a leaf) and `<log>.json` (its size and compact
    range). Written in an order that a crash at any point leaves consistent."""

    def __init__(self, folder: Path, log_id: str) -> None:
        self.note_path = folder / f"{log_id}.checkpoint"
        self.leaves_path = folder / f"{log_id}.leaves"
        self.meta_path = folder / f"{log_id}.json"

    def load(self) -> Held:
        if not self.meta_path.exists():
            if self.leaves_path.exists():  # a first run that stopped before keeping its size
                self.leaves_path.unlink()
            return Held(0, tlog.EMPTY_ROOT, None, [])
        meta = json.loads(self.meta_path.read_text())
        size = int(meta["size"])
        nodes = [base64.b64decode(n) for n in meta["nodes"]]
        note = self.note_path.read_text() if self.note_path.exists() else None
        held = Held(
            size, tlog.CompactRange(size, nodes).root() if size else tlog.EMPTY_ROOT, note, nodes
        )
        # a run that stopped after extending the mirror but before keeping its size
        if self.leaves_path.exists() and self.leaves_path.stat().st_size > size * HASH:
            with self.leaves_path.open("r+b") as f:
                f.truncate(size * HASH)
        return held

    def mirror(self, start: int, end: int) -> bytes:
        with self.leaves_path.open("rb") as f:
            f.seek(start * HASH)
            return f.read((end - start) * HASH)

    def keep(self, new_leaves: list[bytes], size: int, nodes: list[bytes], note: str) -> None:
        self.leaves_path.parent.mkdir(parents=True, exist_ok=True)
        with self.leaves_path.open("ab") as f:
            f.write(b"".join(new_leaves))
            f.flush()
            os.fsync(f.fileno())
        _atomic(self.meta_path, json.dumps({"size": size, "nodes": [_b64(n) for n in nodes]}))
        _atomic(self.note_path, note)


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Api:
    """The API as the witness asks it (an auditor token; `transport` for tests)."""

    def __init__(
        self,
        base: str,
        token: str | None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.AsyncClient(
            base_url=base.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )

    async def get(self, path: str, **params: Any) -> httpx.Response:
        try:
            response = await self.client.get(path, params=params)
        except httpx.HTTPError as exc:
            raise Unreachable(f"{path}: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            detail = response.text[:300]
            raise Unreachable(f"{path} answered {response.status_code}: {detail}")
        return response

    async def logs(self) -> list[str]:
        try:
            return [str(row["log_id"]) for row in (await self.get("/logs")).json()["logs"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise Unreachable(
                f"/logs answered something that is not a list of logs: {exc}"
            ) from None

    async def leaves(self, log_id: str, start: int, end: int) -> list[bytes]:
        out: list[bytes] = []
        while start < end:
            high = min(start + PAGE, end)
            body = (await self.get(f"/logs/{log_id}/leaves", start=start, end=high)).content
            if len(body) != (high - start) * HASH:
                raise SecurityError(
                    f"log {log_id}: asked for leaves {start}..{high}, got {len(body)} bytes"
                )
            out.extend(body[i : i + HASH] for i in range(0, len(body), HASH))
            start = high
        return out

    async def close(self) -> None:
        await self.client.aclose()


@dataclass
class Outcome:
    log_id: str
    old_size: int
    new_size: int
    new_leaves: int


async def watch_log(api: Api, folder: Path, log_id: str, verifier: tlog.Verifier) -> Outcome:
    """One run for one log (see the module docstring). Raises SecurityError or
    Unreachable; keeps the new state only when everything holds."""
    state = LogState(folder, log_id)
    held = state.load()
    note = (await api.get(f"/logs/{log_id}/checkpoint")).text
    try:
        checkpoint = tlog.parse_checkpoint(tlog.verify_note(note, [verifier]))
    except tlog.NoteError as exc:
        raise SecurityError(
            f"log {log_id}: the checkpoint served is not signed by {verifier.name}+"
            f"{verifier.key_hash:08x} ({exc}); held size {held.size}"
        ) from None
    if not checkpoint.origin.endswith(f"/{log_id}"):
        raise SecurityError(f"log {log_id}: the checkpoint served is of {checkpoint.origin}")
    new, old = checkpoint.size, held.size

    async def differs(why: str) -> SecurityError:
        first = await _first_difference(api, state, log_id, min(old, new))
        where = f"; the first leaf that differs from the mirror is seq {first}" if first else ""
        return SecurityError(
            f"log {log_id}: the checkpoint of size {new} is not consistent with the one held,"
            f" of size {old}: {why}{where}"
        )

    if new < old:
        raise await differs("the log is smaller than before (rewound)")
    if new == old:
        if checkpoint.root != held.root:
            raise await differs("same size, another root (a fork)")
        return Outcome(log_id, old, new, 0)
    if old > 0:
        answer = await api.get(f"/logs/{log_id}/proofs/consistency", **{"from": old, "to": new})
        try:
            proof = [base64.b64decode(p, validate=True) for p in answer.json()["proof"]]
            tlog.verify_consistency(old, new, held.root, checkpoint.root, proof)
        except (ValueError, KeyError, TypeError) as exc:  # ProofError is a ValueError
            raise await differs(f"the consistency proof fails ({exc})") from None
    leaves = await api.leaves(log_id, old, new)
    tree = tlog.CompactRange(old, held.nodes)
    tree.extend(leaves)
    if tree.root() != checkpoint.root:
        raise await differs("the leaves served do not make the signed root")
    state.keep(leaves, new, tree.nodes, note)
    return Outcome(log_id, old, new, len(leaves))


async def _first_difference(api: Api, state: LogState, log_id: str, upto: int) -> int | None:
    """The first seq (leaf index + 1) below `upto` whose leaf the server now serves other
    than the mirror holds, or None if none does (or the server will not say)."""
    start = 0
    with contextlib.suppress(Unreachable, SecurityError, OSError):
        while start < upto:
            high = min(start + PAGE, upto)
            served = await api.leaves(log_id, start, high)
            mirrored = state.mirror(start, high)
            for i, leaf in enumerate(served):
                if mirrored[i * HASH : (i + 1) * HASH] != leaf:
                    return start + i + 1
            start = high
    return None


async def run_watch(api: Api, folder: Path, verifier: tlog.Verifier, logs: list[str] | None) -> int:
    """Every log (those named, else all the token reads); the exit status."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        names = logs or await api.logs()
    except Unreachable as exc:
        print(f"musrenbang audit watch: cannot list the logs: {exc}", flush=True)
        return 2
    status = 0
    for log_id in names:
        try:
            outcome = await watch_log(api, folder, log_id, verifier)
        except SecurityError as exc:
            print(f"SECURITY ERROR: {exc}", flush=True)
            status = 1
            continue
        except (ValueError, KeyError, TypeError) as exc:  # an answer no honest server gives
            print(f"SECURITY ERROR: log {log_id}: a malformed answer ({exc})", flush=True)
            status = 1
            continue
        except Unreachable as exc:
            print(f"log {log_id}: not checked: {exc}", flush=True)
            status = status or 2
            continue
        print(
            f"log {log_id}: checkpoint of size {outcome.new_size} verified"
            f" (held {outcome.old_size}, {outcome.new_leaves} new leaves checked)",
            flush=True,
        )
    return status
