"""Fault-injection suite: the ``faults`` marker and the figures every scenario reports.

Each scenario calls :meth:`FaultReport.add` with its figures (events, faults injected, lost,
wrong, duplicate paid calls, run time). They go to the JUnit properties (``record_property``),
to ``<pytest basetemp>/faults-last-run.json`` and to a summary printed at the end of the run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from tests.faults.harness import Figures, Scenario
from tests.support.parallel import add_summary_line

_FIGURES_KEY = pytest.StashKey[list[dict[str, Any]]]()
_SECTION = "fault scenarios"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "faults: fault injection (crashes, outages, Replicate faults, secrets)"
    )
    config.stash[_FIGURES_KEY] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.faults)


@pytest.fixture
def fault_report(
    request: pytest.FixtureRequest,
    record_property: Callable[[str, object], None],
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[Figures], None]:
    """``fault_report(figures)``: keep one scenario's figures for the summary and JSON file."""
    config = request.config
    collected = config.stash[_FIGURES_KEY]
    path = tmp_path_factory.getbasetemp() / "faults-last-run.json"

    def add(figures: Figures) -> None:
        row = {"test": request.node.name, **figures.as_dict()}
        for name, value in row.items():
            if name != "test":
                record_property(name, value)
        if not collected:  # each worker of a parallel run writes its own file
            add_summary_line(config, _SECTION, f"figures written to {path}")
        collected.append(row)
        path.write_text(json.dumps(collected, indent=2, sort_keys=True) + "\n")
        add_summary_line(config, _SECTION, _line(row))
        print("faults:", json.dumps(row, sort_keys=True))

    return add


def _line(row: dict[str, Any]) -> str:
    return (
        f"{row['test']}: events={row['events']} faults={row['faults_injected']} "
        f"lost={row['lost']} wrong={row['wrong']} duplicate_paid={row['duplicate_paid']} "
        f"run_time={row['run_time_s']:.1f}s"
        + (f" {json.dumps(row['details'], sort_keys=True)}" if row.get("details") else "")
    )


@pytest.fixture
def scenario(
    database_url: str,
    engine: AsyncEngine,
    tmp_path: Path,
    fault_report: Callable[[Figures], None],
) -> Scenario:
    return Scenario(database_url, engine, tmp_path, fault_report)
