""".github/workflows/release.yml: builds and checks on every change, publishes only on a
``contracts-v*`` tag and only what was checked; the check is ``make dist-check``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.support.ci import schema_dependency

yaml = schema_dependency("yaml")

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"


def workflow() -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    return loaded


def runs(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_the_check_runs_on_every_change_and_the_tag() -> None:
    triggers = workflow()[True]  # YAML 1.1 reads the key `on` as true
    assert triggers["push"]["tags"] == ["contracts-v*"]
    assert "pull_request" in triggers
    check = workflow()["jobs"]["build-and-check"]
    assert "if" not in check
    assert "make dist-check" in runs(check)


def test_only_a_tag_publishes_and_only_the_checked_files() -> None:
    publish = workflow()["jobs"]["publish"]
    assert publish["needs"] == "build-and-check"
    assert publish["if"] == "startsWith(github.ref, 'refs/tags/contracts-v')"
    assert publish["permissions"]["id-token"] == "write"
    uses = [step.get("uses", "") for step in publish["steps"]]
    assert any(u.startswith("actions/download-artifact@") for u in uses)
    assert "uv publish" in runs(publish)
    assert "uv build" not in runs(publish)  # nothing rebuilt after the check


def test_make_dist_check_does_what_the_workflow_promises() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^dist-check: dist\n((?:\t.*\n?)+)", makefile, re.M)
    assert recipe is not None
    steps = recipe.group(1)
    assert "$(TWINE) check --strict dist/*" in steps
    assert re.search(r"^TWINE := uvx twine==[\d.]+$", makefile, re.M)
    assert "scripts/contract_schemas.py" in steps
    assert "GENRES_CONTRACTS_DIST=dist" in steps
    assert "tests/integration/test_contracts_install.py" in steps
    assert re.search(r"^dist:\n\trm -rf dist\n\tuv build --out-dir dist contracts$", makefile, re.M)
