"""Optional dev tools: tests skip without them locally and fail without them in CI."""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing(message: str) -> NoReturn:
    """A dev tool a test needs is not there: fail in CI, skip elsewhere."""
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def schema_dependency(name: str) -> ModuleType:
    """Import ``name`` (PyYAML or jsonschema, from the dev dependency kubernetes-validate).

    Without it the calling test module is skipped, or, in CI, the import error is raised.
    """
    try:
        return importlib.import_module(name)
    except ImportError:  # pragma: no cover - CI must have them
        if in_ci():
            raise
        pytest.skip(
            "PyYAML/jsonschema are not installed (dev dependency kubernetes-validate)",
            allow_module_level=True,
        )
