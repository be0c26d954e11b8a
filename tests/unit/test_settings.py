"""Settings: defaults from docs/interface.md, and one clear line for a bad configuration."""

from __future__ import annotations

import pytest

from genres.config import Backend, load_settings
from genres.errors import ConfigurationError


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "REPLICATE_ENABLED",
        "REPLICATE_API_TOKEN",
        "CLASSIFIER_BACKEND",
        "DATABASE_URL",
        "KAFKA_BOOTSTRAP_SERVERS",
        "REPLICATE_TOP_N",
    ):
        monkeypatch.delenv(name, raising=False)


def test_defaults_follow_the_interface() -> None:
    settings = load_settings()
    assert settings.backend is Backend.LOCAL
    assert settings.replicate_top_n == 10
    assert settings.replicate_timeout_seconds == 120
    assert str(settings.replicate_base_url) == "https://api.replicate.com/v1"
    assert settings.replicate_model_version.startswith("1532dd06")
    assert settings.replicate_max_predictions_per_minute == 600
    assert settings.classifier_concurrency == 64


@pytest.mark.parametrize(
    ("environment", "backend"),
    [
        pytest.param(
            {"REPLICATE_ENABLED": "true", "REPLICATE_API_TOKEN": "r8_x"},
            Backend.REPLICATE,
            id="replicate enabled selects replicate",
        ),
        pytest.param(
            {"REPLICATE_ENABLED": "true", "CLASSIFIER_BACKEND": "none"},
            Backend.NONE,
            id="an explicit backend wins over replicate enabled",
        ),
    ],
)
def test_the_backend_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], backend: Backend
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert load_settings().backend is backend


def test_replicate_without_a_token_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLICATE_ENABLED", "true")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    message = str(caught.value)
    assert "REPLICATE_API_TOKEN is not set" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("variable", "value", "hidden"),
    [
        pytest.param("REPLICATE_BASE_URL", "not a url at all", "not a url at all", id="bad url"),
        pytest.param("DATABASE_URL", "mysql://u:secret@h/db", "secret", id="not postgres"),
    ],
)
def test_a_bad_value_names_the_variable_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, hidden: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert variable in str(caught.value)
    assert hidden not in str(caught.value)


def test_the_token_is_not_shown_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_very_secret")
    settings = load_settings()
    assert "r8_very_secret" not in repr(settings)
    assert settings.replicate_token == "r8_very_secret"


def test_records_in_flight_default_to_twice_the_classifications() -> None:
    assert load_settings(classifier_concurrency=10).records_in_flight == 20
    assert load_settings(classifier_records_in_flight=100).records_in_flight == 100


def test_a_window_smaller_than_the_concurrency_is_refused() -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(classifier_concurrency=16, classifier_records_in_flight=8)
    assert "CLASSIFIER_RECORDS_IN_FLIGHT" in str(caught.value)


def test_variables_are_read_in_any_case_and_arguments_win(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "from-env:9092")
    monkeypatch.setenv("classifier_concurrency", "7")
    monkeypatch.setenv("UNRELATED_VARIABLE", "ignored")
    settings = load_settings(classifier_concurrency=3)
    assert settings.kafka_bootstrap_servers == ["from-env:9092"]
    assert settings.classifier_concurrency == 3
    assert load_settings().classifier_concurrency == 7
