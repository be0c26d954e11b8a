"""The suite on several pytest-xdist workers (``-n auto --dist loadgroup`` in pyproject).

Most of the suite's time is waiting (brokers joining groups, timeouts running out), not CPU, so
a whole run spreads over more workers than the machine has cores. Each worker is a pytest
session of its own: its own broker, PostgreSQL server and template database (the session
fixtures), its own ports (``free_port``) and temporary folders.

* How many workers: ``GENRES_TESTS_WORKERS`` when set; none when the run names files or tests
  (one file is not worth a second broker); else :data:`WORKERS`, or :data:`CPU_WORKERS` when
  only the unit or the toolchain tier runs (CPU-bound: no more workers than cores).
* Tests that share a fixture wider than a test but narrower than the session (the secured
  cluster of ``tests/cluster``, a module's TLS servers, a module's table of runs) go to one
  worker together (an ``xdist_group``), so that the fixture is still made once.
* Lines for the end of the run (:func:`add_summary_line`) are sent by the workers to the
  process that prints the summary.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

WORKERS = 3
"""Workers for a run of several tiers (measured on 2 cores: see the Makefile's header)."""
CPU_WORKERS = 2
"""Workers when only a tier of :data:`CPU_TIERS` runs: they compute rather than wait."""
CPU_TIERS = frozenset({"unit", "toolchain"})

_SUMMARY = pytest.StashKey[dict[str, list[str]]]()
_WORKER_OUTPUT = "genres_summary"


def _names_files_or_tests(config: pytest.Config) -> bool:
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        return False
    return any("::" in arg or not Path(arg).is_dir() for arg in config.args)


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    forced = os.environ.get("GENRES_TESTS_WORKERS", "").strip()
    if forced:
        return int(forced)
    if _names_files_or_tests(config):
        return 0
    if (config.option.markexpr or "").strip() in CPU_TIERS:
        return CPU_WORKERS
    return WORKERS


def _shared_scope(item: pytest.Item) -> str | None:
    """The group of the tests ``item`` shares a package- or module-scoped fixture with."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    scopes = {
        definitions[-1].scope
        for definitions in info.name2fixturedefs.values()
        if definitions and definitions[-1].scope in ("package", "module", "class")
    }
    if "package" in scopes:
        return str(item.path.parent.relative_to(item.config.rootpath))
    if scopes:
        return str(item.path.relative_to(item.config.rootpath))
    return None


@pytest.hookimpl(tryfirst=True)  # before xdist's worker turns the groups into node ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not getattr(config.option, "loadgroup", False):  # set on the workers of --dist loadgroup
        return
    for item in items:
        group = _shared_scope(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


def add_summary_line(config: pytest.Config, section: str, line: str) -> None:
    """Print ``line`` under ``section`` at the end of the run, whichever worker ran the test."""
    config.stash.setdefault(_SUMMARY, {}).setdefault(section, []).append(line)


def summary_lines(config: pytest.Config, section: str) -> list[str]:
    return config.stash.get(_SUMMARY, {}).get(section, [])


def pytest_sessionfinish(session: pytest.Session) -> None:
    output: dict[str, Any] | None = getattr(session.config, "workeroutput", None)
    if output is not None:  # a worker: the controller prints the summary
        output[_WORKER_OUTPUT] = session.config.stash.get(_SUMMARY, {})


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    sent: dict[str, list[str]] = getattr(node, "workeroutput", {}).get(_WORKER_OUTPUT, {})
    for section, lines in sent.items():
        for line in lines:
            add_summary_line(node.config, section, line)
