"""The command table: each command's parsed arguments reach its function under the right names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from genres.cli import COMMANDS, build_parser, main
from genres.cli import commands as bodies

CALLS: list[tuple[list[str], str, tuple[Any, ...], dict[str, Any]]] = [
    (["run", "all"], "run", ("all",), {}),
    (["migrate"], "migrate", (), {}),
    (
        ["grants", "app", "--role", "projector", "--schema", "s"],
        "grants",
        ("app",),
        {"roles": ["projector"], "schema": "s"},
    ),
    (["classify", "a.mp3", "b", "--json"], "classify", (["a.mp3", "b"],), {"as_json": True}),
    (
        ["recommend", "7", "--limit", "3", "--wait-ms", "20", "--timeout", "2"],
        "recommend",
        (7,),
        {"limit": 3, "wait_ms": 20, "timeout": 2.0, "as_json": False},
    ),
    (
        ["backfill", "--dry-run", "--limit", "4", "--concurrency", "2", "--other-model"],
        "backfill",
        (),
        {
            "dry_run": True,
            "limit": 4,
            "concurrency": 2,
            "wait": False,
            "timeout": 600.0,
            "other_model": True,
        },
    ),
    (
        ["learn", "--from-database", "--out", "h.npz", "--teacher", "tags", "--soft"],
        "learn",
        (None,),
        {
            "from_database": True,
            "out": Path("h.npz"),
            "teacher": "tags",
            "soft": True,
            "min_tag_tracks": 20,
            "min_examples": 5,
            "target_agreement": 0.9,
            "standardise": False,
        },
    ),
    (["demo", "song.mp3"], "demo", (Path("song.mp3"),), {}),
    (["demo"], "demo", (None,), {}),
    (["dev", "up", "--no-sample"], "dev_up", (), {"sample": False}),
    (["schema", "out"], "schema", (Path("out"),), {}),
    (
        ["acls", "--principal", "User:g", "--role", "recommend", "--no-creates-topics"],
        "acls",
        ("User:g",),
        {
            "roles": ["recommend"],
            "form": "kafka-acls",
            "creates_topics": False,
            "cluster": "my-cluster",
        },
    ),
    (
        ["topics", "--format", "strimzi", "--replicas", "1"],
        "topics",
        ("strimzi",),
        {"replicas": 1, "cluster": "my-cluster"},
    ),
]


@pytest.mark.parametrize(("argv", "function", "args", "kwargs"), CALLS, ids=lambda c: str(c))
def test_each_command_calls_its_function_with_its_arguments(
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    function: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr(bodies, function, lambda *a, **k: calls.append((a, k)))
    main(argv)
    assert calls == [(args, kwargs)]


def test_every_command_in_the_table_is_called_by_a_case_above() -> None:
    assert {argv[0] for argv, *_ in CALLS} == {command.name for command in COMMANDS}


def test_the_table_is_the_parsers_commands_in_its_order() -> None:
    parser = build_parser()
    [subparsers] = [a for a in parser._actions if a.dest == "command"]
    assert list(subparsers.choices) == [command.name for command in COMMANDS]


def test_no_command_prints_the_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([])
    assert exited.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


def test_ctrl_c_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(bodies, "migrate", interrupted)
    with pytest.raises(SystemExit) as exited:
        main(["migrate"])
    assert exited.value.code == 130
