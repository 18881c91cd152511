"""The pure domain: no fixtures, no I/O beyond the reference data package."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from musrenbang.domain.access import Actor, escalation_target, may_decide, may_extend
from musrenbang.domain.calendar import add_working_days, end_of_day, roll_forward
from musrenbang.domain.decisions import Decision, Entry, ForumBook, allowed_kinds
from musrenbang.domain.regions import UnknownRegion, load_region
from musrenbang.domain.stages import Level, template
from musrenbang.planning import CyclePlan, cycle_input, holidays_for

HOLIDAYS_2027 = holidays_for([2027])


def test_kota_tangerang_has_its_real_kecamatan_and_kelurahan() -> None:
    region = load_region("36.71")
    assert region.name == "Kota Tangerang"
    assert len(region.kecamatan) == 13
    assert len(region.kelurahan_codes()) == 104
    assert region.kecamatan[0].kelurahan[0] == ("36.71.01.1001", "Sukarasa")


def test_a_province_or_unknown_code_is_refused() -> None:
    with pytest.raises(UnknownRegion, match="not a kota/kabupaten"):
        load_region("36")
    with pytest.raises(UnknownRegion):
        load_region("99.99")


def test_templates_are_data() -> None:
    assert [s.slug for s in template("default")] == [
        "kelurahan",
        "kecamatan",
        "forum-pd",
        "kota",
        "rkpd",
    ]
    assert next(s.slug for s in template("tanpa-kelurahan")) == "kecamatan"
    sipd = [s.slug for s in template("sipd")]
    assert sipd[sipd.index("kelurahan") + 1] == "validasi-bappeda"
    with pytest.raises(ValueError, match="unknown stage template"):
        template("jakarta-lama")


def test_working_days_skip_weekends_holidays_and_cuti_bersama() -> None:
    # 2027-01-01 (Friday) is New Year; Isra Mikraj is on Tuesday 2027-01-05.
    assert roll_forward(date(2027, 1, 1), HOLIDAYS_2027) == date(2027, 1, 4)
    assert add_working_days(date(2027, 1, 4), 1, HOLIDAYS_2027) == date(2027, 1, 6)
    assert add_working_days(date(2027, 1, 6), -2, HOLIDAYS_2027) == date(2026, 12, 31)
    assert date(2027, 2, 5) in HOLIDAYS_2027  # cuti bersama Imlek
    assert end_of_day(date(2027, 1, 6)) == datetime(2027, 1, 6, 16, 59, tzinfo=UTC)


def test_cycle_deadlines_fall_on_working_days_in_stage_order() -> None:
    inp = cycle_input(CyclePlan(region="36.71", year=2028))
    assert inp.cycle_id == "36.71-2028" and len(inp.units["kelurahan"]) == 104
    days = [datetime.fromisoformat(inp.deadlines[s]) for s in inp.stages]
    assert days == sorted(days)
    assert all(d.astimezone(UTC).weekday() < 5 for d in days)
    assert datetime.fromisoformat(inp.pokir_deadline) < datetime.fromisoformat(
        inp.deadlines["kota"]
    )
    with pytest.raises(ValueError, match="order of the stages"):
        cycle_input(CyclePlan(region="36.71", year=2028, deadlines={"kecamatan": "2027-01-05"}))


LEVELS = {"kelurahan": Level.KELURAHAN, "forum-pd": Level.OPD, "kota": Level.CITY}


def _book(pagu: int | None = 300, stage: str = "kelurahan") -> ForumBook:
    book = ForumBook(stage, pagu, allowed_kinds(LEVELS.get(stage, Level.CITY), stage == "rkpd"))
    book.entries = {
        "a": Entry(100, "dinas-pupr"),
        "b": Entry(150, "dinas-pupr"),
        "c": Entry(120, None),
    }
    return book


def test_every_no_needs_a_reason() -> None:
    problems = _book().check(
        [Decision("a", "reject", reason_code="x"), Decision("b", "defer", reason=" ")], frozenset()
    )
    assert len(problems) == 2 and all("reason is required" in p for p in problems)
    assert "reason code" in _book().check([Decision("a", "reject", reason="dobel")], frozenset())[0]


def test_the_accepted_total_may_not_exceed_the_pagu() -> None:
    book = _book(pagu=300)
    over = book.check(
        [Decision("a", "accept"), Decision("b", "accept"), Decision("c", "accept")], frozenset()
    )
    assert over == ["the accepted total Rp370 would exceed the pagu indikatif Rp300"]
    fits = [
        Decision("a", "accept"),
        Decision("b", "accept"),
        Decision("c", "revise", reason="Harga turun", changes={"cost": 50}),
    ]
    assert book.check(fits, frozenset()) == []
    book.apply(fits)
    assert book.accepted_total() == 300


def test_revision_keeps_the_original_values_in_the_event() -> None:
    book = _book()
    book.entries["a"].details = {"volume": 120}
    [(_, etype, payload)] = book.apply(
        [Decision("a", "revise", changes={"cost": 90, "volume": 80})]
    )
    assert etype == "ProposalRevised"
    assert payload["original"] == {"cost": 100, "volume": 120}
    assert payload["changes"] == {"cost": 90, "volume": 80}


def test_merge_records_lineage_both_ways_and_is_final() -> None:
    book = _book()
    events = book.apply([Decision("c", "merge", into="a")])
    assert events == [
        ("c", "ProposalMerged", {"into": "a"}),
        ("a", "ProposalMerged", {"absorbed": "c"}),
    ]
    assert "already merged" in book.check([Decision("c", "accept")], frozenset())[0]
    assert "merge needs" in book.check([Decision("a", "merge", into="a")], frozenset())[0]


def test_stage_specific_decisions() -> None:
    assert "not a decision" in _book().check([Decision("a", "include")], frozenset())[0]
    pd = _book(stage="forum-pd")
    assert (
        pd.check(
            [Decision("a", "assign", opd_akhir="dinas-pupr", sub_kegiatan="1.03.10.2.01.0055")],
            frozenset({"dinas-pupr"}),
        )
        == []
    )
    assert "sub_kegiatan" in pd.check([Decision("a", "assign", sub_kegiatan="1.3")], frozenset())[0]
    rkpd = _book(stage="rkpd")
    assert "not a decision" in rkpd.check([Decision("a", "accept")], frozenset())[0]
    assert (
        "scores"
        in _book().check([Decision("a", "prioritize", rank=1, scores={"spm": 9})], frozenset())[0]
    )


def test_who_may_act() -> None:
    lurah = Actor("lurah", "coordinator", "36.71.01.1001")
    camat = Actor("camat", "coordinator", "36.71.01")
    auditor = Actor("bpk", "auditor", "36.71")
    kel = ("36.71.01.1001", "36.71")
    assert may_decide(lurah, Level.KELURAHAN, *kel, escalated_to=None)
    assert not may_decide(camat, Level.KELURAHAN, *kel, escalated_to=None)
    target = escalation_target(Level.KELURAHAN, "36.71.01.1001", "36.71")
    assert target == "36.71.01"
    assert may_decide(camat, Level.KELURAHAN, *kel, escalated_to=target)
    assert not may_decide(auditor, Level.KELURAHAN, *kel, escalated_to=target)
    assert may_extend(camat, Level.KELURAHAN, *kel) and not may_extend(lurah, Level.KELURAHAN, *kel)
    bappeda = Actor("bappeda", "coordinator", "36.71")
    assert may_decide(bappeda, Level.OPD, "dinas-pupr", "36.71", None)


def test_texts_the_log_cannot_hold_are_named_by_their_path() -> None:
    from musrenbang.domain.errors import Refused
    from musrenbang.domain.text import check_texts, first_bad_text, text_problem

    assert text_problem("Jalan rusak di RT 003\n\tRW 002") is None
    assert text_problem("Jalan\x00rusak") == "holds a NUL character"
    assert "surrogate" in (text_problem("a\udc80") or "")
    assert "U+001B" in (text_problem("\x1b[31m") or "")
    assert first_bad_text({"changes": {"gagasan": ["ok", "x\x00"]}}) == (
        "changes.gagasan[1]",
        "holds a NUL character",
    )
    deep: object = "x"
    for _ in range(20):
        deep = [deep]
    assert "deeper" in (first_bad_text(deep) or ("", ""))[1]
    try:
        check_texts({"tempat": "Aula\x07"}, "berita_acara")
    except Refused as exc:
        assert exc.kind == "Refused" and exc.detail.startswith("berita_acara.tempat ")
    else:
        raise AssertionError("a bell character was taken")


def test_a_book_restored_after_a_refused_append_is_as_it_was() -> None:
    from musrenbang.domain.decisions import Decision, Entry, ForumBook

    book = ForumBook("kelurahan", 500)
    book.entries = {"a": Entry(100, "dinas-pupr"), "b": Entry(200, "dinas-pupr")}
    decisions = [
        Decision("a", "revise", changes={"cost": 50, "masalah": "x"}),
        Decision("b", "merge", into="a"),
    ]
    saved = book.snapshot(decisions)
    book.apply(decisions)
    assert book.entries["a"].cost == 50 and book.entries["b"].outcome == "merge"
    book.restore(saved)
    assert book.entries["a"] == Entry(100, "dinas-pupr")
    assert book.entries["b"] == Entry(200, "dinas-pupr")


def test_a_stage_bappeda_chairs_is_bappedas_not_the_camats() -> None:
    camat = Actor("camat", "coordinator", "36.71.01")
    bappeda = Actor("bappeda", "coordinator", "36.71")
    args = (Level.KECAMATAN, "36.71.01", "36.71", None)
    assert may_decide(camat, *args) and not may_decide(camat, *args, bappeda_chairs=True)
    assert may_decide(bappeda, *args, bappeda_chairs=True)
