"""The command line's parsing and its failure lines, without running a command."""

from __future__ import annotations

import pytest
from aiokafka.errors import KafkaConnectionError
from asyncpg.exceptions import InvalidPasswordError, UndefinedTableError

from genres.bootstrap import Role
from genres.cli import ROLES, build_parser
from genres.cli.failures import UNREACHABLE, database_place, explain
from genres.config import Settings
from genres.errors import AudioError, ConfigurationError


def test_the_cli_knows_the_roles_without_importing_them() -> None:
    assert set(ROLES) == {role.value for role in Role}


def test_arguments_parse_into_each_commands_parameters() -> None:
    args = vars(build_parser().parse_args(["recommend", "7", "--wait-ms", "20", "--json"]))
    assert args == {
        "debug": False,
        "command": "recommend",
        "track_id": 7,
        "limit": 5,
        "wait_ms": 20,
        "timeout": 10.0,
        "as_json": True,
    }
    backfill = vars(build_parser().parse_args(["--debug", "backfill", "--dry-run"]))
    assert backfill["debug"] is True
    assert vars(build_parser().parse_args(["migrate", "--debug"]))["debug"] is True
    assert backfill["dry_run"] is True
    assert backfill["limit"] is None


@pytest.mark.parametrize(
    ("url", "place"),
    [
        ("postgresql://genres:hunter2@db.internal:6543/genres", "db.internal:6543"),
        ("postgresql+asyncpg://u:p@10.0.0.5/x", "10.0.0.5:5432"),
        ("postgresql+asyncpg://postgres@/postgres?host=/tmp/pg/data", "the socket in /tmp/pg/data"),
        (None, "DATABASE_URL"),
    ],
)
def test_a_database_is_named_by_host_and_port_never_credentials(
    url: str | None, place: str
) -> None:
    assert database_place(url) == place


def settings() -> Settings:
    return Settings(
        kafka_bootstrap_servers="broker.test:9092",
        database_url="postgresql://genres:hunter2@db.test:5432/genres",
    )


def raised(error: BaseException, cause: BaseException | None = None) -> BaseException:
    try:
        raise error from cause
    except BaseException as exc:
        return exc


def test_failures_become_one_line_and_an_exit_code() -> None:
    s = settings()
    assert explain(ConfigurationError("X is bad"), s) == ("X is bad", 2)
    assert explain(AudioError("the file is empty"), s) == ("the file is empty", 1)
    assert explain(raised(RuntimeError("outer"), KafkaConnectionError("no")), s) == (
        "cannot reach the Kafka broker at broker.test:9092",
        UNREACHABLE,
    )
    line, code = explain(InvalidPasswordError("password authentication failed"), s)
    assert code == UNREACHABLE
    assert line == "PostgreSQL at db.test:5432 refused: password authentication failed"
    line, _ = explain(UndefinedTableError('relation "tracks" does not exist'), s)
    assert line.endswith("(run `genres migrate` first)")
    line, code = explain(ExceptionGroup("many", [ValueError("a\nb")]), s)
    assert code == 1
    assert "\n" not in line
    assert "--debug" in line
