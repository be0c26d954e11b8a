"""Secrets from mounted files: ``<NAME>_FILE`` names a file whose content is the value."""

from __future__ import annotations

from pathlib import Path

import pytest

from genres.config import FROM_FILE, load_settings
from genres.errors import ConfigurationError

SECRET = "s3cret-värde"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in FROM_FILE:
        monkeypatch.delenv(name.upper(), raising=False)
        monkeypatch.delenv(f"{name.upper()}_FILE", raising=False)


def _value(settings: object, name: str) -> str | None:
    value = getattr(settings, name)
    return value.get_secret_value() if hasattr(value, "get_secret_value") else value


@pytest.mark.parametrize("name", FROM_FILE)
def test_each_secret_is_read_from_its_file_without_the_trailing_newline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    value = "postgresql://genres:pw@db:5432/genres" if name == "database_url" else SECRET
    path = tmp_path / "secret"
    path.write_text(value + "\n", encoding="utf-8")
    monkeypatch.setenv(f"{name.upper()}_FILE", str(path))
    if name == "kafka_ssl_key_password":  # a key's password goes with a certificate
        monkeypatch.setenv("KAFKA_SSL_CERTFILE", str(path))
    settings = load_settings()
    assert _value(settings, name) == value


def test_the_file_as_an_argument_too(tmp_path: Path) -> None:
    path = tmp_path / "password"
    path.write_text(f"{SECRET}\r\n", encoding="utf-8")
    settings = load_settings(kafka_sasl_password_file=str(path))
    assert _value(settings, "kafka_sasl_password") == SECRET


def test_a_value_and_its_file_both_set_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "token"
    path.write_text(SECRET, encoding="utf-8")
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_other")
    monkeypatch.setenv("REPLICATE_API_TOKEN_FILE", str(path))
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    message = str(caught.value)
    assert "REPLICATE_API_TOKEN and REPLICATE_API_TOKEN_FILE are both set" in message
    assert SECRET not in message
    assert "r8_other" not in message


def test_an_unreadable_file_names_the_variable_and_never_the_content(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "absent"
    monkeypatch.setenv("KAFKA_SASL_PASSWORD_FILE", str(missing))
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    message = str(caught.value)
    assert message == (
        "invalid configuration: KAFKA_SASL_PASSWORD_FILE: cannot read "
        f"{missing}: no such file or directory"
    )
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe" + SECRET.encode("utf-16-le"))
    monkeypatch.setenv("KAFKA_SASL_PASSWORD_FILE", str(binary))
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "KAFKA_SASL_PASSWORD_FILE: cannot read" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_a_directory_is_not_a_secret_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATABASE_URL_FILE", str(tmp_path))
    with pytest.raises(ConfigurationError, match="DATABASE_URL_FILE: cannot read"):
        load_settings()


def test_the_secret_from_a_file_is_checked_like_the_value(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "url"
    path.write_text("mysql://u:hidden@h/db\n", encoding="utf-8")
    monkeypatch.setenv("DATABASE_URL_FILE", str(path))
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "DATABASE_URL: must be a postgresql://" in str(caught.value)
    assert "hidden" not in str(caught.value)


def test_a_command_needing_the_database_takes_its_url_from_a_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from genres.cli.common import DATABASE, KAFKA, is_set

    monkeypatch.delenv(KAFKA, raising=False)
    assert not is_set(DATABASE)
    monkeypatch.setenv("DATABASE_URL_FILE", "/run/secrets/database")
    assert is_set(DATABASE)
    # Only secrets come from files: the broker list does not.
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS_FILE", "/run/secrets/brokers")
    assert not is_set(KAFKA)
