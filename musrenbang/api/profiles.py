"""Region profiles as the API shows them: the profile a region's next cycle is planned
with when `POST /cycles` names none (its own, else the documented default), to read or
to start one's own from; and the sub-kegiatan catalogues a profile may name."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel

from musrenbang.api.auth import CurrentActor, require_read
from musrenbang.api.deps import SettingsDep
from musrenbang.api.errors import ApiError
from musrenbang.api.responses import error_responses
from musrenbang.domain.profiles import Profile, ProfileError
from musrenbang.domain.regions import UnknownRegion, load_region
from musrenbang.profiles import REGION_CODE, catalogue_edition, catalogues, region_profile

router = APIRouter(responses=error_responses(401, 422, 503))


class OpdOut(BaseModel):
    slug: str
    name: str
    bidang: list[str]
    chair: str | None
    urusan: list[str]


class StageOut(BaseModel):
    slug: str
    name: str
    level: str
    chaired_by: str
    timer_may_close: bool


class CodeName(BaseModel):
    code: str
    name: str


class RegionProfile(BaseModel):
    """A region profile, in the form `POST /cycles` takes as "profile"."""

    region: str
    name: str
    source: str  # shipped:<region>, file:<name>, or default
    opds: list[OpdOut]
    template: str | None
    stages: list[StageOut]
    pokir_stage: str | None
    pagu: dict[str, Any]
    reason_codes: list[CodeName]
    calendar: dict[str, str]
    nomenclature: str
    sub_kegiatan: list[CodeName]


class Catalogue(BaseModel):
    name: str
    entries: int
    edition: str | None = None
    source: str | None = None
    scope: str | None = None


class CatalogueList(BaseModel):
    catalogues: list[Catalogue]


def profile_out(region: str, name: str, profile: Profile) -> RegionProfile:
    pagu: dict[str, Any] = dict(profile.pagu)
    for stage, units in profile.pagu_units.items():
        pagu[stage] = {"units": units, **({"per_forum": pagu[stage]} if stage in pagu else {})}
    return RegionProfile(
        region=region,
        name=name,
        source=profile.source,
        opds=[
            OpdOut(
                slug=o.slug,
                name=o.name,
                bidang=list(o.bidang),
                chair=o.chair,
                urusan=list(o.urusan),
            )
            for o in profile.opds
        ],
        template=profile.template,
        stages=[
            StageOut(
                slug=s.slug,
                name=s.name,
                level=s.level.value,
                chaired_by=s.chaired_by,
                timer_may_close=s.timer_may_close,
            )
            for s in profile.stages
        ],
        pokir_stage=profile.pokir_stage,
        pagu=pagu,
        reason_codes=[CodeName(code=c, name=n) for c, n in profile.reason_codes],
        calendar={s: f"{m:02d}-{d:02d}" for s, (m, d) in profile.calendar.items()},
        nomenclature=profile.nomenclature,
        sub_kegiatan=[CodeName(code=c, name=n) for c, n in profile.sub_kegiatan.items()],
    )


@router.get("/profiles/{region}", responses=error_responses(403, 404, 409))
async def get_profile(
    region: Annotated[str, Path(pattern=REGION_CODE, examples=["36.74"])],
    actor: CurrentActor,
    settings: SettingsDep,
) -> RegionProfile:
    """The profile a cycle of `region` is planned with when it names none."""
    require_read(actor, region)
    try:
        found = load_region(region)
        profile = region_profile(region, settings.profiles_dir)
    except UnknownRegion as exc:
        raise ApiError(404, "NotFound", str(exc)) from None
    except ProfileError as exc:  # a Bappeda's own file that does not parse
        raise ApiError(409, "Conflict", f"the region's profile file is refused: {exc}") from None
    return profile_out(found.code, found.name, profile)


@router.get("/nomenclature", responses=error_responses(409))
async def list_catalogues(actor: CurrentActor, settings: SettingsDep) -> CatalogueList:
    """The sub-kegiatan catalogues a profile may name as its "nomenclature"."""
    out = []
    try:
        found = catalogues(settings.profiles_dir)
    except ProfileError as exc:  # a Bappeda's own catalogue file that does not parse
        raise ApiError(409, "Conflict", f"a nomenclature file is refused: {exc}") from None
    for name, entries in sorted(found.items()):
        edition = catalogue_edition(name) or {}
        out.append(
            Catalogue(
                name=name,
                entries=len(entries),
                edition=edition.get("edition"),
                source=edition.get("source"),
                scope=edition.get("scope"),
            )
        )
    return CatalogueList(catalogues=out)
