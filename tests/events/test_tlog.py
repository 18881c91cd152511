"""The transparency log's arithmetic against public test vectors: transparency-dev/merkle's
inclusion and consistency cases and the RFC 9162 reference tree, the C2SP and Go
signed-note examples, and proofs built by this module checked by its own verifier."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from musrenbang.events import tlog
from musrenbang.events.tlog import NoteError, ProofError

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "data" / "rfc9162-vectors"


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def _cases(kind: str) -> list[tuple[str, dict[str, Any]]]:
    files = sorted((VECTORS / kind).rglob("*.json"))
    assert len(files) > 40, f"the {kind} vectors are missing under {VECTORS}"
    return [(str(f.relative_to(VECTORS)), json.loads(f.read_text())) for f in files]


def _inclusion(case: dict[str, Any], skip: frozenset[str] = frozenset()) -> bool:
    try:
        tlog.verify_inclusion(
            case["leafIdx"],
            case["treeSize"],
            _b64(case["leafHash"]),
            [_b64(p) for p in case["proof"] or []],
            _b64(case["root"]),
            _skip=skip,
        )
    except ProofError:
        return False
    return True


def _consistency(case: dict[str, Any], skip: frozenset[str] = frozenset()) -> bool:
    try:
        tlog.verify_consistency(
            case["size1"],
            case["size2"],
            _b64(case["root1"]),
            _b64(case["root2"]),
            [_b64(p) for p in case["proof"] or []],
            _skip=skip,
        )
    except ProofError:
        return False
    return True


@pytest.mark.parametrize(("name", "case"), _cases("inclusion"))
def test_inclusion_vectors(name: str, case: dict[str, Any]) -> None:
    assert _inclusion(case) is not case["wantErr"], name


@pytest.mark.parametrize(("name", "case"), _cases("consistency"))
def test_consistency_vectors(name: str, case: dict[str, Any]) -> None:
    assert _consistency(case) is not case["wantErr"], name


@pytest.mark.parametrize("step", sorted(tlog.INCLUSION_STEPS))
def test_every_step_of_inclusion_verification_is_needed(step: str) -> None:
    cases = _cases("inclusion") + _generated_inclusion_cases()
    wrong = [n for n, c in cases if _inclusion(c, frozenset({step})) is c["wantErr"]]
    assert wrong, f"without {step!r} every inclusion vector still gives the right answer"


@pytest.mark.parametrize("step", sorted(tlog.CONSISTENCY_STEPS))
def test_every_step_of_consistency_verification_is_needed(step: str) -> None:
    cases = _cases("consistency") + _generated_consistency_cases()
    wrong = [n for n, c in cases if _consistency(c, frozenset({step})) is c["wantErr"]]
    assert wrong, f"without {step!r} every consistency vector still gives the right answer"


def _reference() -> tuple[list[bytes], list[bytes]]:
    data = json.loads((VECTORS / "reference-tree.json").read_text())
    leaves = [tlog.hash_leaf(bytes.fromhex(x)) for x in data["leaf_inputs"]]
    return leaves, [bytes.fromhex(r) for r in data["roots_by_size"]]


def test_reference_tree_roots_at_every_size() -> None:
    leaves, roots = _reference()
    for size, root in enumerate(roots):
        assert tlog.root_hash(leaves[:size]) == root, size
    assert roots[0] == tlog.EMPTY_ROOT


def _node_lookup(leaves: list[bytes]) -> Any:
    def node(n: tlog.NodeId) -> bytes:
        level, index = n
        return tlog.root_hash(leaves[index << level : (index + 1) << level])

    return node


def test_proofs_built_here_verify_at_every_size_and_fail_when_altered() -> None:
    leaves = [tlog.hash_leaf(i.to_bytes(4, "big")) for i in range(70)]
    node = _node_lookup(leaves)
    for size in range(1, len(leaves) + 1):
        root = tlog.root_hash(leaves[:size])
        for index in range(size):
            proof = tlog.proof_hashes(tlog.inclusion_nodes(index, size), node)
            tlog.verify_inclusion(index, size, leaves[index], proof, root)
            if proof:
                bad = [*proof[:-1], bytes(32)]
                with pytest.raises(ProofError):
                    tlog.verify_inclusion(index, size, leaves[index], bad, root)
            with pytest.raises(ProofError):
                tlog.verify_inclusion(index, size, leaves[(index + 1) % 70], proof, root)
        for size1 in range(1, size + 1):
            root1 = tlog.root_hash(leaves[:size1])
            proof = tlog.proof_hashes(tlog.consistency_nodes(size1, size), node)
            tlog.verify_consistency(size1, size, root1, root, proof)
            if size1 < size:
                with pytest.raises(ProofError):
                    tlog.verify_consistency(size1, size, root, root1, proof)


def _b64s(hashes: list[bytes]) -> list[str]:
    return [base64.b64encode(h).decode() for h in hashes]


def _generated_inclusion_cases() -> list[tuple[str, dict[str, Any]]]:
    """Every leaf of trees up to 20 leaves, and each proof lengthened by one level with a
    root made to fit it (a proof taller than its tree, which only the height checks
    refuse)."""
    leaves = [tlog.hash_leaf(i.to_bytes(2, "big")) for i in range(20)]
    node = _node_lookup(leaves)
    cases = []
    for size in range(1, 21):
        root = tlog.root_hash(leaves[:size])
        for index in range(size):
            proof = tlog.proof_hashes(tlog.inclusion_nodes(index, size), node)
            happy = {
                "leafIdx": index,
                "treeSize": size,
                "leafHash": base64.b64encode(leaves[index]).decode(),
                "root": base64.b64encode(root).decode(),
                "proof": _b64s(proof),
                "wantErr": False,
            }
            taller = {
                **happy,
                "root": base64.b64encode(tlog.hash_children(leaves[0], root)).decode(),
                "proof": _b64s([*proof, leaves[0]]),
                "wantErr": True,
            }
            cases += [(f"generated {index}/{size}", happy), (f"taller {index}/{size}", taller)]
    return cases


def test_generated_inclusion_cases() -> None:
    for name, case in _generated_inclusion_cases():
        assert _inclusion(case) is not case["wantErr"], name


def _generated_consistency_cases() -> list[tuple[str, dict[str, Any]]]:
    """Consistency cases over a tree of 40 leaves, made the way transparency-dev made the
    shipped ones (happy paths, then each altered: sizes shifted, multiplied, halved and
    flipped, roots swapped or replaced, proofs truncated, extended or with a bit flipped),
    but also from sizes that are not powers of two, which the shipped happy paths never
    start from. Whether each should verify is decided by the tree itself: only the one
    true proof between the true roots does."""
    leaves = [tlog.hash_leaf(i.to_bytes(2, "big")) for i in range(40)]
    node = _node_lookup(leaves)
    roots = [tlog.root_hash(leaves[:n]) for n in range(41)]
    truth = {
        (m, n): tlog.proof_hashes(tlog.consistency_nodes(m, n), node)
        for n in range(1, 41)
        for m in range(1, n + 1)
    }
    cases = []
    for m, n in [(3, 7), (5, 8), (6, 7), (3, 8), (7, 13), (10, 37), (12, 33), (1, 6), (8, 40)]:
        proof = truth[(m, n)]
        variants: dict[str, tuple[int, int, bytes, bytes, list[bytes]]] = {
            "happy": (m, n, roots[m], roots[n], proof),
            "swapped-roots": (m, n, roots[n], roots[m], proof),
            "swapped-sizes": (n, m, roots[n], roots[m], proof),
            "truncated": (m, n, roots[m], roots[n], proof[:-1]),
            "trailing": (m, n, roots[m], roots[n], [*proof, proof[0]]),
            "preceding": (m, n, roots[m], roots[n], [roots[m], *proof]),
            "wrong-root1": (m, n, roots[m - 1], roots[n], proof),
            "wrong-root2": (m, n, roots[m], roots[n - 1], proof),
        }
        for delta in (-2, -1, 1, 2):
            variants[f"size1{delta:+d}"] = (m + delta, n, roots[m], roots[n], proof)
            variants[f"size2{delta:+d}"] = (m, n + delta, roots[m], roots[n], proof)
        for name, f in [
            ("mul", lambda x: x * 2),
            ("div", lambda x: x // 2),
            ("xor", lambda x: x ^ 2),
        ]:
            variants[f"size1-{name}"] = (f(m), n, roots[m], roots[n], proof)
            variants[f"size2-{name}"] = (m, f(n), roots[m], roots[n], proof)
        for i in range(len(proof)):
            flipped = [*proof]
            flipped[i] = bytes([proof[i][0] ^ 16]) + proof[i][1:]
            variants[f"bit@{i}"] = (m, n, roots[m], roots[n], flipped)
        for name, (s1, s2, r1, r2, pr) in variants.items():
            genuine = {(a, b) for (a, b), t in truth.items() if t == pr}
            if (
                any(r1 == roots[a] and r2 == roots[b] for a, b in genuine)
                and (s1, s2) not in genuine
            ):
                # a true proof between true roots, claimed at other sizes: whether those
                # sizes have the same shape is the verifier's business, not a fixed answer
                continue
            valid = (
                0 < s1 <= s2 <= 40 and r1 == roots[s1] and r2 == roots[s2] and pr == truth[(s1, s2)]
            )
            case = {
                "size1": s1,
                "size2": s2,
                "root1": base64.b64encode(r1).decode(),
                "root2": base64.b64encode(r2).decode(),
                "proof": [base64.b64encode(h).decode() for h in pr],
                "wantErr": not valid,
            }
            cases.append((f"generated {m}-{n} {name}", case))
    for n in range(2, 21):  # every happy path of the smaller trees
        for m in range(1, n):
            case = {
                "size1": m,
                "size2": n,
                "root1": base64.b64encode(roots[m]).decode(),
                "root2": base64.b64encode(roots[n]).decode(),
                "proof": _b64s(truth[(m, n)]),
                "wantErr": False,
            }
            taller = {
                **case,
                "root1": base64.b64encode(tlog.hash_children(leaves[0], roots[m])).decode(),
                "root2": base64.b64encode(tlog.hash_children(leaves[0], roots[n])).decode(),
                "proof": _b64s([*truth[(m, n)], leaves[0]]),
                "wantErr": True,
            }
            cases += [(f"generated {m}-{n}", case), (f"taller {m}-{n}", taller)]
    # sizes the wrong way round, with roots made to fit: only the order check refuses it
    extra = tlog.hash_leaf(b"x")
    backwards = {
        "size1": 3,
        "size2": 2,
        "root1": base64.b64encode(roots[3]).decode(),
        "root2": base64.b64encode(tlog.hash_children(roots[3], extra)).decode(),
        "proof": _b64s([roots[3], extra]),
        "wantErr": True,
    }
    cases.append(("backwards 3-2", backwards))
    return cases


def test_generated_consistency_cases() -> None:
    for name, case in _generated_consistency_cases():
        assert _consistency(case) is not case["wantErr"], name


def test_compact_range_reports_every_node_it_completes() -> None:
    leaves = [tlog.hash_leaf(bytes([i])) for i in range(13)]
    seen: dict[tlog.NodeId, bytes] = {}
    tree = tlog.CompactRange(on_node=lambda level, index, h: seen.__setitem__((level, index), h))
    tree.extend(leaves)
    expected = {(level, index) for level in range(1, 4) for index in range(13 >> level)}
    assert set(seen) == expected
    node = _node_lookup(leaves)
    assert all(seen[n] == node(n) for n in expected)
    resumed = tlog.CompactRange(8, [node((3, 0))])
    resumed.extend(leaves[8:])
    assert resumed.root() == tlog.root_hash(leaves) == tree.root()


# -- signed notes ----------------------------------------------------------------------------

C2SP_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
C2SP_NOTE = (
    "This is an example message.\n\n"
    "\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3"
    "mFXmRKuwHjG1Yu72IneyaQM=\n"
)
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2"
    "pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def test_the_c2sp_example_note_verifies_and_fails_when_one_letter_changes() -> None:
    assert tlog.verify_note(C2SP_NOTE, [C2SP_VKEY]) == "This is an example message.\n"
    with pytest.raises(NoteError):
        tlog.verify_note(C2SP_NOTE.replace("example message", "exemple message"), [C2SP_VKEY])
    with pytest.raises(NoteError):
        tlog.verify_note(C2SP_NOTE.replace("Uw2Q", "Uw2R"), [C2SP_VKEY])


def test_go_example_signs_to_the_same_bytes_and_verifies() -> None:
    assert tlog.sign_note(GO_TEXT, GO_SKEY) == GO_NOTE
    assert tlog.verify_note(GO_NOTE, GO_VKEY) == GO_TEXT
    assert tlog.Signer.parse(GO_SKEY).verifier().text() == GO_VKEY


def test_a_note_needs_a_known_key_and_is_refused_when_malformed() -> None:
    skey, vkey = tlog.generate_key("bappeda.example/log")
    note = tlog.sign_note("hello\n", skey)
    assert tlog.verify_note(note, [vkey, GO_VKEY]) == "hello\n"
    with pytest.raises(NoteError, match="no signature"):
        tlog.verify_note(note, [GO_VKEY])
    for bad in [note.replace("\u2014", "-"), note.rstrip("\n"), "hello\n", note + "x"]:
        with pytest.raises(NoteError):
            tlog.verify_note(bad, [vkey])
    with pytest.raises(NoteError):
        tlog.sign_note("no newline", skey)
    with pytest.raises(NoteError):
        tlog.Verifier.parse(vkey[:-2] + "AA")
    with pytest.raises(NoteError):
        tlog.Signer.parse(skey.replace("PRIVATE", "PUBLIC"))
    name, hash16, key64 = vkey.split("+", 2)
    for odd in (f" {hash16[1:]}", f"{hash16[:3]}_{hash16[4:]}", f"+{hash16[1:]}"):
        with pytest.raises(NoteError):  # Go's ParseUint refuses these ids too
            tlog.Verifier.parse(f"{name}+{odd}+{key64}")


def test_checkpoints_parse_and_refuse_what_is_not_one() -> None:
    root = tlog.hash_leaf(b"x")
    text = tlog.format_checkpoint("bappeda.example/36.71", 42, root)
    assert text == f"bappeda.example/36.71\n42\n{base64.b64encode(root).decode()}\n"
    skey, vkey = tlog.generate_key("bappeda.example")
    note = tlog.sign_note(text, skey)
    parsed = tlog.parse_checkpoint(tlog.verify_note(note, vkey))
    assert (parsed.origin, parsed.size, parsed.root) == ("bappeda.example/36.71", 42, root)
    assert tlog.parse_checkpoint(note) == parsed
    with pytest.raises(NoteError):  # every line of a checkpoint's text is non-empty
        tlog.parse_checkpoint(text + "\nextension\n")
    for bad in ["a\n042\nAA==\n", "a\n1\n", "a\n-1\n" + text.split("\n")[2] + "\n", "a\n1\nAA==\n"]:
        with pytest.raises(NoteError):
            tlog.parse_checkpoint(bad)
