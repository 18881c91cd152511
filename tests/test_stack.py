"""End to end: `musrenbang up` as a newcomer runs it, a short demo through HTTP, Ctrl-C,
`up` again: the data, the cycle's progress and the log's integrity survive."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from musrenbang.api.auth import issue_token
from musrenbang.config import Settings
from musrenbang.events import tlog


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "MUSRENBANG_HOME": str(home),
        "MUSRENBANG_API_PORT": str(_free_port()),
        "MUSRENBANG_TEMPORAL_PORT": str(_free_port()),
        "MUSRENBANG_TEMPORAL_UI_PORT": str(_free_port()),
        "MUSRENBANG_LOG_LEVEL": "WARNING",
    }


def _up(env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    # Output goes to a file, not a pipe: a pipe nobody reads any more would fill up and
    # block the stack when it logs on the way down.
    proc = subprocess.Popen(
        [sys.executable, "-m", "musrenbang.cli", "up"],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        lines = log.read_text().splitlines()
        if any("Ctrl-C stops everything" in line for line in lines):
            assert any("API:" in x for x in lines) and any("PostgreSQL:" in x for x in lines)
            assert any("Temporal UI:" in x for x in lines)
            _wait_healthy(f"http://127.0.0.1:{env['MUSRENBANG_API_PORT']}/api/v1/health")
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("musrenbang up did not start:\n" + log.read_text())


def _wait_healthy(url: str) -> None:
    for _ in range(300):
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


def _down(proc: subprocess.Popen[str], log: Path) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("musrenbang up did not stop:\n" + log.read_text()) from None
    assert code == 0, log.read_text()


def test_up_demo_restart_resumes(tmp_path: Path) -> None:
    env = _env(tmp_path / "home")
    api = f"http://127.0.0.1:{env['MUSRENBANG_API_PORT']}/api/v1"
    auditor = {"Authorization": f"Bearer {issue_token(Settings(), 'inspektorat', 'auditor')}"}
    proc = _up(env, tmp_path / "up.log")
    try:
        demo = subprocess.run(
            [sys.executable, "-m", "musrenbang.cli", "demo", "--kelurahan", "2"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert demo.returncode == 0, demo.stdout + demo.stderr
        cycle = demo.stdout.split("Cycle ", 1)[1].split(":", 1)[0].strip()
        before = _snapshot(api, auditor, cycle)
        assert before["first"] == "closed" and before["late"] in ("open", "overdue")
        assert before["verify"]["ok"] and before["verify"]["checked"] > 20
        vkey = _verifier_key(tmp_path / "up.log")
        key_file = tmp_path / "home" / "log-signing.key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        note = httpx.get(f"{api}/logs/36.71/checkpoint", headers=auditor, timeout=30).text
        assert tlog.parse_checkpoint(tlog.verify_note(note, [vkey])).size > 20
        assert _watch(env, api, auditor, vkey, tmp_path / "witness").returncode == 0
    finally:
        _down(proc, tmp_path / "up.log")

    proc = _up(env, tmp_path / "up.log")
    try:
        after = _snapshot(api, auditor, cycle)
        assert after["first"] == "closed" and after["cycle"]["status"] == "open"
        assert after["verify"]["ok"] and after["verify"]["checked"] >= before["verify"]["checked"]
        assert after["events"][: len(before["events"])] == before["events"]
        lurah = {
            "Authorization": "Bearer "
            + issue_token(Settings(), "lurah", "coordinator", "36.71.01.1003")
        }
        res = httpx.post(
            f"{api}/cycles/{cycle}/forums/kelurahan/36.71.01.1003/proposals",
            headers=lurah,
            json={
                "proposals": [
                    {
                        "masalah": "Jalan rusak",
                        "gagasan": "Perbaikan",
                        "cost": 50_000_000,
                        "bidang": "jalan",
                        "volume": 10,
                        "satuan": "m",
                    }
                ]
            },
            timeout=60,
        )
        assert res.status_code == 200, res.text  # the cycle carries on where it was
        assert _verifier_key(tmp_path / "up.log") == vkey  # the same key after a restart
        watched = _watch(env, api, auditor, vkey, tmp_path / "witness")
        assert watched.returncode == 0, watched.stdout + watched.stderr
    finally:
        _down(proc, tmp_path / "up.log")


def _verifier_key(log: Path) -> str:
    line = next(x for x in log.read_text().splitlines() if x.startswith("Log verifier key"))
    return line.rsplit(" ", 1)[1]


def _watch(
    env: dict[str, str], api: str, auditor: dict[str, str], vkey: str, state: Path
) -> subprocess.CompletedProcess[str]:
    token = auditor["Authorization"].removeprefix("Bearer ")
    return subprocess.run(  # noqa: S603 - the test's own arguments
        [
            sys.executable,
            "-m",
            "musrenbang.cli",
            "audit",
            "watch",
            "--state",
            str(state),
            "--key",
            vkey,
            "--api",
            api,
            "--token",
            token,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _snapshot(api: str, auth: dict[str, str], cycle: str) -> dict[str, Any]:
    def get(path: str, **params: Any) -> Any:
        res = httpx.get(f"{api}{path}", headers=auth, params=params, timeout=60)
        assert res.status_code == 200, res.text
        return res.json()

    return {
        "cycle": get(f"/cycles/{cycle}"),
        "first": get(f"/cycles/{cycle}/forums/kelurahan/36.71.01.1001")["status"],
        "late": get(f"/cycles/{cycle}/forums/kelurahan/36.71.01.1002")["status"],
        "verify": get("/audit/verify"),
        "events": [
            (e["seq"], e["hash"]) for e in get("/events", cycle=cycle, limit=1000)["events"]
        ],
    }


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _everything_gone(env: dict[str, str], home: Path, seconds: float) -> float:
    """Seconds until no port of the stack is held and PostgreSQL has stopped."""
    ports = [int(env[k]) for k in ("MUSRENBANG_API_PORT", "MUSRENBANG_TEMPORAL_PORT")]
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        pg_running = (home / "pgdata" / "postmaster.pid").exists()
        if all(_port_free(p) for p in ports) and not pg_running:
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(
        f"still running after {seconds} s: ports {[p for p in ports if not _port_free(p)]},"
        f" postgres {(home / 'pgdata' / 'postmaster.pid').exists()}"
    )


def test_ctrl_c_stops_everything_promptly_even_with_a_client_holding_on(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = _env(home)
    proc = _up(env, tmp_path / "up.log")
    # A client that sends half a request and waits: the API must not wait for it.
    stuck = socket.create_connection(("127.0.0.1", int(env["MUSRENBANG_API_PORT"])))
    stuck.sendall(b"POST /api/v1/cycles HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("up did not stop within 15 s") from None
    finally:
        stuck.close()
    _everything_gone(env, home, 15 - (time.monotonic() - started))


def test_killing_up_leaves_no_server_behind(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = _env(home)
    proc = _up(env, tmp_path / "up.log")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    took = _everything_gone(env, home, 15)
    assert took < 15
    again = _up(env, tmp_path / "up.log")  # and the next `up` starts on the same ports
    _down(again, tmp_path / "up.log")
