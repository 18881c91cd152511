"""Text that the log can hold. PostgreSQL text refuses NUL, UTF-8 cannot encode a lone
surrogate, and other C0 control characters have no place in a planning record; every
text taken from outside is checked here, at the API and again in the workflow."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from musrenbang.domain.errors import Refused

# C0 controls but tab, line feed and carriage return (ordinary in minutes and addresses),
# DEL, and the surrogate range, which holds no character on its own. One regular
# expression: a batch of thousands of usulan is scanned at C speed.
_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
MAX_DEPTH = 12


def text_problem(value: str) -> str | None:
    """Why `value` cannot be recorded, or None."""
    found = _BAD.search(value)
    if found is None:
        return None
    code = ord(found.group())
    if code == 0:
        return "holds a NUL character"
    if 0xD800 <= code <= 0xDFFF:
        return "holds a lone surrogate (not valid Unicode)"
    return f"holds the control character U+{code:04X}"


def _walk(value: Any, path: str, depth: int) -> Iterator[tuple[str, str]]:
    if depth > MAX_DEPTH:
        yield path, f"nests deeper than {MAX_DEPTH} levels"
        return
    if isinstance(value, str):
        problem = text_problem(value)
        if problem:
            yield path, problem
    elif isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str):
                problem = text_problem(key)
                if problem:
                    yield where, f"is a key that {problem}"
                    continue
            yield from _walk(item, where, depth + 1)
    elif isinstance(value, list | tuple):
        for n, item in enumerate(value):
            yield from _walk(item, f"{path}[{n}]", depth + 1)


def first_bad_text(value: Any, path: str = "") -> tuple[str, str] | None:
    """The first (field path, problem) among every text nested in `value`, or None."""
    return next(_walk(value, path, 0), None)


def check_texts(value: Any, path: str = "") -> None:
    """Raises `Refused` naming the first field whose text cannot be recorded."""
    found = first_bad_text(value, path)
    if found:
        where, problem = found
        raise Refused(f"{where or 'the request'} {problem}")
