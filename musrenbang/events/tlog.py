"""A transparency log's arithmetic, to the public formats: pure, no I/O.

- Merkle trees as RFC 9162 section 2.1 defines them: a leaf hashes as
  ``SHA-256(0x00 || data)``, a node as ``SHA-256(0x01 || left || right)``, and the tree
  over n leaves splits at the largest power of two below n. Every event's stored `hash`
  already is such a leaf hash (its data being ``prev_hash || be64(seq) || record``), and
  its leaf index is ``seq - 1``.
- Inclusion and consistency proofs: which nodes they are made of (so a store can fetch
  them in one read), and their verification, step by step as RFC 9162 sections 2.1.3.2
  and 2.1.4.2 give it.
- Signed notes (C2SP signed-note; Go's golang.org/x/mod/sumdb/note): Ed25519, with that
  package's key names, key ids and key encodings, so `note.Open` in Go reads ours.
- Checkpoints (C2SP tlog-checkpoint): origin, tree size and base64 root, one per line.

Bytes are raw (never base64) and keys are strings in Go's note formats.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

# A node id: the complete subtree of 2**level leaves starting at leaf index << level.
NodeId = tuple[int, int]


class ProofError(ValueError):
    """A proof that does not hold (or cannot be a proof at all)."""


class NoteError(ValueError):
    """A note that is malformed, or not signed by any of the keys given."""


def hash_leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


# -- trees --------------------------------------------------------------------------------


class CompactRange:
    """The roots of the perfect subtrees that make up the leaves [0, size), largest
    first: enough to extend a tree one leaf at a time and to give its root at any
    moment, in memory of O(log size). `on_node` hears of every node completed."""

    def __init__(
        self,
        size: int = 0,
        nodes: Sequence[bytes] = (),
        on_node: Callable[[int, int, bytes], None] | None = None,
    ) -> None:
        if len(nodes) != size.bit_count():
            raise ValueError(f"a range of {size} leaves has {size.bit_count()} subtree roots")
        self.size = size
        self.nodes = list(nodes)
        self.on_node = on_node

    def append(self, leaf: bytes) -> None:
        node, level, index = leaf, 0, self.size
        while index & 1:  # the left sibling at this level is complete: merge
            node = hash_children(self.nodes.pop(), node)
            level, index = level + 1, index >> 1
            if self.on_node is not None:
                self.on_node(level, index, node)
        self.nodes.append(node)
        self.size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        if not self.nodes:
            return EMPTY_ROOT
        return fold(self.nodes)


def fold(hashes: Sequence[bytes]) -> bytes:
    """The hash of adjacent perfect subtrees, largest (leftmost) first: the subtree
    hashes of a tree's right border combine right to left."""
    node = hashes[-1]
    for left in reversed(hashes[:-1]):
        node = hash_children(left, node)
    return node


def root_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """The RFC 9162 Merkle tree hash of these leaf hashes (the empty tree: SHA-256(''))."""
    tree = CompactRange()
    tree.extend(leaf_hashes)
    return tree.root()


def range_nodes(start: int, end: int) -> list[NodeId]:
    """The perfect subtrees, largest first, whose hashes fold into MTH(D[start:end]), for
    a range as the RFC's recursion meets them (start a multiple of its largest piece)."""
    out: list[NodeId] = []
    while start < end:
        level = (end - start).bit_length() - 1
        while start & ((1 << level) - 1):
            level -= 1
        out.append((level, start >> level))
        start += 1 << level
    return out


def compact_nodes(size: int) -> list[NodeId]:
    """The perfect subtrees, largest first, that make up the leaves [0, size)."""
    return range_nodes(0, size)


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_nodes(index: int, size: int) -> list[list[NodeId]]:
    """The inclusion proof of leaf `index` in the tree of `size` leaves (RFC 9162 PATH),
    bottom up, each element given as the perfect subtrees that fold into it."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size} leaves")
    path: list[list[NodeId]] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            path.append(range_nodes(start + k, end))
            end = start + k
        else:
            path.append(range_nodes(start, start + k))
            start += k
    return path[::-1]


def consistency_nodes(size1: int, size2: int) -> list[list[NodeId]]:
    """The consistency proof from the tree of `size1` leaves to that of `size2` (RFC 9162
    SUBPROOF), each element given as the perfect subtrees that fold into it."""
    if not 0 <= size1 <= size2:
        raise ProofError(f"no consistency proof from size {size1} to size {size2}")
    if size1 in (0, size2):
        return []
    proof: list[list[NodeId]] = []
    m, start, end, complete = size1, 0, size2, True
    while m != end - start:  # m: how many leaves of D[start:end] the old tree holds
        k = _split(end - start)
        if m <= k:
            proof.append(range_nodes(start + k, end))
            end = start + k
        else:
            proof.append(range_nodes(start, start + k))
            start, m = start + k, m - k
            complete = False
    if not complete:
        proof.append(range_nodes(start, end))
    return proof[::-1]


def proof_hashes(
    elements: Sequence[Sequence[NodeId]], node: Callable[[NodeId], bytes]
) -> list[bytes]:
    """A proof's hashes, given how to look up a perfect subtree's hash."""
    return [fold([node(n) for n in element]) for element in elements]


# -- verification (RFC 9162 2.1.3.2 and 2.1.4.2) -------------------------------------------

# The steps of verification, by name. Each one is needed: tests drop them one at a time
# and show a test vector that then gives the wrong answer. (Two checks that the named ones
# imply, an empty proof and hash sizes in a consistency proof, are made too, unnamed.)
INCLUSION_STEPS = frozenset(
    {"index-in-range", "hash-sizes", "sn-not-zero", "skip-right-border", "sn-ends-zero", "root"}
)
CONSISTENCY_STEPS = frozenset(
    {
        "size-order",
        "equal-sizes",
        "size1-not-zero",
        "power-of-two",
        "skip-common",
        "sn-not-zero",
        "skip-right-border",
        "sn-ends-zero",
        "root1",
        "root2",
    }
)


def verify_inclusion(
    index: int,
    size: int,
    leaf_hash: bytes,
    proof: Sequence[bytes],
    root: bytes,
    *,
    _skip: frozenset[str] = frozenset(),
) -> None:
    """Raises ProofError unless `proof` shows leaf `index` with `leaf_hash` in the tree of
    `size` leaves whose root is `root`."""
    if "index-in-range" not in _skip and not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size} leaves")
    if "hash-sizes" not in _skip:
        _check_sizes([leaf_hash, root, *proof])
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if "sn-not-zero" not in _skip and sn == 0:
            raise ProofError("the proof is longer than the tree is high")
        if fn & 1 or fn == sn:
            r = hash_children(p, r)
            if "skip-right-border" not in _skip:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = hash_children(r, p)
        fn, sn = fn >> 1, sn >> 1
    if "sn-ends-zero" not in _skip and sn != 0:
        raise ProofError("the proof is shorter than the tree is high")
    if "root" not in _skip and r != root:
        raise ProofError("the proof does not lead to the root")


def verify_consistency(
    size1: int,
    size2: int,
    root1: bytes,
    root2: bytes,
    proof: Sequence[bytes],
    *,
    _skip: frozenset[str] = frozenset(),
) -> None:
    """Raises ProofError unless `proof` shows the tree of `size1` leaves with root `root1`
    to be a prefix of the tree of `size2` leaves with root `root2`."""
    if "size-order" not in _skip and size2 < size1:
        raise ProofError(f"size {size2} is smaller than size {size1}")
    if "size1-not-zero" not in _skip and size1 == 0:
        raise ProofError("a tree of no leaves proves nothing")
    if "equal-sizes" not in _skip and size1 == size2:
        if proof:
            raise ProofError("trees of equal size need an empty proof")
        if root1 != root2:
            raise ProofError("trees of equal size have different roots")
        return
    if not proof:
        raise ProofError("the proof is empty")
    _check_sizes([root1, root2, *proof])  # implied by the comparisons below; said plainly
    path = list(proof)
    if "power-of-two" not in _skip and size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    if not path:
        raise ProofError("the proof is empty")
    fn, sn = size1 - 1, size2 - 1
    if "skip-common" not in _skip:
        while fn > 0 and fn & 1:
            fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if "sn-not-zero" not in _skip and sn == 0:
            raise ProofError("the proof is longer than the tree is high")
        if fn & 1 or fn == sn:
            fr, sr = hash_children(c, fr), hash_children(c, sr)
            if "skip-right-border" not in _skip:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = hash_children(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if "sn-ends-zero" not in _skip and sn != 0:
        raise ProofError("the proof is shorter than the tree is high")
    if "root1" not in _skip and fr != root1:
        raise ProofError(f"the proof does not lead to the root of size {size1}")
    if "root2" not in _skip and sr != root2:
        raise ProofError(f"the proof does not lead to the root of size {size2}")


def _check_sizes(hashes: Iterable[bytes]) -> None:
    if any(len(h) != HASH_SIZE for h in hashes):
        raise ProofError(f"a hash is not {HASH_SIZE} bytes")


# -- signed notes ---------------------------------------------------------------------------

_ALG_ED25519 = 1
_SIG_PREFIX = "\u2014 "  # em dash, space
_MAX_SIGNATURES = 100


def _key_hash(name: str, key: bytes) -> int:
    return int.from_bytes(hashlib.sha256(name.encode() + b"\n" + key).digest()[:4], "big")


def _valid_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def _hex32(text: str) -> int:
    """Eight hex digits, nothing else (as Go's ParseUint(s, 16, 32) of an 8-digit id)."""
    if len(text) != 8 or not all(c in "0123456789abcdefABCDEF" for c in text):
        raise ValueError("not eight hex digits")
    return int(text, 16)


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError("not base64") from None


@dataclass(frozen=True)
class Verifier:
    """A verifier key (`<name>+<hash>+<base64(0x01 || public key)>`)."""

    name: str
    key_hash: int
    public_key: bytes

    @classmethod
    def parse(cls, vkey: str) -> Verifier:
        name, _, rest = vkey.strip().partition("+")
        hash16, _, key64 = rest.partition("+")
        try:
            key = _b64decode(key64)
            hash_ = _hex32(hash16)
        except (NoteError, ValueError):
            raise NoteError("malformed verifier key") from None
        if not _valid_name(name) or not key:
            raise NoteError("malformed verifier key")
        if _key_hash(name, key) != hash_:
            raise NoteError("the verifier key's hash does not match its key")
        if key[0] != _ALG_ED25519 or len(key) != 33:
            raise NoteError("the verifier key is not an Ed25519 key")
        return cls(name, hash_, key[1:])

    def text(self) -> str:
        encoded = base64.b64encode(bytes([_ALG_ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_hash:08x}+{encoded}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class Signer:
    """A signer key (`PRIVATE+KEY+<name>+<hash>+<base64(0x01 || seed)>`): secret."""

    name: str
    key_hash: int
    seed: bytes

    @classmethod
    def parse(cls, skey: str) -> Signer:
        parts = skey.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise NoteError("malformed signer key")
        _, _, name, hash16, key64 = parts
        try:
            key = _b64decode(key64)
            hash_ = _hex32(hash16)
        except (NoteError, ValueError):
            raise NoteError("malformed signer key") from None
        if not _valid_name(name) or len(key) != 33:
            raise NoteError("malformed signer key")
        if key[0] != _ALG_ED25519:
            raise NoteError("the signer key is not an Ed25519 key")
        signer = cls(name, hash_, key[1:])
        if _key_hash(name, bytes([_ALG_ED25519]) + signer.verifier().public_key) != hash_:
            raise NoteError("the signer key's hash does not match its key")
        return signer

    def verifier(self) -> Verifier:
        public = Ed25519PrivateKey.from_private_bytes(self.seed).public_key().public_bytes_raw()
        return Verifier(self.name, self.key_hash, public)

    def sign(self, message: bytes) -> bytes:
        return Ed25519PrivateKey.from_private_bytes(self.seed).sign(message)

    def text(self) -> str:
        encoded = base64.b64encode(bytes([_ALG_ED25519]) + self.seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.key_hash:08x}+{encoded}"


def generate_key(name: str) -> tuple[str, str]:
    """A new key pair for `name`: (signer key, verifier key), as Go's note.GenerateKey."""
    if not _valid_name(name):
        raise NoteError("a key name must be non-empty, without spaces or '+'")
    private = Ed25519PrivateKey.generate()
    public = bytes([_ALG_ED25519]) + private.public_key().public_bytes_raw()
    seed = private.private_bytes_raw()
    signer = Signer(name, _key_hash(name, public), seed)
    return signer.text(), signer.verifier().text()


def sign_note(text: str, skey: str | Signer) -> str:
    """The signed note of `text` (which must end in a newline) by the signer key."""
    signer = skey if isinstance(skey, Signer) else Signer.parse(skey)
    _check_note_text(text)
    if not text.endswith("\n"):
        raise NoteError("a note's text must end in a newline")
    message = text.encode()
    signature = signer.key_hash.to_bytes(4, "big") + signer.sign(message)
    return f"{text}\n{_SIG_PREFIX}{signer.name} {base64.b64encode(signature).decode()}\n"


def verify_note(note: str, vkeys: Iterable[str | Verifier] | str) -> str:
    """The text of `note` once a signature by one of `vkeys` verifies on it.

    As Go's note.Open: signatures by unknown keys are ignored, one by a known key that
    does not verify fails the note, and at least one must verify."""
    keys = [vkeys] if isinstance(vkeys, str) else list(vkeys)
    known: dict[tuple[str, int], Verifier] = {}
    for key in keys:
        verifier = key if isinstance(key, Verifier) else Verifier.parse(key)
        known[(verifier.name, verifier.key_hash)] = verifier
    _check_note_text(note)
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("malformed note: no signature block")
    text, block = note[: split + 1], note[split + 2 :]
    if not block or not block.endswith("\n"):
        raise NoteError("malformed note: the signatures must end in a newline")
    message = text.encode()
    verified: set[tuple[str, int]] = set()
    lines = block[:-1].split("\n")
    if len(lines) > _MAX_SIGNATURES:
        raise NoteError("malformed note: too many signatures")
    for line in lines:
        if not line.startswith(_SIG_PREFIX):
            raise NoteError("malformed note: a signature line must start with an em dash")
        name, _, b64 = line[len(_SIG_PREFIX) :].partition(" ")
        signature = _b64decode(b64) if b64 else b""
        if not _valid_name(name) or len(signature) < 5:
            raise NoteError("malformed note: a signature line is not '— name base64'")
        id_ = (name, int.from_bytes(signature[:4], "big"))
        found = known.get(id_)
        if found is None or id_ in verified:
            continue
        if not found.verify(message, signature[4:]):
            raise NoteError(f"invalid signature for key {name}+{id_[1]:08x}")
        verified.add(id_)
    if not verified:
        raise NoteError("the note has no signature by a key given")
    return text


def _check_note_text(text: str) -> None:
    for c in text:
        if c < " " and c != "\n":
            raise NoteError("malformed note: control characters other than newline")
    try:
        text.encode()
    except UnicodeEncodeError:
        raise NoteError("malformed note: not UTF-8") from None


# -- checkpoints ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode()]
        return "\n".join([*lines, *self.extensions]) + "\n"


def format_checkpoint(origin: str, size: int, root: bytes) -> str:
    """A checkpoint's note text (C2SP tlog-checkpoint)."""
    if not origin or "\n" in origin or size < 0 or len(root) != HASH_SIZE:
        raise ValueError("a checkpoint needs an origin line, a size and a 32-byte root")
    return Checkpoint(origin, size, root).text()


def parse_checkpoint(text: str) -> Checkpoint:
    """The origin, size and root of a checkpoint's text (or of a whole signed note: its
    text is taken up to the signatures; this does not verify them, `verify_note` does)."""
    split = text.rfind("\n\n")  # a whole note: its text ends where the signatures start
    block = text[split + 2 :].rstrip("\n").split("\n") if split >= 0 else []
    signed = bool(block) and all(line.startswith(_SIG_PREFIX) for line in block)
    body = text[: split + 1] if signed else text
    if not body.endswith("\n"):
        raise NoteError("a checkpoint's text must end in a newline")
    lines = body[:-1].split("\n")
    if len(lines) < 3 or any(not line for line in lines):
        raise NoteError("a checkpoint has an origin, a size and a root, each on a line")
    origin, size_text, root_text = lines[:3]
    if (
        not size_text.isascii()
        or not size_text.isdigit()
        or (size_text != "0" and size_text.startswith("0"))
    ):
        raise NoteError(f"the tree size {size_text!r} is not a decimal number")
    root = _b64decode(root_text)
    if len(root) != HASH_SIZE:
        raise NoteError("the root hash is not 32 bytes")
    return Checkpoint(origin, int(size_text), root, tuple(lines[3:]))
