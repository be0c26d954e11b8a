"""The suite on several pytest-xdist workers (``-n auto --dist loadscope`` in pyproject).

Most of the suite's time is waiting (brokers joining groups, timeouts running out), not CPU, so
a whole run spreads over more workers than the machine has cores. Each worker is a pytest
session of its own: its own broker, PostgreSQL server and template database (the session
fixtures), its own ports (``free_port``) and temporary folders.

* How many workers: ``GENRES_TESTS_WORKERS`` when set; none when the run names files or tests
  (one file is not worth a second broker); else :data:`WORKERS`, or :data:`CPU_WORKERS` when
  only the unit or the toolchain tier runs (CPU-bound: no more workers than cores).
* A module's tests go to one worker (a module's TLS servers or table of runs are made once),
  and ``tests/cluster`` goes whole to one worker (the secured cluster is started once).
* Lines for the end of the run (:func:`add_summary_line`) are sent by the workers to the
  process that prints the summary, which prints them by section.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

WORKERS = 2
"""Workers for a run of several tiers: on 2 cores, 3 made the processes of the e2e and cluster
tests miss their time bounds (CPU-starved); 2 did not (docs/developing.md)."""
CPU_WORKERS = 2
"""Workers when only a tier of :data:`CPU_TIERS` runs: they compute rather than wait."""
CPU_TIERS = frozenset({"unit", "model", "toolchain"})

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


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Whole modules to a worker (their module-scoped fixtures made once), and the folders of
    :data:`SHARED_FOLDERS` whole to one worker.

    Not ``--dist loadgroup`` with ``xdist_group`` marks: on pytest 9.2 xdist's group suffix on
    node ids no longer takes (pytest-dev/pytest-xdist#1386), and every worker would start the
    secured cluster."""
    from xdist.scheduler import LoadScopeScheduling

    class Scheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

    return Scheduling(config, log)


SHARED_FOLDERS = ("tests/cluster",)
"""Folders whose tests share a package-scoped fixture (the secured cluster: four JVMs)."""


def scope_of(nodeid: str) -> str:
    """The unit of work a test belongs to: its shared folder, else its module."""
    module = nodeid.split("::", 1)[0]
    for folder in SHARED_FOLDERS:
        if module.startswith(folder + "/"):
            return folder
    return module


def add_summary_line(config: pytest.Config, section: str, line: str) -> None:
    """Print ``line`` under ``section`` at the end of the run, whichever worker ran the test."""
    config.stash.setdefault(_SUMMARY, {}).setdefault(section, []).append(line)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    # Here, not in the tiers' conftest files: the process that prints a parallel run's summary
    # collects nothing, so it never loads them.
    for section, lines in config.stash.get(_SUMMARY, {}).items():
        terminalreporter.section(section)
        for line in lines:
            terminalreporter.write_line(line)


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
