"""A short crash drill (bench/chaos.py): one SIGKILL each of the worker, the API, the
Temporal dev server and PostgreSQL while a 31-kelurahan cycle is driven through the API.
Nothing acknowledged is lost or doubled, the log verifies, the read models equal a
rebuild, and the RKPD is adopted."""

from __future__ import annotations

from pathlib import Path

from bench.chaos import drill


async def test_a_cycle_survives_one_kill_of_each_component(tmp_path: Path) -> None:
    figures = await drill(tmp_path / "drill", kills=4, seed=11, log=lambda *_: None)
    assert figures["kills"] == {"worker": 1, "api": 1, "temporal": 1, "postgres": 1}, figures
    assert figures["acknowledged_events"] > 600
    assert (figures["events_lost"], figures["events_duplicated"], figures["seq_gaps"]) == (
        0,
        0,
        0,
    ), figures
    assert figures["log_intact"] and figures["read_models_equal_rebuild"], figures
    assert figures["cycle_adopted"], figures
