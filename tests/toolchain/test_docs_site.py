"""The documentation site builds with no warning, and its reference pages are the code's.

`mkdocs build --strict` fails on a broken link or anchor, a page left out of the nav, a link to
a repository file that does not exist, and a setting, failure kind or reply error kind the
reference cannot explain (tools/docs/hooks.py). About five seconds.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import typing
from pathlib import Path

from genres.cli import build_parser
from genres.config import Settings
from genres_contracts.events import FailureKind
from genres_contracts.requests import ReplyError
from tests.unit.test_interface_doc import _commands

ROOT = Path(__file__).resolve().parents[2]


def _build(site: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=100,
    )
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    return result.stderr


def _text(page: Path) -> str:
    return re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8"))


def test_the_site_builds_strict_and_its_reference_is_the_codes(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _build(site)

    settings = _text(site / "reference" / "settings" / "index.html")
    for field in Settings.model_fields:
        assert f"{field.upper()}" in settings, field

    commands = _text(site / "reference" / "commands" / "index.html")
    for command in _commands(build_parser()):
        assert f"usage: genres {command}" in commands, command

    metrics = _text(site / "reference" / "metrics" / "index.html")
    # One of each source: a labelled counter, the window's collector, the stall collectors,
    # FastStream's middleware.
    for name in (
        "genres_classifications_total",
        "genres_classifier_records_in_flight",
        "genres_partition_stalled",
        "genres_group_stalled",
        "faststream_received_messages_total",
    ):
        assert name in metrics

    failures = _text(site / "reference" / "failures" / "index.html")
    for kind in FailureKind:
        assert kind.value in failures, kind
    for reply_kind in typing.get_args(ReplyError.model_fields["kind"].annotation):
        assert reply_kind in failures, reply_kind

    assert (site / "integrating" / "asyncapi" / "index.html").exists()
    assert (site / "operating" / "deploy" / "index.html").exists()


def test_the_readme_is_a_front_door() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 150
    assert "```mermaid\nflowchart" in readme
    assert "uv run --no-dev --extra embedded genres demo" in readme
    assert "uv run pytest " in readme
    for link in re.findall(r"\]\(((?:docs|deploy|contracts)/[^)#]*)", readme):
        assert (ROOT / link).exists(), link
