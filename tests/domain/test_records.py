"""Read-model reducers: each state is a new value, and nothing earlier changes after."""

from __future__ import annotations

import copy
from typing import Any

from musrenbang.domain.catalogue import EventType as ET
from musrenbang.domain.records import evolve_cycle, evolve_forum, evolve_proposal

PROPOSAL_EVENTS: list[tuple[str, dict[str, Any]]] = [
    (
        ET.PROPOSAL_SUBMITTED,
        {
            "proposal_id": "p1",
            "cycle_id": "36.71-2027",
            "stage": "kelurahan",
            "unit": "36.71.01.1001",
            "details": {"masalah": "Drainase", "cost": 75_000_000, "lokasi": {"rt": "004"}},
        },
    ),
    (ET.PROPOSAL_PRIORITIZED, {"rank": 1, "scores": {"urgensi": 4}}),
    (ET.PROPOSAL_REVISED, {"changes": {"cost": 60_000_000}, "sub_kegiatan_name": "Drainase"}),
    (ET.PROPOSAL_ASSIGNED, {"opd_akhir": "DPUPR", "sub_kegiatan": "1.03.10.2.01"}),
    (ET.PROPOSAL_MERGED, {"absorbed": "p2"}),
    (ET.PROPOSAL_MERGED, {"absorbed": "p3"}),
    (ET.PROPOSAL_FORWARDED, {"to_stage": "kecamatan", "to_unit": "36.71.01"}),
    (ET.PROPOSAL_FORWARDED, {"to_stage": "kota", "to_unit": "36.71"}),
    (ET.PROPOSAL_REJECTED, {"reason_code": "bukan-kewenangan", "reason": "Kewenangan provinsi"}),
]


def _fold_keeping_every_state(
    evolve: Any, events: list[tuple[str, dict[str, Any]]]
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Each state with a deep copy taken when it was made."""
    kept: list[tuple[dict[str, Any], dict[str, Any]]] = []
    state = None
    for event_type, payload in events:
        state = evolve(state, event_type, payload)
        kept.append((state, copy.deepcopy(state)))
    return kept


def test_no_state_or_payload_changes_after_it_is_made() -> None:
    payloads = copy.deepcopy([p for _, p in PROPOSAL_EVENTS])
    kept = _fold_keeping_every_state(evolve_proposal, PROPOSAL_EVENTS)
    for state, snapshot in kept:
        assert state == snapshot
    assert [p for _, p in PROPOSAL_EVENTS] == payloads
    final = kept[-1][0]
    assert final["details"]["cost"] == 60_000_000
    assert final["details"]["opd_akhir"] == "DPUPR"
    assert final["merged_from"] == ["p2", "p3"]
    assert [p["stage"] for p in final["path"]] == ["kelurahan", "kecamatan"]
    assert (
        kept[2][0]["details"]["cost"] == 60_000_000 and kept[1][0]["details"]["cost"] == 75_000_000
    )
    assert "merged_from" not in kept[3][0]


def test_forum_and_cycle_states_stay_as_they_were_made() -> None:
    cycle = _fold_keeping_every_state(
        evolve_cycle,
        [
            (ET.CYCLE_OPENED, {"cycle_id": "c", "stages": ["kelurahan", "kecamatan"]}),
            (ET.STAGE_OPENED, {"stage": "kelurahan"}),
            (ET.STAGE_OPENED, {"stage": "kecamatan"}),
        ],
    )
    forum = _fold_keeping_every_state(
        evolve_forum,
        [
            (ET.FORUM_OPENED, {"forum_id": "f", "deadline": "2027-01-31T00:00:00.000000Z"}),
            (ET.DEADLINE_MISSED, {}),
            (ET.DEADLINE_EXTENDED, {"new_deadline": "2027-02-07T00:00:00.000000Z"}),
        ],
    )
    for state, snapshot in cycle + forum:
        assert state == snapshot
    assert cycle[-1][0]["opened_stages"] == ["kelurahan", "kecamatan"]
    assert cycle[1][0]["opened_stages"] == ["kelurahan"]
    assert [s["status"] for s, _ in forum] == ["open", "overdue", "open"]
