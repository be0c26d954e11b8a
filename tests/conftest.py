"""Fixtures for every suite. Each fixture module starts what it needs; see its docstring."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stamina

pytest_plugins = [
    "tests.support.broker",
    "tests.support.database",
    "tests.support.fake_replicate_fixtures",
    "tests.support.parallel",
    "tests.support.service",
]


def pytest_report_header(config: pytest.Config) -> str:
    """Which broker the broker tests will run on (decided here, started on first use)."""
    from tests.support.broker import describe_broker, planned_broker

    return describe_broker(planned_broker())


TIERS = ("unit", "model", "toolchain", "integration", "e2e", "faults", "cluster")
"""The test folders; each test is marked with its folder's tier (``pytest -m unit``)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = item.path.parent.name
        if tier in TIERS:
            item.add_marker(tier)


@pytest.fixture(autouse=True)
def _no_backoff_in_the_unit_tier(request: pytest.FixtureRequest) -> Iterator[None]:
    """Unit tests retry without waiting (stamina's test switch; attempts stay unbounded for
    any practical test): the retry policy's waits are the broker tiers' business."""
    if request.node.get_closest_marker("unit") is None:
        yield
        return
    with stamina.set_testing(True, attempts=1_000, cap=True):
        yield
