"""``docs/interface.md`` is the contract: its settings and commands are the code's, both ways."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from genres.cli import build_parser
from genres.config import Settings
from genres_contracts import FailureKind

DOC = Path(__file__).parents[2] / "docs" / "interface.md"


def _section(title: str) -> str:
    text = DOC.read_text()
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def _first_cells(section: str) -> list[str]:
    """The first cell of each row of the section's tables (header and rule rows left out)."""
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    cells = [re.split(r"(?<!\\)\|", row)[1].strip() for row in rows]
    return [cell for cell in cells if cell.startswith("`")]


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> set[str]:
    """Every command of the parser, sub-commands as their whole path (``dev up``)."""
    names = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                names |= _commands(sub, f"{prefix}{name} ") or {f"{prefix}{name}"}
    return names


def test_the_settings_listed_are_the_settings_read() -> None:
    listed = {
        name
        for cell in _first_cells(_section("Configuration"))
        for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)
    }
    # OpenTelemetry's standard variables are read where tracing starts, not through Settings.
    listed = {name for name in listed if not name.startswith("OTEL_")}
    read = {field.upper() for field in Settings.model_fields}
    assert listed - read == set(), "listed in docs/interface.md, unknown to Settings"
    assert read - listed == set(), "read by Settings, missing from docs/interface.md"


def test_the_commands_listed_are_the_commands_there_are() -> None:
    listed = set()
    for cell in _first_cells(_section("Command line")):
        words = cell.strip("`").split()
        assert words[0] == "genres", cell
        # `genres dev up`, `genres run ROLE`: the command is the lower-case words before the
        # first argument or option.
        path = []
        for word in words[1:]:
            if not re.fullmatch(r"[a-z]+", word):
                break
            path.append(word)
        listed.add(" ".join(path))
    there = _commands(build_parser())
    assert listed - there == set(), "listed in docs/interface.md, not a command"
    assert there - listed == set(), "a command missing from docs/interface.md"


def test_nothing_in_the_repository_links_outside_it() -> None:
    root = DOC.parents[1]
    for path in [root / "README.md", root / "deploy" / "README.md", DOC]:
        assert "../shared" not in path.read_text(), path
        assert "shared/INTERFACE.md" not in path.read_text(), path


def test_the_failure_kinds_listed_are_the_contracts_kinds() -> None:
    section = _section("Topics")
    after = section[section.index("### Failure kinds") :]
    table = after[after.index("\n|") :].split("\n\n")[0]
    listed = {cell.strip("`") for cell in _first_cells(table)}
    assert listed == {kind.value for kind in FailureKind}
