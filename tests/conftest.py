"""Fixtures for every suite. Each fixture module starts what it needs; see its docstring."""

from __future__ import annotations

pytest_plugins = [
    "tests.support.broker",
    "tests.support.database",
    "tests.support.fake_replicate_fixtures",
    "tests.support.service",
]
