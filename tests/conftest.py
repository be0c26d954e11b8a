"""Fixtures for every suite. Each fixture module starts what it needs; see its docstring."""

from __future__ import annotations

import pytest

pytest_plugins = [
    "tests.support.broker",
    "tests.support.database",
    "tests.support.fake_replicate_fixtures",
    "tests.support.service",
]


def pytest_report_header(config: pytest.Config) -> str:
    """Which broker the broker tests will run on (decided here, started on first use)."""
    from tests.support.broker import describe_broker, planned_broker

    return describe_broker(planned_broker())


TIERS = ("unit", "integration", "e2e", "faults")
"""The test folders; each test is marked with its folder's tier (``pytest -m unit``)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = item.path.parent.name
        if tier in TIERS:
            item.add_marker(tier)
