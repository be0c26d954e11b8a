"""The AsyncAPI CLI accepts the checked-in document (no errors, no warnings).

The CLI is a Node tool pinned in ``tools/asyncapi`` (install: ``npm ci --prefix tools/asyncapi``).
Without it the tests skip locally and fail in CI (``CI=true``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.ci import missing

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "docs" / "asyncapi.json"
CLI = ROOT / "tools" / "asyncapi" / "node_modules" / ".bin" / "asyncapi"
INSTALL = "npm ci --prefix tools/asyncapi"


@pytest.fixture(scope="module")
def cli() -> Path:
    if CLI.exists() and shutil.which("node") is not None:
        return CLI
    message = f"the AsyncAPI CLI is not installed ({CLI.relative_to(ROOT)}); run: {INSTALL}"
    missing(message)


def _validate(cli: Path, document: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # Analytics off and its file out of $HOME: no network, no writes outside tmp_path.
    metrics = tmp_path / "asyncapi-analytics.json"
    metrics.write_text(
        json.dumps({"analyticsEnabled": "false", "infoMessageShown": "true", "userID": "ci"}),
        encoding="utf-8",
    )
    env = {**os.environ, "ASYNCAPI_METRICS_CONFIG_PATH": str(metrics)}
    return subprocess.run(
        # Warnings fail too; "info" (3.1.0 exists, FastStream writes 3.0.0) does not.
        [str(cli), "validate", str(document), "--fail-severity", "warn"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_checked_in_document_validates(cli: Path, tmp_path: Path) -> None:
    result = _validate(cli, DOCUMENT, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is valid" in result.stdout, result.stdout + result.stderr


def test_the_validator_rejects_a_broken_document(cli: Path, tmp_path: Path) -> None:
    """The check can fail: a dangling reference is an error."""
    document = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    operation = next(iter(document["operations"].values()))
    operation["channel"]["$ref"] = "#/channels/does-not-exist"
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(document), encoding="utf-8")
    result = _validate(cli, broken, tmp_path)
    assert result.returncode != 0, result.stdout + result.stderr
