"""The transparency log against a hostile database administrator: the attack the README
once claimed to stop (a superuser edits a ProposalRejected reason and recomputes every
later hash, the head and the tree) is caught from outside by a witness holding an earlier
checkpoint and by `audit verify --checkpoint`; forged checkpoints are refused; evidence
bundles check offline; and the signer never signs a log that contradicts its last
checkpoint."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import URL, text
from sqlalchemy.ext.asyncio import AsyncEngine

from musrenbang import cli
from musrenbang.api.app import create_app
from musrenbang.api.auth import issue_token
from musrenbang.config import Settings
from musrenbang.events import tlog
from musrenbang.events.append import EventWriter
from musrenbang.events.canonical import leaf_hash, record_bytes
from musrenbang.events.checkpoints import Issued, TamperDetected, sign_head
from musrenbang.events.db import conninfo
from musrenbang.events.evidence import check_bundle
from musrenbang.events.verify import verify_read_models
from musrenbang.witness import Api, run_watch
from tests.events.helpers import decided, submitted

LOG = "36.71"
REASON = "Bukan kewenangan kelurahan"
FORGED = "Sudah didanai tahun lalu"


@pytest.fixture
def keys() -> tuple[tlog.Signer, str]:
    skey, vkey = tlog.generate_key("bappeda.tangerangkota.example")
    return tlog.Signer.parse(skey), vkey


@pytest.fixture
async def signing(engine: AsyncEngine) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """The worker's connection for the tree and the checkpoints (application role)."""
    async with await psycopg.AsyncConnection.connect(conninfo(engine.url), autocommit=True) as conn:
        yield conn


@pytest.fixture
def settings() -> Settings:
    return Settings(jwt_secret="test-secret-for-the-suite-only")


@pytest.fixture
def witness_api(engine: AsyncEngine, settings: Settings) -> Api:
    app = create_app(settings, engine=engine, temporal=None)  # type: ignore[arg-type]
    token = issue_token(settings, "inspektorat", "auditor", None, None, regions=["*"])
    return Api("http://test/api/v1", token, transport=httpx.ASGITransport(app=app))


@pytest.fixture
async def http(engine: AsyncEngine, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, engine=engine, temporal=None)  # type: ignore[arg-type]
    token = issue_token(settings, "inspektorat", "auditor", None, None, regions=[LOG])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://test/api/v1",
        headers={"Authorization": f"Bearer {token}"},
    ) as client:
        yield client


async def _seed(writer: EventWriter, first: int, count: int) -> None:
    for i in range(first, first + count):
        await writer.append(LOG, [submitted(f"p{i}", minutes=i)])
        if i % 5 == 0:
            await writer.append(
                LOG,
                [decided(f"p{i}", "ProposalRejected", 1, reason=REASON, reason_code="kewenangan")],
            )


async def _rewrite_history(owner_engine: AsyncEngine, *, drop_checkpoints: bool) -> int:
    """The attack, as the PostgreSQL superuser: the first rejection's reason is changed
    (in the content and in the column it is queried by), every later hash recomputed by
    the documented rule, the head moved, the tree rebuilt to match and, if asked, the
    checkpoints that would betray it removed. Returns the seq changed."""
    async with owner_engine.begin() as conn:
        await conn.execute(text("SET LOCAL session_replication_role = replica"))  # no triggers
        rows = (
            await conn.execute(
                text(
                    "SELECT seq, content, version, recorded_at, prev_hash FROM audit.events"
                    " WHERE log_id = :log ORDER BY seq"
                ),
                {"log": LOG},
            )
        ).all()
        target = next(r.seq for r in rows if REASON in r.content)
        prev = bytes(rows[target - 1].prev_hash)
        for row in rows[target - 1 :]:
            content = row.content.replace(REASON, FORGED) if row.seq == target else row.content
            new = leaf_hash(prev, row.seq, record_bytes(content, row.recorded_at, row.version))
            await conn.execute(
                text(
                    "UPDATE audit.events SET content = :c,"  # payload follows the content
                    " prev_hash = :p, hash = :h WHERE seq = :s"
                ),
                {"c": content, "p": prev, "h": new, "s": row.seq},
            )
            prev = new
        await conn.execute(text("UPDATE audit.logs SET head_hash = :h"), {"h": prev})
        pid = json.loads(rows[target - 1].content)["stream"].split(":", 1)[1]
        await conn.execute(  # and the read model, so that it agrees with the forged log
            text(
                "UPDATE read.proposals SET state = replace(state::text, :old, :new)::jsonb"
                " WHERE proposal_id = :p"
            ),
            {"old": REASON, "new": FORGED, "p": pid},
        )
        await conn.execute(text("DELETE FROM audit.tree"))
        if drop_checkpoints:
            await conn.execute(text("DELETE FROM audit.checkpoints"))
    return target


def _verify_cli(owner_db: URL, *args: str) -> subprocess.CompletedProcess[str]:
    return _audit_cli(owner_db, "verify", *args)


def _audit_cli(owner_db: URL, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MUSRENBANG_DATABASE_URL": owner_db.render_as_string(hide_password=False),
        "MUSRENBANG_LOG_LEVEL": "WARNING",
    }
    return subprocess.run(  # noqa: S603 - the test's own arguments
        [sys.executable, "-m", "musrenbang.cli", "audit", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_a_rewritten_history_is_caught_by_the_witness_and_by_the_paper_checkpoint(
    writer: EventWriter,
    signing: psycopg.AsyncConnection[Any],
    owner_engine: AsyncEngine,
    owner_db: URL,
    witness_api: Api,
    keys: tuple[tlog.Signer, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    signer, vkey = keys
    verifier = tlog.Verifier.parse(vkey)
    state = tmp_path / "inspektorat"
    await _seed(writer, 0, 30)
    first: Issued = await sign_head(signing, LOG, signer)
    paper = tmp_path / "berita-acara-checkpoint.txt"  # as printed in a Berita Acara
    paper.write_text(first.note)
    printed = _audit_cli(owner_db, "checkpoint", "--log", LOG)
    assert printed.returncode == 0 and printed.stdout == first.note
    assert await run_watch(witness_api, state, verifier, None) == 0
    assert f"checkpoint of size {first.size} verified" in capsys.readouterr().out

    await _seed(writer, 30, 10)
    second = await sign_head(signing, LOG, signer)
    assert await run_watch(witness_api, state, verifier, None) == 0
    held = (state / f"{LOG}.checkpoint").read_text()
    intact = _verify_cli(owner_db, "--checkpoint", str(paper), "--key", vkey)
    assert intact.returncode == 0, intact.stderr
    assert f"matches the signed checkpoint of size {first.size}" in intact.stdout

    # The superuser rewrites history. The signer, which checks each new tree against the
    # last checkpoint stored, refuses to sign it...
    changed = await _rewrite_history(owner_engine, drop_checkpoints=False)
    await writer.append(LOG, [submitted("late")])
    with pytest.raises(TamperDetected, match="SECURITY ERROR"):
        await sign_head(signing, LOG, signer)
    # ...so the superuser removes the checkpoints too, and the signer, seeing none, signs
    # the rewritten log. The chain alone now looks intact:
    async with owner_engine.begin() as conn:
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        await conn.execute(text("DELETE FROM audit.checkpoints"))
    forged = await sign_head(signing, LOG, signer)
    assert forged.size > first.size
    plain = _verify_cli(owner_db)
    assert plain.returncode == 0, plain.stderr  # no outside checkpoint: nothing to catch it

    # The witness, holding the earlier checkpoint, refuses the new one and keeps its own.
    capsys.readouterr()
    assert await run_watch(witness_api, state, verifier, None) == 1
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("SECURITY ERROR"))
    assert LOG in line and f"size {forged.size}" in line and f"of size {second.size}" in line
    assert f"the first leaf that differs from the mirror is seq {changed}" in line
    assert (state / f"{LOG}.checkpoint").read_text() == held  # never replaced

    # The checkpoint printed in the Berita Acara fails the stored log too.
    broken = _verify_cli(owner_db, "--checkpoint", str(paper), "--key", vkey)
    assert broken.returncode == 1
    assert "SECURITY ERROR" in broken.stderr and "rewritten" in broken.stderr


async def _serve(owner_engine: AsyncEngine, note: str, size: int, root: bytes) -> None:
    """As the superuser: make `note` the latest checkpoint the API serves."""
    async with owner_engine.begin() as conn:
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        await conn.execute(text("DELETE FROM audit.checkpoints WHERE size >= :s"), {"s": size})
        await conn.execute(
            text(
                "INSERT INTO audit.checkpoints (log_id, size, root, note) VALUES (:l, :s, :r, :n)"
            ),
            {"l": LOG, "s": size, "r": root, "n": note},
        )


@pytest.mark.parametrize("forgery", ["other key", "rewound", "same size, other root"])
async def test_a_forged_checkpoint_is_refused_and_the_witness_keeps_its_state(
    writer: EventWriter,
    signing: psycopg.AsyncConnection[Any],
    owner_engine: AsyncEngine,
    witness_api: Api,
    keys: tuple[tlog.Signer, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    forgery: str,
) -> None:
    signer, vkey = keys
    verifier = tlog.Verifier.parse(vkey)
    await _seed(writer, 0, 12)
    early = await sign_head(signing, LOG, signer)
    await _seed(writer, 12, 6)
    held = await sign_head(signing, LOG, signer)
    assert await run_watch(witness_api, tmp_path, verifier, None) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    if forgery == "other key":
        await writer.append(LOG, [submitted("more")])  # a checkpoint within the log's size
        other = tlog.Signer.parse(tlog.generate_key(signer.name)[0])  # same name, other key
        text_ = tlog.format_checkpoint(held.origin, held.size + 1, held.root)
        await _serve(owner_engine, tlog.sign_note(text_, other), held.size + 1, held.root)
    elif forgery == "rewound":
        async with owner_engine.begin() as conn:
            await conn.execute(text("SET LOCAL session_replication_role = replica"))
            await conn.execute(
                text("DELETE FROM audit.checkpoints WHERE size > :s"), {"s": early.size}
            )
    else:  # the signer's key itself misused: a second tree at the size already held
        root = tlog.hash_leaf(b"another history")
        text_ = tlog.format_checkpoint(held.origin, held.size, root)
        await _serve(owner_engine, tlog.sign_note(text_, signer), held.size, root)
    capsys.readouterr()
    assert await run_watch(witness_api, tmp_path, verifier, None) == 1
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("SECURITY ERROR")]
    assert len(lines) == 1 and f"log {LOG}" in lines[0]
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


async def test_proofs_over_http_verify_with_the_public_algorithms(
    writer: EventWriter,
    signing: psycopg.AsyncConnection[Any],
    http: httpx.AsyncClient,
    keys: tuple[tlog.Signer, str],
) -> None:
    signer, vkey = keys
    await _seed(writer, 0, 25)
    issued = await sign_head(signing, LOG, signer)
    answer = await http.get(f"/logs/{LOG}/checkpoint")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    checkpoint = tlog.parse_checkpoint(tlog.verify_note(answer.text, [vkey]))
    assert (checkpoint.size, checkpoint.root) == (issued.size, issued.root)
    for seq in (1, 7, checkpoint.size):
        body = (
            await http.get(
                f"/logs/{LOG}/proofs/inclusion", params={"seq": seq, "size": checkpoint.size}
            )
        ).json()
        proof = [base64.b64decode(p) for p in body["proof"]]
        leaf = base64.b64decode(body["leaf_hash"])
        tlog.verify_inclusion(seq - 1, checkpoint.size, leaf, proof, checkpoint.root)
    leaves = (
        await http.get(f"/logs/{LOG}/leaves", params={"start": 0, "end": checkpoint.size})
    ).content
    hashes = [leaves[i : i + 32] for i in range(0, len(leaves), 32)]
    assert tlog.root_hash(hashes) == checkpoint.root
    for old in (1, 8, 13):
        body = (
            await http.get(
                f"/logs/{LOG}/proofs/consistency", params={"from": old, "to": checkpoint.size}
            )
        ).json()
        proof = [base64.b64decode(p) for p in body["proof"]]
        tlog.verify_consistency(
            old, checkpoint.size, tlog.root_hash(hashes[:old]), checkpoint.root, proof
        )
    for path, params in [
        (f"/logs/{LOG}/proofs/inclusion", {"seq": 0, "size": 3}),
        (f"/logs/{LOG}/proofs/inclusion", {"seq": 4, "size": 3}),
        (f"/logs/{LOG}/proofs/inclusion", {"seq": 1, "size": 10**9}),
        (f"/logs/{LOG}/proofs/consistency", {"from": 5, "to": 2}),
        (f"/logs/{LOG}/proofs/consistency", {"from": "x", "to": 2}),
        (f"/logs/{LOG}/leaves", {"start": 0, "end": 10**6}),
        ("/logs/36.71%00/checkpoint", {}),
    ]:
        refused = await http.get(path, params=params)
        assert refused.status_code == 422, (path, params, refused.text)
        assert refused.json()["error"] == "ValidationError"
    assert (await http.get("/logs/36.74/checkpoint")).status_code == 403  # another region


async def test_an_evidence_bundle_checks_offline_and_fails_when_touched(
    writer: EventWriter,
    signing: psycopg.AsyncConnection[Any],
    http: httpx.AsyncClient,
    keys: tuple[tlog.Signer, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    signer, vkey = keys
    await _seed(writer, 0, 8)
    await writer.append(
        LOG,
        [
            decided("p1", "ProposalMerged", 1, into="p2"),
            decided("p2", "ProposalMerged", 1, absorbed="p1"),
        ],
    )
    assert (await http.get("/proposals/p5/evidence")).status_code == 409  # no checkpoint yet
    await sign_head(signing, LOG, signer)
    await writer.append(LOG, [decided("p2", "ProposalAccepted", 2)])  # after the checkpoint
    bundle = (await http.get("/proposals/p2/evidence")).json()
    assert set(bundle["streams"]) == {"proposal:p2", "proposal:p1"}  # its lineage
    assert bundle["streams"]["proposal:p2"] == 2 and len(bundle["uncovered"]) == 1
    assert check_bundle(bundle, [vkey]).ok
    path = tmp_path / "evidence.json"
    path.write_text(json.dumps(bundle))
    assert cli.main(["audit", "verify-evidence", str(path), "--key", vkey]) == 0
    assert "evidence holds: 4 records" in capsys.readouterr().out

    touched = json.loads(json.dumps(bundle))
    record = next(r for r in touched["records"] if "ProposalMerged" in r["content"])
    record["content"] = record["content"].replace('"into":"p2"', '"into":"p3"')
    path.write_text(json.dumps(touched))
    assert cli.main(["audit", "verify-evidence", str(path), "--key", vkey]) == 1
    assert "does not hash to its leaf" in capsys.readouterr().err
    dropped = json.loads(json.dumps(bundle))
    dropped["records"] = [r for r in dropped["records"] if r["version"] != 1 or "p1" in r["stream"]]
    assert not check_bundle(dropped, [vkey]).ok  # a record left out
    other = tlog.generate_key(signer.name)[1]
    assert not check_bundle(bundle, [other]).ok
    unlinked = json.loads(json.dumps(bundle))  # the usulan merged into it, left out whole
    unlinked["records"] = [r for r in unlinked["records"] if r["stream"] != "proposal:p1"]
    del unlinked["streams"]["proposal:p1"]
    assert "merged usulan not in the bundle" in " ".join(check_bundle(unlinked, [vkey]).problems)
    for bad in ("[]", "null", '{"stream": 1}'):
        odd = json.loads(json.dumps(bundle))
        odd["records"][0]["content"] = bad
        assert not check_bundle(odd, [vkey]).ok  # refused, not raised
    odd = json.loads(json.dumps(bundle))
    odd["records"][0]["recorded_at"] = "2026-01-01T00:00:00"
    assert not check_bundle(odd, [vkey]).ok
    assert (await http.get("/proposals/nobody/evidence")).status_code == 404


async def test_a_read_model_changed_behind_the_log_is_named(
    writer: EventWriter, owner_engine: AsyncEngine, engine: AsyncEngine, owner_db: URL
) -> None:
    await _seed(writer, 0, 6)
    async with owner_engine.begin() as conn:  # the superuser "funds" a rejected usulan
        await conn.execute(
            text("UPDATE read.proposals SET status = 'included' WHERE proposal_id = 'p5'")
        )
    async with engine.connect() as conn:
        check = await verify_read_models(conn)
    assert not check.ok and check.record == "proposal:p5" and "status" in (check.problem or "")
    result = _verify_cli(owner_db)
    assert result.returncode == 1 and "read model BROKEN at proposal:p5" in result.stderr


def test_keygen_prints_the_signer_then_the_verifier_key(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["audit", "keygen", "bappeda.tangerangselatankota.go.id"]) == 0
    skey, vkey = capsys.readouterr().out.splitlines()
    assert skey.startswith("PRIVATE+KEY+bappeda.tangerangselatankota.go.id+")
    assert tlog.Signer.parse(skey).verifier().text() == vkey
    assert tlog.verify_note(tlog.sign_note("x\n", skey), [vkey]) == "x\n"
    assert cli.main(["audit", "keygen", "has space"]) == 2


async def test_what_the_application_role_may_insert_cannot_make_the_signer_sign_a_lie(
    writer: EventWriter,
    signing: psycopg.AsyncConnection[Any],
    http: httpx.AsyncClient,
    keys: tuple[tlog.Signer, str],
) -> None:
    """The application role may INSERT into the tree and the checkpoints. A junk
    checkpoint row is passed over (never served, never trusted), and a forged subtree is
    caught against the events before anything is signed."""
    signer, vkey = keys
    await _seed(writer, 0, 4)
    first = await sign_head(signing, LOG, signer)
    junk = base64.b64encode(bytes(32)).decode()
    await signing.execute(
        "INSERT INTO audit.checkpoints (log_id, size, root, note) VALUES (%s, %s, %s, %s)",
        (LOG, 2**62, bytes(32), f"x\n1\n{junk}\n"),
    )
    served = (await http.get(f"/logs/{LOG}/checkpoint")).text
    assert served == first.note
    # A subtree inserted ahead of the integrator, for leaves not yet in the log:
    head = first.size + 1  # its own CheckpointIssued
    level1 = head // 2 + (1 if head % 2 == 0 else 0)
    await signing.execute(
        "INSERT INTO audit.tree (log_id, level, idx, hash) VALUES (%s, 1, %s, %s)",
        (LOG, level1, tlog.hash_leaf(b"forged")),
    )
    await _seed(writer, 4, 6)
    with pytest.raises(TamperDetected, match="SECURITY ERROR"):
        await sign_head(signing, LOG, signer)
    assert tlog.verify_note((await http.get(f"/logs/{LOG}/checkpoint")).text, [vkey])


async def test_audit_verify_recomputes_the_stored_tree(
    writer: EventWriter,
    signing: psycopg.AsyncConnection[Any],
    owner_engine: AsyncEngine,
    owner_db: URL,
    keys: tuple[tlog.Signer, str],
) -> None:
    await _seed(writer, 0, 20)
    await sign_head(signing, LOG, keys[0])
    intact = _verify_cli(owner_db)
    assert intact.returncode == 0, intact.stderr
    assert "the Merkle tree matches the log" in intact.stdout
    async with owner_engine.begin() as conn:  # the superuser changes one stored subtree
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        await conn.execute(
            text("UPDATE audit.tree SET hash = sha256(hash) WHERE level = 2 AND idx = 1")
        )
    broken = _verify_cli(owner_db)
    assert broken.returncode == 1
    assert "tree BROKEN in 36.71: the subtree (level 2, index 1) is not made by its leaves" in (
        broken.stderr
    )
