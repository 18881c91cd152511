"""The reaper stops only what is what it was told of: a pid file whose pid now belongs to
another program is not PostgreSQL, and a server other live processes hold stays up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from musrenbang.reaper import others_holding, postmaster_of


def test_a_reused_pid_is_not_taken_for_the_server(tmp_path: Path) -> None:
    (tmp_path / "postmaster.pid").write_text(f"{os.getpid()}\n{tmp_path}\n")
    assert postmaster_of(tmp_path) is None, "this test's python is not postgres"
    (tmp_path / "postmaster.pid").write_text("not a pid\n")
    assert postmaster_of(tmp_path) is None
    assert postmaster_of(tmp_path / "missing") is None


def test_handles_of_the_dead_are_dropped_and_the_living_keep_the_server(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    handles = tmp_path / ".handle_pids.json"
    handles.write_text(json.dumps([dead_pid, 4242424, os.getpid()]))
    assert others_holding(tmp_path, gone=4242424) == [os.getpid()]
    assert json.loads(handles.read_text()) == [os.getpid()]
    assert others_holding(tmp_path, gone=os.getpid()) == []
