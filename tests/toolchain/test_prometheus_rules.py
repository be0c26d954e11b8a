"""deploy/prometheus's alerting rules: valid, unit-tested with ``promtool test rules``
(Debian's ``prometheus`` package; CI installs it), and each alert has its runbook entry."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.ci import missing, schema_dependency

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "genres.rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "genres.rules.test.yml"
RUNBOOK = ROOT / "docs" / "operating" / "alerts.md"

yaml = schema_dependency("yaml")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        missing("promtool is not installed (Debian: apt-get install prometheus)")
    return subprocess.run(
        [tool, *args], capture_output=True, text=True, timeout=60, check=False, cwd=RULES.parent
    )


def alerts() -> list[dict[str, object]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


def test_the_rules_are_valid() -> None:
    done = promtool("check", "rules", RULES.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in done.stdout


def test_the_rules_pass_their_unit_tests() -> None:
    done = promtool("test", "rules", RULE_TESTS.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_is_tested() -> None:
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text(encoding="utf-8")))
    assert tested == {str(rule["alert"]) for rule in alerts()}


@pytest.mark.parametrize("rule", alerts(), ids=lambda rule: str(rule["alert"]))
def test_every_alert_has_a_runbook_entry(rule: dict[str, object]) -> None:
    name = str(rule["alert"])
    annotations = rule["annotations"]
    assert isinstance(annotations, dict)
    assert annotations["runbook"] == f"docs/operating/alerts.md#{name.lower()}"
    headings = re.findall(r"^## (\w+)$", RUNBOOK.read_text(encoding="utf-8"), re.M)
    assert name in headings
    assert isinstance(rule.get("labels"), dict)
    assert rule["labels"]["severity"] in ("page", "warning")  # type: ignore[index]
