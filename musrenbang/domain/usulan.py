"""One validator for an usulan's fields, used wherever they enter: a kelurahan's
submission, a DPRD member's pokir and a forum's revision. Strict types (a boolean is not
a number, a number is not a text), bounds and lengths, the region's OPDs, an RT/RW as
Indonesia writes them and coordinates within the country."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from typing import Any

SUB_KEGIATAN = re.compile(r"^\d\.\d{2}\.\d{2}\.\d\.\d{2}\.\d{4}$")
RT_RW = re.compile(r"^\d{1,3}$")
KELURAHAN = re.compile(r"^\d{2}\.\d{2}\.\d{2}\.\d{4}$")
MAX_COST = 10**13  # Rp10 trillion: above any kota's whole budget
MAX_VOLUME = 10**9


def _text(low: int, high: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if not isinstance(value, str):
            return "must be a text"
        if not low <= len(value.strip()) <= high or len(value) > high:
            return f"must be {low} to {high} characters"
        return None

    return check


def _cost(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_COST:
        return "must be a positive whole number of Rupiah (at most Rp10 trillion)"
    return None


def _volume(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "must be a number"
    if not math.isfinite(value) or not 0 < value <= MAX_VOLUME:
        return f"must be more than 0 and at most {MAX_VOLUME:,}"
    return None


def _rt_rw(value: Any) -> str | None:
    if not isinstance(value, str) or not RT_RW.fullmatch(value) or int(value) == 0:
        return "must be a number of up to three digits, as in RT 003"
    return None


def _koordinat(value: Any) -> str | None:
    ok = (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    )
    if not ok or not (-11.5 <= value[0] <= 6.5 and 94.5 <= value[1] <= 141.5):
        return "must be [lat, lon] within Indonesia"
    return None


def _fisik(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _pattern(regex: re.Pattern[str], example: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if not isinstance(value, str) or not regex.fullmatch(value):
            return f"must look like {example}"
        return None

    return check


RULES: dict[str, Callable[[Any], str | None]] = {
    "masalah": _text(3, 2000),
    "gagasan": _text(3, 4000),
    "cost": _cost,
    "bidang": _text(2, 60),
    "volume": _volume,
    "satuan": _text(1, 40),
    "rt": _rt_rw,
    "rw": _rt_rw,
    "alamat": _text(1, 500),
    "fisik": _fisik,
    "koordinat": _koordinat,
    "pengusul": _text(1, 200),
    "kelurahan": _pattern(KELURAHAN, "36.71.01.1001"),
    "sub_kegiatan": _pattern(SUB_KEGIATAN, "1.03.10.2.01.0001 (Permendagri 90/2019)"),
}
REQUIRED = ("masalah", "gagasan", "cost", "bidang", "volume", "satuan")


def field_problem(name: str, value: Any, opds: Iterable[str]) -> str | None:
    """Why `value` cannot stand as the usulan's `name`, or None."""
    if name == "opd":
        known = list(opds)
        if not isinstance(value, str) or value not in known:
            return f"opd {value!r} is not an OPD of this region ({', '.join(known[:12])})"
        return None
    rule = RULES.get(name)
    if rule is None:
        return f"{name} is not a field of an usulan"
    problem = rule(value)
    return f"{name} {problem}" if problem else None


def usulan_problem(fields: dict[str, Any], opds: Iterable[str]) -> str | None:
    """The first reason a new usulan's fields are refused (None values are absent)."""
    known = list(opds)
    for name in REQUIRED:
        if fields.get(name) is None:
            return f"{name} is required"
    for name, value in fields.items():
        if value is None or name in ("proposal_id", "reference"):
            continue
        problem = field_problem(name, value, known)
        if problem:
            return problem
    return None


def changes_problem(
    changes: dict[str, Any], revisable: Iterable[str], opds: Iterable[str]
) -> str | None:
    """The first reason a revision's changes are refused: only revisable fields, each a
    valid value (never null: a revision changes a value, it does not erase one)."""
    allowed, known = set(revisable), list(opds)
    unknown = sorted(set(changes) - allowed)
    if unknown:
        return f"cannot revise {unknown}; revisable: {', '.join(sorted(allowed))}"
    for name, value in changes.items():
        if value is None:
            return f"{name} cannot be revised to nothing"
        problem = field_problem(name, value, known)
        if problem:
            return problem
    return None
