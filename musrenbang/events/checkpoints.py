"""Signed checkpoints of each log (C2SP tlog-checkpoint, as a C2SP signed note).

A checkpoint names the log (its origin line, `<key name>/<log id>`), a size and the root
of the tree at that size, signed with a key that never enters PostgreSQL. Before signing,
the issuer checks the new tree against the last checkpoint stored for the log, by a
consistency proof from the stored tree: a log rewritten below that checkpoint is never
signed again ("a log MUST not sign any checkpoint which is inconsistent with any
checkpoint it previously signed"). Every checkpoint is kept in `audit.checkpoints`
(append-only) and recorded in the log itself as a `CheckpointIssued` event.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from musrenbang.events import tlog, tree
from musrenbang.events.tlog import NoteError, ProofError, Signer

CHECKPOINT_EVENT = "CheckpointIssued"
_LATEST = (
    "SELECT size, root, note FROM audit.checkpoints WHERE log_id = %s ORDER BY size DESC LIMIT 1"
)
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


async def latest(driver: Any, log_id: str) -> Issued | None:
    row = await (await driver.execute(_LATEST, (log_id,))).fetchone()
    return None if row is None else _issued(log_id, row)


def _issued(log_id: str, row: Any) -> Issued:
    size, root, note = int(row[0]), bytes(row[1]), str(row[2])
    return Issued(log_id, tlog.parse_checkpoint(note).origin, size, root, note)


async def grew_since(driver: Any, log_id: str, size: int) -> bool:
    """Whether the log holds events after `size` other than checkpoint records."""
    row = await (await driver.execute(_GREW, (log_id, size, CHECKPOINT_EVENT))).fetchone()
    return bool(row and row[0])


async def sign_head(driver: Any, log_id: str, signer: Signer) -> Issued:
    """Integrates the tree to the log's head and returns its signed checkpoint (the one
    already stored at that size, if any), stored. Raises TamperDetected, signing
    nothing, when the tree does not extend the last checkpoint stored by this key."""
    size = await tree.integrate(driver, log_id)
    root = await tree.root_at(driver, log_id, size)
    verifier = signer.verifier()
    previous = await latest(driver, log_id)
    if previous is not None and _signed_by(previous.note, verifier):
        await _check_extends(driver, log_id, previous, size, root)
    row = await (await driver.execute(_AT, (log_id, size))).fetchone()
    if row is not None and bytes(row[1]) == root and _signed_by(str(row[2]), verifier):
        return _issued(log_id, row)
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


async def _check_extends(
    driver: Any, log_id: str, previous: Issued, size: int, root: bytes
) -> None:
    if previous.size == 0:
        return
    if size < previous.size:
        raise TamperDetected(
            f"SECURITY ERROR: log {log_id} holds {size} events, fewer than the {previous.size}"
            " of its last signed checkpoint"
        )
    try:
        proof = await tree.consistency_proof(driver, log_id, previous.size, size)
        signed_root = tlog.parse_checkpoint(previous.note).root  # not the column: the note
        tlog.verify_consistency(previous.size, size, signed_root, root, proof)
    except (ProofError, tree.TreeError) as exc:
        raise TamperDetected(
            f"SECURITY ERROR: log {log_id} at size {size} is not consistent with its signed"
            f" checkpoint of size {previous.size}: {exc}"
        ) from None


def _signed_by(note: str, verifier: tlog.Verifier) -> bool:
    try:
        tlog.verify_note(note, [verifier])
    except NoteError:
        return False
    return True
