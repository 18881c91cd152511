"""The nomor usulan: a short receipt code a proposer can write down, derived from the
usulan's global id. Crockford base32 (no I, L, O or U, so nothing is misread), 12
characters in three groups: 60 bits, so the millions of usulan a year stay far from a
collision for decades."""

from __future__ import annotations

import hashlib

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def receipt_code(proposal_id: str) -> str:
    number = int.from_bytes(hashlib.sha256(proposal_id.encode()).digest()[:8], "big") >> 4
    chars = []
    for _ in range(12):
        number, digit = divmod(number, 32)
        chars.append(ALPHABET[digit])
    code = "".join(reversed(chars))
    return f"{code[:4]}-{code[4:8]}-{code[8:]}"
