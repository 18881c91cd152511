"""Each log's Merkle tree in PostgreSQL (`audit.tree`, migration 0006): extended after the
log grows, and read for roots and proofs at any size.

The leaves are the events' own hashes (leaf index = seq - 1); `audit.tree` holds every
perfect subtree of two or more leaves, each written once. Integrating is incremental: it
starts from the subtrees that make up the part already stored (O(log n) rows), feeds the
new leaves through a compact range (musrenbang.events.tlog) and COPYs the nodes each
completes. A root or a proof is O(log n) rows read by primary key, in one statement.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from musrenbang.events import tlog
from musrenbang.events.tlog import NodeId

_BATCH = 50_000
_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('musrenbang.tree:' || %s, 0))"
_HEAD = "SELECT head_seq FROM audit.logs WHERE log_id = %s"
_STORED = "SELECT max(idx) FROM audit.tree WHERE log_id = %s AND level = 1"
_LEAVES = "SELECT hash FROM audit.events WHERE log_id = %s AND seq > %s AND seq <= %s ORDER BY seq"
_NODES = (
    "SELECT 0::int2, seq - 1, hash FROM audit.events WHERE log_id = %(log)s AND seq = ANY(%(seqs)s)"
    " UNION ALL SELECT t.level, t.idx, t.hash FROM audit.tree t"
    " JOIN unnest(%(levels)s::int2[], %(idxs)s::int8[]) AS w(level, idx)"
    " ON t.level = w.level AND t.idx = w.idx WHERE t.log_id = %(log)s"
)


class TreeError(RuntimeError):
    """The stored tree cannot give what was asked (a size beyond the log, say)."""


async def log_ids(driver: Any) -> list[str]:
    """Every log the database holds (one per region), in order."""
    rows = await (await driver.execute("SELECT log_id FROM audit.logs ORDER BY log_id")).fetchall()
    return [str(r[0]) for r in rows]


async def head_of(driver: Any, log_id: str) -> int | None:
    """How many events the log holds (its committed head); None: no such log."""
    row = await (await driver.execute(_HEAD, (log_id,))).fetchone()
    return None if row is None else int(row[0])


async def head_size(driver: Any, log_id: str) -> int:
    """How many events the log holds (0 for a log not begun)."""
    return await head_of(driver, log_id) or 0


async def stored_size(driver: Any, log_id: str) -> int:
    """The size up to which every perfect subtree is stored (even: a last odd leaf has
    none of its own yet)."""
    row = await (await driver.execute(_STORED, (log_id,))).fetchone()
    return 0 if row is None or row[0] is None else 2 * (int(row[0]) + 1)


async def integrate(driver: Any, log_id: str, up_to: int | None = None) -> int:
    """Stores the subtrees the log's leaves complete, up to its head (or `up_to`), and
    returns that size. Integrators of one log take turns (an advisory lock); a
    connection in autocommit mode gets a transaction of its own, one already in a
    transaction a savepoint."""
    async with driver.transaction():
        await driver.execute(_LOCK, (log_id,))
        head = await head_size(driver, log_id)
        target = head if up_to is None else min(up_to, head)
        start = await stored_size(driver, log_id)
        if target - start < 2:
            return target
        frontier = await node_hashes(driver, log_id, tlog.compact_nodes(start))
        new: list[tuple[str, int, int, bytes]] = []
        tree = tlog.CompactRange(
            start,
            [frontier[n] for n in tlog.compact_nodes(start)],
            on_node=lambda level, index, h: new.append((log_id, level, index, h)),
        )
        done = start
        while done < target:
            high = min(done + _BATCH, target)
            rows = await (
                await driver.execute(_LEAVES, (log_id, done, high), binary=True)
            ).fetchall()
            if len(rows) != high - done:
                raise TreeError(f"log {log_id}: leaves {done + 1}..{high} are not all there")
            tree.extend(bytes(r[0]) for r in rows)
            await _store(driver, new)
            new.clear()
            done = high
        return target


async def _store(driver: Any, nodes: list[tuple[str, int, int, bytes]]) -> None:
    if not nodes:
        return
    async with (
        driver.cursor() as cur,
        cur.copy("COPY audit.tree (log_id, level, idx, hash) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.set_types(["text", "int2", "int8", "bytea"])
        for row in nodes:
            await copy.write_row(row)


async def stored_nodes(driver: Any, log_id: str, ids: Iterable[NodeId]) -> dict[NodeId, bytes]:
    """The hashes of those of these perfect subtrees that are stored (level 0: the events
    themselves), in one statement."""
    wanted = set(ids)
    if not wanted:
        return {}
    inner = [(level, index) for level, index in wanted if level > 0]
    params = {
        "log": log_id,
        "seqs": [index + 1 for level, index in wanted if level == 0],
        "levels": [level for level, _ in inner],
        "idxs": [index for _, index in inner],
    }
    rows = await (await driver.execute(_NODES, params, binary=True)).fetchall()
    return {(int(level), int(index)): bytes(h) for level, index, h in rows}


async def node_hashes(driver: Any, log_id: str, ids: Iterable[NodeId]) -> dict[NodeId, bytes]:
    """The hashes of these perfect subtrees, every one of which must be stored."""
    wanted = set(ids)
    found = await stored_nodes(driver, log_id, wanted)
    missing = wanted - set(found)
    if missing:
        raise TreeError(f"log {log_id}: the tree has no nodes {sorted(missing)[:5]} yet")
    return found


async def _require(driver: Any, log_id: str, size: int) -> None:
    """Every subtree within the first `size` leaves must be stored: `integrate` first."""
    if size > await head_size(driver, log_id):
        raise TreeError(f"log {log_id} has fewer than {size} events")
    if await stored_size(driver, log_id) < size - (size & 1):
        raise TreeError(f"log {log_id}: the tree is not yet integrated up to size {size}")


async def root_at(driver: Any, log_id: str, size: int) -> bytes:
    """The tree's root at `size` leaves (integrated that far)."""
    if size == 0:
        return tlog.EMPTY_ROOT
    await _require(driver, log_id, size)
    ids = tlog.compact_nodes(size)
    found = await node_hashes(driver, log_id, ids)
    return tlog.fold([found[n] for n in ids])


async def inclusion_proofs(
    driver: Any, log_id: str, seqs: Iterable[int], size: int
) -> dict[int, list[bytes]]:
    """The proofs that events `seqs` (leaves seq - 1) are in the tree of `size` leaves,
    read together."""
    elements = {seq: tlog.inclusion_nodes(seq - 1, size) for seq in seqs}
    await _require(driver, log_id, size)
    found = await node_hashes(
        driver, log_id, (n for path in elements.values() for element in path for n in element)
    )
    return {seq: tlog.proof_hashes(path, found.__getitem__) for seq, path in elements.items()}


async def inclusion_proof(driver: Any, log_id: str, seq: int, size: int) -> list[bytes]:
    """The proof that event `seq` (leaf seq - 1) is in the tree of `size` leaves."""
    return (await inclusion_proofs(driver, log_id, [seq], size))[seq]


async def consistency_proof(driver: Any, log_id: str, size1: int, size2: int) -> list[bytes]:
    """The proof that the tree of `size1` leaves is a prefix of the tree of `size2`."""
    elements = tlog.consistency_nodes(size1, size2)
    await _require(driver, log_id, size2)
    found = await node_hashes(driver, log_id, (n for element in elements for n in element))
    return tlog.proof_hashes(elements, found.__getitem__)


async def leaf_hashes(driver: Any, log_id: str, start: int, end: int) -> list[bytes]:
    """The leaf hashes of indexes [start, end) (events start + 1 .. end)."""
    rows = await (await driver.execute(_LEAVES, (log_id, start, end), binary=True)).fetchall()
    return [bytes(r[0]) for r in rows]
