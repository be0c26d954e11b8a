"""The command line as a newcomer meets it (issue 15): help and mistakes answered before the
service is imported, one ``error:`` line per mistake, tracebacks only with ``--debug``."""

from __future__ import annotations

import atexit
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support.broker import KafkaTestBed
from tests.support.process import run_genres, run_together

HEAVY = ("pydantic", "rich", "aiokafka", "sqlalchemy", "genres.bootstrap", "typer")
"""What ``--help`` and a wrong argument must not import (the service, its frameworks)."""


_HELD: list[socket.socket] = []
atexit.register(lambda: [held.close() for held in _HELD])


def closed_port() -> int:
    """A port that refuses connections: bound here but never listening, and held to the end of
    the run, so that no server another worker starts meanwhile can take it."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    _HELD.append(probe)
    port: int = probe.getsockname()[1]
    return port


def imported(*args: str, env: dict[str, str]) -> set[str]:
    """The top-level packages a ``genres`` run imported (``-X importtime`` on stderr)."""
    result = run_genres(*args, env=env | {"PYTHONPROFILEIMPORTTIME": "1"})
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            names.add(name)
    return names


def assert_one_line(result: subprocess.CompletedProcess[str], code: int, *parts: str) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


def test_help_shows_flags_as_flags_and_imports_nothing_of_the_service() -> None:
    result = run_genres("--help", env={})
    assert result.returncode == 0
    for command in ("run", "migrate", "classify", "recommend", "backfill", "demo", "schema"):
        assert command in result.stdout
    recommend = run_genres("recommend", "--help", env={})
    assert recommend.returncode == 0
    assert "--timeout S" in recommend.stdout
    json_line = next(line for line in recommend.stdout.splitlines() if "--json" in line)
    assert "<bool>" not in json_line
    assert "bool" not in json_line.lower()
    loaded = imported("recommend", "--help", env={})
    assert "genres.cli" in loaded
    assert not [name for name in loaded if name.startswith(HEAVY)]


@pytest.mark.parametrize(
    ("args", "env", "code", "parts"),
    [
        (["janitor"], {}, 2, ["invalid choice: 'janitor'"]),
        (["run", "janitor"], {}, 2, ["invalid choice: 'janitor'", "classifier"]),
        (["recommend", "1", "--limit", "99"], {}, 2, ["--limit", "99"]),
        (["recommend", "one"], {}, 2, ["'one' is not a number"]),
        (["run", "all"], {}, 2, ["KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL are not set"]),
        (["migrate"], {}, 2, ["DATABASE_URL is not set"]),
        (["recommend", "1"], {}, 2, ["KAFKA_BOOTSTRAP_SERVERS is not set"]),
        (["backfill"], {}, 2, ["DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS are not set"]),
        (["backfill", "--dry-run"], {}, 2, ["DATABASE_URL is not set"]),
        (["classify", "/nonexistent/song.mp3"], {}, 1, ["/nonexistent/song.mp3: no such file"]),
        (["demo", "/nonexistent/song.mp3"], {}, 1, ["/nonexistent/song.mp3: no such file"]),
        (["classify", "ftp://cdn.test/a.mp3"], {}, 2, ["only http(s) URLs, files and folders"]),
    ],
)
def test_each_mistake_is_one_line_answered_before_importing_the_service(
    args: list[str], env: dict[str, str], code: int, parts: list[str]
) -> None:
    assert_one_line(run_genres(*args, env=env), code, *parts)
    loaded = imported(*args, env=env)
    assert not [name for name in loaded if name.startswith(HEAVY)], sorted(loaded)


def test_an_invalid_setting_is_one_line_naming_it_without_its_value() -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
        "DATABASE_URL": "postgresql://127.0.0.1:9/x",
        "CLASSIFIER_CONCURRENCY": "sekrit-many",
    }
    line = assert_one_line(run_genres("run", "all", env=env), 2, "CLASSIFIER_CONCURRENCY")
    assert "sekrit" not in line
    loaded = imported("run", "all", env=env)
    assert "genres.bootstrap" not in loaded
    assert "aiokafka" not in loaded


def test_a_database_that_refuses_or_hangs_is_named_without_its_password() -> None:
    closed = closed_port()
    refused = {"DATABASE_URL": f"postgresql://genres:hunter2@127.0.0.1:{closed}/genres"}
    # The kernel accepts the connection; nothing ever answers on it.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        hung = {"DATABASE_URL": f"postgresql://genres:hunter2@127.0.0.1:{port}/genres"}
        # Side by side: the hang's bound (10 s) is the test's time.
        hang, refusal, dry_run, debug_flag, debug_variable = run_together(
            (["migrate"], hung),
            (["migrate"], refused),
            (["backfill", "--dry-run"], refused),
            (["--debug", "migrate"], refused),
            (["migrate"], refused | {"GENRES_DEBUG": "1"}),
            timeout=45,
        )
    assert_one_line(hang, 3, f"PostgreSQL at 127.0.0.1:{port} did not answer in time")
    assert_one_line(refusal, 3, f"cannot reach PostgreSQL at 127.0.0.1:{closed}")
    for result in (hang, refusal):
        assert "hunter2" not in result.stderr
        assert "genres:" not in result.stderr
    assert "Traceback" not in dry_run.stderr
    for traced in (debug_flag, debug_variable):
        assert traced.returncode != 0
        assert "Traceback" in traced.stderr


def test_run_names_the_part_that_does_not_answer(kafka: KafkaTestBed, database_url: str) -> None:
    port = closed_port()
    no_broker, no_database = run_together(
        (
            ["run", "all"],
            {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}", "DATABASE_URL": database_url},
        ),
        (["run", "all"], kafka.env() | {"DATABASE_URL": f"postgresql://u:pw@127.0.0.1:{port}/x"}),
    )
    assert no_broker.returncode == 3, no_broker.stderr
    assert no_broker.stderr.splitlines()[-1] == (
        f"error: cannot reach the Kafka broker at 127.0.0.1:{port}"
    )
    assert "Traceback" not in no_broker.stderr

    assert no_database.returncode == 3, no_database.stderr
    assert no_database.stderr.splitlines()[-1] == (
        f"error: cannot reach PostgreSQL at 127.0.0.1:{port} (connection refused)"
    )
    assert "Traceback" not in no_database.stderr


def test_bad_audio_input_is_one_line_each(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    notes = tmp_path / "notes.mp3"
    notes.write_text("these are my notes, not music\n")
    env = {"CLASSIFIER_BACKEND": "local"}
    loopback = f"http://127.0.0.1:{closed_port()}/a.mp3"

    empty_run, notes_run, folder, private = run_together(
        (["classify", str(empty)], env),
        (["classify", str(notes)], env),
        (["classify", str(tmp_path)], env),
        (["classify", loopback], env),
    )
    assert_one_line(empty_run, 1, "the file is empty")
    line = assert_one_line(notes_run, 1, "not a readable audio file")
    assert "Errno" not in line
    # A folder is classified file by file: each bad file on its own line, the batch goes on.
    assert folder.returncode == 1
    lines = folder.stderr.splitlines()
    assert any(str(empty) in line and "the file is empty" in line for line in lines), lines
    assert any(str(notes) in line and "not a readable audio file" in line for line in lines)
    assert "Traceback" not in folder.stderr
    assert_one_line(private, 1, "non-public address", "AUDIO_ALLOW_PRIVATE_ADDRESSES")
