"""Settings pointing the service at this test's broker prefix, database and fake Replicate."""

from __future__ import annotations

from typing import Any

import pytest

from genres.config import Settings, load_settings
from tests.support.broker import KafkaTestBed
from tests.support.fake_replicate import FakeReplicate

FAKE_TOKEN = "r8_fake_token"


def service_settings(
    kafka: KafkaTestBed,
    database_url: str,
    fake: FakeReplicate | None = None,
    **overrides: Any,
) -> Settings:
    """Fast group joins and short waits; the Replicate backend when a fake is given."""
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": kafka.bootstrap_servers,
        "genres_topic_prefix": kafka.prefix,
        "database_url": database_url,
        "kafka_session_timeout_ms": 1000,
        "kafka_heartbeat_interval_ms": 300,
        "kafka_fetch_max_wait_ms": 10,
        "log_format": "console",
        # Off unless a test asks: tests run several services side by side.
        "health_port": 0,
    }
    if fake is not None:
        values |= {
            "classifier_backend": "replicate",
            "replicate_api_token": FAKE_TOKEN,
            "replicate_base_url": fake.base_url,
            "replicate_timeout_seconds": 20,
        }
    return load_settings(**(values | overrides))


@pytest.fixture
def make_settings(kafka: KafkaTestBed, database_url: str) -> Any:
    def make(fake: FakeReplicate | None = None, **overrides: Any) -> Settings:
        return service_settings(kafka, database_url, fake, **overrides)

    return make
