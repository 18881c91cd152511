"""Signed checkpoints of each log (C2SP tlog-checkpoint, as a C2SP signed note).

A checkpoint names the log (its origin line, `<key name>/<log id>`), a size and the root
of the tree at that size, signed with a key that never enters PostgreSQL. Before signing,
the issuer recomputes the new part of the tree from the events, starting from the stored
subtrees that must fold into the root of the last checkpoint its key signed: a log
rewritten below that checkpoint is never signed again ("a log MUST not sign any
checkpoint which is inconsistent with any checkpoint it previously signed"). Every
checkpoint is kept in `audit.checkpoints` (append-only) and recorded in the log itself as
a `CheckpointIssued` event.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from musrenbang.domain.catalogue import EventType as ET
from musrenbang.events import tlog, tree
from musrenbang.events.tlog import NoteError, Signer

CHECKPOINT_EVENT = ET.CHECKPOINT_ISSUED
_ALL = "SELECT size, root, note FROM audit.checkpoints WHERE log_id = %s ORDER BY size DESC"
_AT = "SELECT size, root, note FROM audit.checkpoints WHERE log_id = %s AND size = %s"
_STORE = (
    "INSERT INTO audit.checkpoints (log_id, size, root, note) VALUES (%s, %s, %s, %s)"
    " ON CONFLICT (log_id, size) DO NOTHING"
)
_GREW = "SELECT EXISTS (SELECT FROM audit.events WHERE log_id = %s AND seq > %s AND type <> %s)"


class TamperDetected(RuntimeError):
    """The stored log no longer agrees with a checkpoint signed before."""


@dataclass(frozen=True)
class Issued:
    log_id: str
    origin: str
    size: int
    root: bytes
    note: str

    def summary(self) -> dict[str, Any]:
        """What a record (a ForumClosed, a CheckpointIssued) carries of it."""
        return {
            "origin": self.origin,
            "size": self.size,
            "root": base64.b64encode(self.root).decode(),
            "note": self.note,
        }


def origin_of(key_name: str, log_id: str) -> str:
    return f"{key_name}/{log_id}"


async def latest(driver: Any, log_id: str, verifier: tlog.Verifier | None = None) -> Issued | None:
    """The newest stored checkpoint that is one: its note parses as a checkpoint of this
    log whose size and root are the row's, within the log's size, and (given a verifier)
    signed by that key. A row that is not (anyone who may insert could add one) is
    passed over, never served and never trusted."""
    head = await tree.head_size(driver, log_id)
    async with driver.cursor() as cur:
        await cur.execute(_ALL, (log_id,))
        while rows := await cur.fetchmany(100):
            for row in rows:
                found = _checkpoint(log_id, row, head, verifier)
                if found is not None:
                    return found
    return None


def _checkpoint(log_id: str, row: Any, head: int, verifier: tlog.Verifier | None) -> Issued | None:
    size, root, note = int(row[0]), bytes(row[1]), str(row[2])
    try:
        text = tlog.verify_note(note, [verifier]) if verifier else note
        parsed = tlog.parse_checkpoint(text)
    except NoteError:
        return None
    if parsed.size != size or parsed.root != root or size > head:
        return None
    if not parsed.origin.endswith(f"/{log_id}"):
        return None
    return Issued(log_id, parsed.origin, size, root, note)


async def grew_since(driver: Any, log_id: str, size: int) -> bool:
    """Whether the log holds events after `size` other than checkpoint records."""
    row = await (await driver.execute(_GREW, (log_id, size, CHECKPOINT_EVENT))).fetchone()
    return bool(row and row[0])


async def sign_head(driver: Any, log_id: str, signer: Signer) -> Issued:
    """Integrates the tree to the log's head and returns its signed checkpoint (the one
    already stored at that size, if any), stored. Raises TamperDetected, signing
    nothing, when the stored tree no longer makes the last root this key signed, or its
    new part is not what the events make: a log inconsistent with its last checkpoint is
    never signed."""
    try:
        size = await tree.integrate(driver, log_id)
        root = await tree.root_at(driver, log_id, size)
    except tree.TreeError as exc:  # a node missing or out of place: nothing is signed
        raise TamperDetected(f"SECURITY ERROR: log {log_id}: {exc}") from None
    verifier = signer.verifier()
    previous = await latest(driver, log_id, verifier)
    if previous is not None:
        _check_extends(log_id, previous, size)
    await _check_against_events(driver, log_id, previous, size, root)
    row = await (await driver.execute(_AT, (log_id, size))).fetchone()
    if row is not None:
        found = _checkpoint(log_id, row, size, verifier)
        if found is not None and found.root == root:
            return found
    origin = origin_of(signer.name, log_id)
    note = tlog.sign_note(tlog.format_checkpoint(origin, size, root), signer)
    await driver.execute(_STORE, (log_id, size, root, note))
    stored = await (await driver.execute(_AT, (log_id, size))).fetchone()
    if stored is None or bytes(stored[1]) != root:
        raise TamperDetected(
            f"SECURITY ERROR: log {log_id}: a checkpoint of size {size} with another root is"
            " already stored"
        )
    return Issued(log_id, origin, size, root, note)


async def _check_against_events(
    driver: Any, log_id: str, previous: Issued | None, size: int, root: bytes
) -> None:
    """The root about to be signed, recomputed from the events themselves for the part
    after the last checkpoint signed (the stored subtrees below it are vouched for by that
    checkpoint's root, which they must fold into): a forged node in `audit.tree` is
    never signed."""
    start = previous.size if previous is not None else 0
    ids = tlog.compact_nodes(start)
    try:
        frontier = await tree.node_hashes(driver, log_id, ids)
    except tree.TreeError as exc:
        raise TamperDetected(f"SECURITY ERROR: log {log_id}: {exc}") from None
    nodes = [frontier[n] for n in ids]
    if previous is not None and nodes and tlog.fold(nodes) != previous.root:
        raise TamperDetected(
            f"SECURITY ERROR: log {log_id}: the stored tree no longer makes the root signed at"
            f" size {start}"
        )
    recomputed = tlog.CompactRange(start, nodes)
    recomputed.extend(await tree.leaf_hashes(driver, log_id, start, size))
    if recomputed.size != size or recomputed.root() != root:
        raise TamperDetected(
            f"SECURITY ERROR: log {log_id}: the stored tree at size {size} is not the tree of"
            " its events"
        )


def _check_extends(log_id: str, previous: Issued, size: int) -> None:
    """A log never shrinks below a checkpoint it had. (That the rest extends it, the
    recomputation from the events shows: it starts from the subtrees that fold into the
    checkpoint's signed root.)"""
    if size < previous.size:
        raise TamperDetected(
            f"SECURITY ERROR: log {log_id} holds {size} events, fewer than the {previous.size}"
            " of its last signed checkpoint"
        )
