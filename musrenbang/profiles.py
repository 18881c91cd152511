"""Region profiles and sub-kegiatan catalogues as data: the files shipped in the package
(musrenbang/data/profiles/, musrenbang/data/nomenclature/), and a Bappeda's own in the
folder MUSRENBANG_PROFILES_DIR (`<region>.json` profiles, `nomenclature/<name>.json`
catalogues), which take precedence. Read when a cycle is planned, never by a workflow."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from musrenbang.domain.profiles import Profile, ProfileError, parse_catalogue, parse_profile

REGION_CODE = r"^\d{2}\.\d{2}$"
MAX_FILE_BYTES = 4 * 1024 * 1024


def _read(path: Path | Any) -> Any:
    text = path.read_text(encoding="utf-8")
    if len(text) > MAX_FILE_BYTES:
        raise ProfileError(f"{path} is larger than {MAX_FILE_BYTES // 1024 // 1024} MB")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ProfileError(f"{path} is not JSON: {exc}") from None


def _shipped(folder: str) -> dict[str, Any]:
    root = resources.files("musrenbang") / "data" / folder
    return {p.name.removesuffix(".json"): p for p in root.iterdir() if p.name.endswith(".json")}


def _catalogue_entries(data: Any, where: str) -> dict[str, str]:
    if not isinstance(data, dict):
        raise ProfileError(f'{where} must be an object with "entries": [{{"code", "name"}}]')
    return parse_catalogue(data.get("entries"), f"{where} entries")


@cache
def shipped_catalogues() -> dict[str, dict[str, str]]:
    """The sub-kegiatan catalogues in the package: name -> {code: name}."""
    return {
        name: _catalogue_entries(_read(path), f"nomenclature {name}")
        for name, path in _shipped("nomenclature").items()
    }


def catalogues(extra: Path | None = None) -> dict[str, dict[str, str]]:
    """Every catalogue a profile may name: the shipped ones and the Bappeda's own."""
    found = dict(shipped_catalogues())
    folder = extra / "nomenclature" if extra else None
    if folder is not None and folder.is_dir():
        for path in sorted(folder.glob("*.json")):
            found[path.stem] = _catalogue_entries(_read(path), str(path))
    return found


def catalogue_edition(name: str) -> dict[str, Any] | None:
    """A shipped catalogue's edition, source and scope (for the README and the API)."""
    path = _shipped("nomenclature").get(name)
    if path is None:
        return None
    data = _read(path)
    return {k: data.get(k) for k in ("name", "edition", "source", "scope")} | {
        "entries": len(data["entries"])
    }


def default_profile(extra: Path | None = None) -> Profile:
    """The documented default of a region with no profile of its own."""
    return parse_profile(
        _read(_shipped("profiles")["default"]), source="default", catalogues=catalogues(extra)
    )


def shipped_regions() -> list[str]:
    return sorted(name for name in _shipped("profiles") if name != "default")


def region_profile(region: str, extra: Path | None = None) -> Profile:
    """The profile a region plans with when it names none: its own file in `extra`, else
    the shipped one, else the default."""
    books = catalogues(extra)
    base = default_profile(extra)
    own = extra / f"{region}.json" if extra else None
    if own is not None and own.is_file():
        return parse_profile(_read(own), base, source=f"file:{own.name}", catalogues=books)
    shipped = _shipped("profiles").get(region)
    if shipped is not None:
        return parse_profile(_read(shipped), base, source=f"shipped:{region}", catalogues=books)
    return base


def resolve_profile(
    region: str, given: str | dict[str, Any] | None, extra: Path | None = None
) -> Profile:
    """The profile a cycle of `region` is planned with: `given` as a region code (a shipped
    profile or one in `extra`), an object (at least its "opds"; the rest from the region's
    own profile or the default), or None (the region's own or the default)."""
    if given is None:
        return region_profile(region, extra)
    if isinstance(given, str):
        known = {*shipped_regions(), *(p.stem for p in extra.glob("*.json"))} if extra else None
        if given not in (known if known is not None else set(shipped_regions())):
            names = ", ".join(sorted(known or shipped_regions()))
            raise ProfileError(f"no profile for region {given!r}; shipped: {names}")
        return region_profile(given, extra)
    if not isinstance(given, dict) or "opds" not in given:
        raise ProfileError('a profile object needs "opds": [{"slug", "name", "bidang": [...]}]')
    base = region_profile(region, extra)
    return parse_profile(given, base, source="request", catalogues=catalogues(extra))
