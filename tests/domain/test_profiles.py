"""Region profiles as data, and the rules that moved into the domain: intake, routing,
decisions allowed per level, auto-close outcomes. No fixtures: plain values in and out."""

from __future__ import annotations

from typing import Any

import pytest

from musrenbang.domain.decisions import (
    ADOPTING,
    AT_CITY,
    AT_OPD,
    ELSEWHERE,
    Decision,
    Entry,
    ForumBook,
    Kind,
    allowed_kinds,
)
from musrenbang.domain.errors import Conflict, Refused
from musrenbang.domain.intake import ProposalDraft, check_batch, draft_details, origin_problem
from musrenbang.domain.opd import routes_before_profiles
from musrenbang.domain.profiles import ProfileError, parse_profile
from musrenbang.domain.records import evolve_cycle
from musrenbang.domain.routing import feeders, graph_problem, route, route_opd, units_at
from musrenbang.domain.stages import STAGES, Level, Stage, template
from musrenbang.planning import CyclePlan, cycle_input
from musrenbang.profiles import (
    default_profile,
    region_profile,
    resolve_profile,
    shipped_catalogues,
    shipped_regions,
)

OPDS = [{"slug": "dinas-pu", "name": "Dinas Pekerjaan Umum", "bidang": ["jalan", "drainase"]}]


def _stage(slug: str, level: Level) -> Stage:
    return Stage(slug, slug.title(), level, "Ketua")


# -- the shipped profiles -------------------------------------------------------------


def test_tangerang_and_tangerang_selatan_ship_their_own_opds() -> None:
    assert shipped_regions() == ["36.71", "36.74"]
    tangerang, tangsel, other = (region_profile(r) for r in ("36.71", "36.74", "13.72"))
    assert tangerang.source == "shipped:36.71" and tangsel.source == "shipped:36.74"
    assert other.source == "default"
    names = {p.source: {o.slug: o.name for o in p.opds} for p in (tangerang, tangsel, other)}
    assert names["shipped:36.71"]["disperkimtan"] == "Dinas Perumahan, Permukiman dan Pertanahan"
    assert "Bina Marga" in names["shipped:36.74"]["dsdabmbk"]
    assert "dsdabmbk" not in names["shipped:36.71"] and "disperkimtan" not in names["default"]
    # roads go to each city's own agency
    assert tangerang.routes()["jalan"] == "dinas-pupr"
    assert tangsel.routes()["jalan"] == "dsdabmbk"
    assert tangsel.routes()["tata-ruang"] == "dcktr"


def test_every_shipped_profile_plans_a_cycle_with_a_real_nomenclature() -> None:
    books = shipped_catalogues()
    assert set(books) == {"kepmendagri-900-2023", "sipd-2027"}
    assert books["sipd-2027"]["1.03.10.2.01.0055"] == "Rehabilitasi Jalan"
    assert "1.03.10.2.01.0001" not in books["sipd-2027"]  # the right shape, not a code
    for region in ("36.71", "36.74", "13.72"):
        inp = cycle_input(CyclePlan(region=region, year=2028))
        assert inp.sub_kegiatan == books["sipd-2027"]
        assert "tidak-dibahas" in inp.reason_codes  # the system's own, for auto-closes
        assert set(inp.routes.values()) <= set(inp.opds)
        assert inp.names[inp.opds[0]] and inp.names[inp.units["kelurahan"][0]]
        assert inp.profile["source"] in ("shipped:36.71", "shipped:36.74", "default")


def test_the_default_keeps_the_routing_of_cycles_planned_before_profiles() -> None:
    default = default_profile()
    before = routes_before_profiles([o.slug for o in default.opds])
    assert default.routes() == before


# -- a profile given as an object -------------------------------------------------------


def test_an_object_needs_its_opds_and_takes_the_rest_from_the_region() -> None:
    with pytest.raises(ProfileError, match="opds"):
        resolve_profile("36.71", {"pagu": {"kelurahan": 1}})
    own = resolve_profile("36.71", {"opds": OPDS})
    assert own.source == "request" and [o.slug for o in own.opds] == ["dinas-pu"]
    assert own.reason_codes == region_profile("36.71").reason_codes
    assert resolve_profile("13.72", "36.74").source == "shipped:36.74"
    with pytest.raises(ProfileError, match="no profile for region"):
        resolve_profile("13.72", "99.99")


@pytest.mark.parametrize(
    ("profile", "says"),
    [
        ({"opds": []}, "opds must be a list"),
        ({"opds": [{"slug": "A B", "name": "x", "bidang": ["jalan"]}]}, "must be a slug"),
        ({"opds": [{"slug": "a1", "name": "x"}]}, "needs bidang"),
        ({"opds": [*OPDS, {**OPDS[0], "slug": "lain"}]}, "handled by both"),
        ({"opds": OPDS, "stages": "surabaya"}, "unknown stage template"),
        ({"opds": OPDS, "warna": "merah"}, "has no warna"),
        ({"opds": OPDS, "pagu": {"kelurahan": -1}}, "whole number"),
        ({"opds": OPDS, "pagu": {"kelurahan": True}}, "whole number"),
        ({"opds": OPDS, "pagu": {"nowhere": 1}}, "not a stage"),
        ({"opds": OPDS, "calendar": {"kelurahan": "31-01"}}, "MM-DD"),
        ({"opds": OPDS, "reason_codes": [{"code": "x y", "name": "n"}]}, "must be a slug"),
        ({"opds": OPDS, "nomenclature": "permendagri-1945"}, "not a catalogue"),
        ({"opds": OPDS, "sub_kegiatan": [{"code": "1.2.3", "name": "x"}]}, "must look like"),
        ({"opds": OPDS, "pokir_stage": "kota"}, "must be of level opd"),
        ({"opds": OPDS, "pokir_stage": "tidak-ada"}, "not a stage of this graph"),
    ],
)
def test_a_profile_that_cannot_plan_is_refused_with_its_reason(
    profile: dict[str, Any], says: str
) -> None:
    with pytest.raises(ProfileError, match=says):
        resolve_profile("13.72", profile)


def test_pagu_per_unit_names_units_of_the_region() -> None:
    kel = "13.72.01.1001"
    plan = CyclePlan(
        region="13.72",
        year=2028,
        profile={"opds": OPDS, "pagu": {"kelurahan": {"per_forum": 100, "units": {kel: 250}}}},
    )
    inp = cycle_input(plan)
    assert inp.pagu == {"kelurahan": 100} and inp.pagu_units == {"kelurahan": {kel: 250}}
    plan.profile = {"opds": OPDS, "pagu": {"kelurahan": {"units": {"36.71.01.1001": 5}}}}
    with pytest.raises(ProfileError, match="not a kelurahan of"):
        cycle_input(plan)


# -- stage graphs -----------------------------------------------------------------------


def test_every_template_is_a_graph_that_routes() -> None:
    for name in ("default", "tanpa-kelurahan", "sipd"):
        assert graph_problem(template(name), "forum-pd") is None


@pytest.mark.parametrize(
    ("levels", "pokir", "says"),
    [
        ([Level.KELURAHAN], None, "at least two"),
        ([Level.OPD, Level.CITY], None, "first stage"),
        ([Level.KELURAHAN, Level.CITY, Level.OPD], None, "cannot follow"),
        ([Level.KELURAHAN, Level.KECAMATAN], None, "must be city"),
        ([Level.KELURAHAN, Level.OPD, Level.CITY], "s0", "must be of level opd"),
    ],
)
def test_a_graph_that_cannot_route_is_named(
    levels: list[Level], pokir: str | None, says: str
) -> None:
    stages = [_stage(f"s{n}", level) for n, level in enumerate(levels)]
    assert says in (graph_problem(stages, pokir) or "")


def test_an_own_graph_plans_with_its_own_calendar() -> None:
    stages = [
        {"slug": "rembuk-rw", "name": "Rembuk RW", "level": "kelurahan", "chaired_by": "Ketua RW"},
        {"slug": "forum-opd", "name": "Forum OPD", "level": "opd", "chaired_by": "Kepala OPD"},
        {"slug": "penetapan", "name": "Penetapan", "level": "city", "chaired_by": "Wali Kota"},
    ]
    calendar = {"rembuk-rw": "01-20", "forum-opd": "03-01", "penetapan": "05-20"}
    profile = {"opds": OPDS, "stages": stages, "calendar": calendar, "pokir_stage": "forum-opd"}
    inp = cycle_input(CyclePlan(region="13.72", year=2028, profile=profile))
    assert inp.stages == ["rembuk-rw", "forum-opd", "penetapan"] and inp.template == "own"
    assert inp.deadlines["rembuk-rw"].startswith("2027-01-20")
    assert inp.timer_closes == {"rembuk-rw": True, "forum-opd": True, "penetapan": False}
    assert inp.pokir_stage == "forum-opd"
    with pytest.raises(ValueError, match="has no deadline"):
        cycle_input(CyclePlan(region="13.72", year=2028, profile={"opds": OPDS, "stages": stages}))


# -- routing ----------------------------------------------------------------------------


def test_routing_goes_up_the_levels() -> None:
    kel, kec = "36.71.01.1001", "36.71.01"
    assert route(Level.KECAMATAN, kel, "dinas-pupr", "36.71") == kec
    assert route(Level.KECAMATAN, kec, "dinas-pupr", "36.71") == kec
    assert route(Level.OPD, kel, "dinas-pupr", "36.71") == "dinas-pupr"
    assert route(Level.CITY, "dinas-pupr", "dinas-pupr", "36.71") == "36.71"
    units = {"kelurahan": [kel, "36.71.02.1001"], "kecamatan": [kec, "36.71.02"]}
    assert units_at(Level.OPD, units, ["a", "b"], "36.71") == ["a", "b"]
    assert units_at(Level.CITY, units, ["a"], "36.71") == ["36.71"]
    assert feeders(Level.KECAMATAN, Level.KELURAHAN, kec, units["kelurahan"]) == {kel}
    assert feeders(Level.KECAMATAN, Level.KECAMATAN, kec, units["kecamatan"]) == {kec}
    assert feeders(Level.OPD, Level.KELURAHAN, "a", units["kelurahan"]) == set(units["kelurahan"])
    assert route_opd(None, "jalan", {"jalan": "dinas-pupr"}) == "dinas-pupr"
    assert route_opd("dinas-lain", "jalan", {"jalan": "dinas-pupr"}) == "dinas-lain"
    assert route_opd(None, "antariksa", {"jalan": "dinas-pupr"}) is None


# -- intake -----------------------------------------------------------------------------


def _draft(**overrides: Any) -> ProposalDraft:
    fields: dict[str, Any] = {
        "masalah": "Jalan rusak",
        "gagasan": "Perbaikan jalan lingkungan",
        "cost": 150_000_000,
        "bidang": "jalan",
        "volume": 120.0,
        "satuan": "m",
    }
    return ProposalDraft(**{**fields, **overrides})


def test_intake_refuses_what_cannot_enter() -> None:
    routes, opds = {"jalan": "dinas-pupr"}, ["dinas-pupr"]
    check_batch([_draft()], opds, routes, {})
    with pytest.raises(Refused, match="no OPD handles bidang 'antariksa'"):
        check_batch([_draft(bidang="antariksa")], opds, routes, {})
    with pytest.raises(Refused, match="usulan 2: cost"):
        check_batch([_draft(), _draft(cost=True)], opds, routes, {})
    with pytest.raises(Refused, match="given twice"):
        check_batch([_draft(reference="r1"), _draft(reference="r1")], opds, routes, {})
    with pytest.raises(Conflict, match="already submitted"):
        check_batch([_draft(reference="r1")], opds, routes, {"r1": "p1"})
    check_batch([_draft(reference="r1")], opds, routes, None)  # references unchecked
    unit = "36.71.01.1001"
    with pytest.raises(Refused, match="is not this forum's"):
        check_batch(
            [_draft(kelurahan="36.71.01.1002")], opds, routes, {}, origin=(Level.KELURAHAN, unit)
        )
    assert origin_problem(Level.KECAMATAN, "36.71.01", unit) is None
    assert "name the kelurahan" in (origin_problem(Level.KECAMATAN, "36.71.01", None) or "")
    details = draft_details(_draft(reference="r9"), "dinas-pupr")
    assert details["opd"] == "dinas-pupr" and details["reference"] == "r9"
    assert "proposal_id" not in details


# -- decisions --------------------------------------------------------------------------


def test_decisions_allowed_follow_the_level_and_the_final_stage() -> None:
    assert allowed_kinds(Level.CITY, final=True) == ADOPTING
    assert allowed_kinds(Level.OPD, final=False) == AT_OPD
    assert allowed_kinds(Level.CITY, final=False) == AT_CITY
    assert allowed_kinds(Level.KELURAHAN, final=False) == ELSEWHERE
    assert Kind.ASSIGN in AT_OPD and Kind.ASSIGN not in AT_CITY | ELSEWHERE
    # the built-in stages keep the decisions they always took
    assert allowed_kinds(STAGES["kota"].level, False) == AT_CITY


def _held(**book: Any) -> ForumBook:
    forum = ForumBook("forum-pd", None, AT_OPD, **book)
    forum.entries = {"a": Entry(100, "dinas-pupr"), "b": Entry(50, "dinas-pupr")}
    return forum


def test_reason_codes_and_the_nomenclature_are_the_regions() -> None:
    codes = frozenset({"sudah-dianggarkan", "tidak-dibahas"})
    catalogue = {"1.03.10.2.01.0055": "Rehabilitasi Jalan"}
    book = _held(reason_codes=codes, catalogue=catalogue)
    reject = Decision("a", "reject", reason="Sudah ada", reason_code="asal-tolak")
    assert "not one of the region's" in book.check([reject], frozenset())[0]
    unknown = Decision("a", "assign", sub_kegiatan="9.99.99.9.99.9999")
    assert "not in the region's nomenclature" in book.check([unknown], frozenset())[0]
    revise = Decision("a", "revise", reason="r", changes={"sub_kegiatan": "1.03.10.2.01.0001"})
    assert "nomenclature" in book.check([revise], frozenset({"dinas-pupr"}))[0]
    assign = Decision("a", "assign", sub_kegiatan="1.03.10.2.01.0055")
    assert book.check([assign], frozenset()) == []
    ((_, etype, payload),) = book.apply([assign])
    assert etype == "ProposalAssigned"
    assert payload["sub_kegiatan"] == "1.03.10.2.01.0055"
    assert payload["sub_kegiatan_name"] == "Rehabilitasi Jalan"
    # a forum that holds no nomenclature assigns none; one from before profiles, any shape
    assert "Forum Perangkat Daerah" in _held(catalogue={}).check([assign], frozenset())[0]
    assert _held().check([unknown], frozenset()) == []


def test_auto_close_outcomes_follow_the_policy() -> None:
    book = _held()
    book.entries["b"].outcome = Kind.ACCEPT
    ((pid, etype, payload),) = book.auto_close("not_deliberated")
    assert (pid, etype, payload["reason_code"]) == ("a", "ProposalNotDeliberated", "tidak-dibahas")
    assert book.undecided() == [] and book.forwarded() == ["b"]
    forward = _held()
    assert [e[1] for e in forward.auto_close("forward")] == ["ProposalAccepted"] * 2
    assert forward.closing_summary() == {"forwarded": ["a", "b"], "accepted_total": 150, "held": 2}
    forward.entries["b"].details["rank"] = 1
    assert forward.ranked() == ["b", "a"]
    assert forward.forwarded_rows() == [
        ("a", 100, "dinas-pupr", "musrenbang"),
        ("b", 50, "dinas-pupr", "musrenbang"),
    ]


def test_a_profile_from_json_round_trips_its_catalogue() -> None:
    entries = [{"code": "1.03.10.2.01.0055", "name": "Rehabilitasi Jalan"}]
    parsed = parse_profile({"opds": OPDS, "sub_kegiatan": entries, "nomenclature": "milik-kota"})
    assert parsed.nomenclature == "milik-kota"
    assert parsed.sub_kegiatan == {"1.03.10.2.01.0055": "Rehabilitasi Jalan"}
    with pytest.raises(ProfileError, match="given twice"):
        parse_profile({"opds": OPDS, "sub_kegiatan": entries * 2})


@pytest.mark.parametrize(
    ("profile", "says"),
    [
        ({"opds": [{**OPDS[0], "slug": "dinas-pu\n"}]}, "must be a slug"),
        ({"opds": [{**OPDS[0], "bidang": ["jalan\n"]}]}, "must be a slug"),
        ({"opds": [{**OPDS[0], "urusan": ["1.3"]}]}, "code prefix"),
        (
            {
                "opds": OPDS,
                "stages": [{"slug": "a1", "name": "A", "level": [], "chaired_by": "L"}] * 2,
            },
            "level must be one of",
        ),
        ({"opds": OPDS, "calendar": {"kelurahan": "04-31"}}, "not a day of every year"),
        ({"opds": OPDS, "calendar": {"kelurahan": "02-29"}}, "not a day of every year"),
        ({"opds": OPDS, "calendar": {"kelurahan": "01-31\n"}}, "MM-DD"),
    ],
)
def test_hostile_profiles_are_refused_with_a_reason(profile: dict[str, Any], says: str) -> None:
    with pytest.raises(ProfileError, match=says):
        resolve_profile("13.72", profile)


def test_a_calendar_given_replaces_only_its_own_stages() -> None:
    own = resolve_profile("13.72", {"opds": OPDS, "calendar": {"kelurahan": "02-14"}})
    assert own.calendar["kelurahan"] == (2, 14)
    assert own.calendar["kota"] == default_profile().calendar["kota"]


def test_a_template_keeps_a_region_without_pokir_without_pokir() -> None:
    inp = cycle_input(
        CyclePlan(
            region="13.72", year=2028, template="sipd", profile={"opds": OPDS, "pokir_stage": None}
        )
    )
    assert inp.pokir_stage is None and "validasi-bappeda" in inp.stages


def test_two_forums_may_not_share_an_id() -> None:
    stages = [
        {"slug": "rembuk", "name": "Rembuk", "level": "kelurahan", "chaired_by": "Lurah"},
        {"slug": "forum", "name": "Forum", "level": "opd", "chaired_by": "Kepala OPD"},
        {"slug": "forum-pd", "name": "Forum PD", "level": "opd", "chaired_by": "Kepala OPD"},
        {"slug": "kota", "name": "Kota", "level": "city", "chaired_by": "Wali Kota"},
    ]
    opds = [
        {"slug": "pd-xy", "name": "Dinas A", "bidang": ["jalan"]},
        {"slug": "x1", "name": "Dinas B", "bidang": ["kesehatan"]},
        {"slug": "xy", "name": "Dinas C", "bidang": ["sosial"]},
    ]
    days = {"rembuk": "01-10", "forum": "02-10", "forum-pd": "03-10", "kota": "04-10"}
    plan = CyclePlan(
        region="13.72", year=2028, profile={"opds": opds, "stages": stages, "calendar": days}
    )
    with pytest.raises(ProfileError, match="same id"):
        cycle_input(plan)


def test_each_forum_pd_gets_the_sub_kegiatan_of_its_urusan() -> None:
    tangerang = region_profile("36.71")
    pupr = next(o for o in tangerang.opds if o.slug == "dinas-pupr")
    health = next(o for o in tangerang.opds if o.slug == "dinas-kesehatan")
    assert pupr.urusan == ("1.03",) and set(pupr.assigns(tangerang.sub_kegiatan))
    assert all(c.startswith("1.03.") for c in pupr.assigns(tangerang.sub_kegiatan))
    assert "1.03.10.2.01.0055" not in health.assigns(tangerang.sub_kegiatan)
    # every shipped OPD has something to assign, but DP3AP2KB: the shipped part of the TA
    # 2027 nomenclature holds none of urusan 2.08 (renamed there; README)
    for region in ("36.71", "36.74", "13.72"):
        profile = region_profile(region)
        empty = {o.slug for o in profile.opds if not o.assigns(profile.sub_kegiatan)}
        assert empty == {"dp3ap2kb"}, region


def test_a_nomenclature_too_large_to_carry_is_refused() -> None:
    huge = [
        {"code": f"1.03.10.2.{n // 9000 + 1:02d}.{n % 9000 + 1:04d}", "name": "x" * 400}
        for n in range(4000)
    ]
    many = [{"slug": f"dinas-{n}", "name": f"Dinas {n}", "bidang": [f"b{n}"]} for n in range(8)]
    with pytest.raises(ProfileError, match="too large"):
        cycle_input(
            CyclePlan(region="13.72", year=2028, profile={"opds": many, "sub_kegiatan": huge})
        )


def test_cycles_opened_before_profiles_fold_as_they_did() -> None:
    """Their CycleOpened carried the region's name, which their read model never kept: the
    fold must not start keeping it now, or an intact log would fail verification."""
    old = {"cycle_id": "13.72-2027", "region": "13.72", "name": "KOTA SOLOK", "stages": []}
    assert "name" not in evolve_cycle(None, "CycleOpened", old)
    new = evolve_cycle(None, "CycleOpened", {**old, "profile": {"source": "default"}})
    assert new["name"] == "KOTA SOLOK"
