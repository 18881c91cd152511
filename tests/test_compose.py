"""docker-compose.yml is valid Compose and wires every service the app needs by name.
(No Docker engine runs here, so the file is checked, not run.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT.parent / "shared" / "data" / "compose-spec.json"


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_the_file_follows_the_compose_specification() -> None:
    schema = json.loads(SPEC.read_text())
    jsonschema.validate(_compose(), schema)


def test_every_service_the_app_needs_is_there_and_wired_by_name() -> None:
    services = _compose()["services"]
    assert {
        "postgres",
        "temporal-schema",
        "temporal",
        "temporal-namespace",
        "temporal-ui",
        "migrate",
        "api",
        "worker",
    } <= set(services)
    for name in ("api", "worker", "migrate"):
        env = services[name]["environment"]
        assert "@postgres:5432/" in env["MUSRENBANG_DATABASE_URL"]
        assert env["MUSRENBANG_TEMPORAL_ADDRESS"] == "temporal:7233"
        assert env["MUSRENBANG_ENVIRONMENT"] == "production"
    assert services["temporal"]["environment"]["POSTGRES_SEEDS"] == "postgres"
    # only the workers hold the key that signs the log's checkpoints
    assert "MUSRENBANG_LOG_SIGNING_KEY" in services["worker"]["environment"]
    assert "MUSRENBANG_LOG_SIGNING_KEY" not in services["api"]["environment"]
    assert services["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert services["api"]["command"] == ["api"] and services["worker"]["command"] == ["worker"]
    assert services["migrate"]["build"] == "." and (ROOT / "Dockerfile").exists()


def test_start_up_order_waits_for_health_and_set_up() -> None:
    services = _compose()["services"]

    def after(name: str) -> dict[str, str]:
        return {dep: cond["condition"] for dep, cond in services[name]["depends_on"].items()}

    assert after("temporal-schema") == {"postgres": "service_healthy"}
    assert after("temporal") == {"temporal-schema": "service_completed_successfully"}
    assert after("temporal-namespace") == {"temporal": "service_healthy"}
    assert after("migrate") == {"postgres": "service_healthy"}
    for app in ("api", "worker"):
        assert after(app) == {
            "migrate": "service_completed_successfully",
            "temporal-namespace": "service_completed_successfully",
        }
    for name in ("postgres", "temporal", "api"):
        assert services[name]["healthcheck"]["test"]


def test_the_image_runs_the_cli() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["musrenbang"]' in dockerfile
    assert "uv sync --frozen --no-dev" in dockerfile
    assert "COPY migrations" in dockerfile


def test_the_set_up_registers_every_search_attribute_the_workflows_set() -> None:
    from musrenbang.workflows.search import KEYS

    script = _compose()["services"]["temporal-namespace"]["command"][0]
    for key in KEYS:
        assert f"{key.name}:{key.indexed_value_type.name.title()}" in script
