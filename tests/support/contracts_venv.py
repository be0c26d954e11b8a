"""The contracts distribution built (wheel, sdist) and installed alone into a fresh virtualenv,
by each route contracts/README.md documents.

``GENRES_CONTRACTS_DIST=<dir>`` (the release check: ``make dist`` then the tests) makes the
tests use the distributions in that directory instead of building their own, so that what is
published is what was tested. Installs resolve with the versions of this test environment as
constraints, from uv's cache (``--offline``) when it holds them, else from the package registry.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UV = shutil.which("uv") or "uv"  # the project is managed with uv; CI installs it first


def _uv(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([UV, *args], check=False, capture_output=True, text=True, timeout=300)


def build_contracts_wheel(out_dir: Path) -> Path:
    """``uv build --wheel`` of ``contracts/``; returns the wheel."""
    return _build("--wheel", "genres_contracts-*.whl", out_dir)


def build_contracts_sdist(out_dir: Path) -> Path:
    """``uv build --sdist`` of ``contracts/``; returns the source archive."""
    return _build("--sdist", "genres_contracts-*.tar.gz", out_dir)


def _build(kind: str, pattern: str, out_dir: Path) -> Path:
    given = os.environ.get("GENRES_CONTRACTS_DIST")
    if given:  # the files a release check built, not a build of our own
        (found,) = Path(given).resolve().glob(pattern)
        return found
    done = _uv("build", kind, "--out-dir", str(out_dir), str(ROOT / "contracts"))
    assert done.returncode == 0, done.stderr
    (built,) = out_dir.glob(pattern)
    return built


def _constraints(path: Path) -> Path:
    """Pins of this environment (the service's own distributions left out)."""
    pins = sorted(
        {
            f"{dist.metadata['Name']}=={dist.version}"
            for dist in metadata.distributions()
            if not dist.metadata["Name"].lower().startswith("genres")
        }
    )
    path.write_text("\n".join(pins) + "\n", encoding="utf-8")
    return path


def fresh_venv(directory: Path, source: Path | str, extras: str = "") -> Path:
    """A new virtualenv in ``directory`` with the contracts from ``source`` (a wheel, an sdist,
    the ``contracts/`` folder, or a URL such as ``git+file://…#subdirectory=contracts``), plus
    ``[extras]``, and what they pull in, nothing else; returns its Python."""
    venv = directory / "venv"
    done = _uv("venv", "--quiet", "--python", sys.executable, str(venv))
    assert done.returncode == 0, done.stderr
    python = venv / "bin" / "python"
    url = source.as_uri() if isinstance(source, Path) else source
    requirement = f"genres-contracts{f'[{extras}]' if extras else ''} @ {url}"
    constraints = _constraints(directory / "constraints.txt")
    install = ["pip", "install", "--python", str(python), "-c", str(constraints), requirement]
    done = _uv(*install, "--offline")
    if done.returncode != 0:  # uv's cache lacks an index page or a wheel: ask the registry
        done = _uv(*install)
    assert done.returncode == 0, done.stderr
    return python


def installed(python: Path) -> set[str]:
    """Normalised names of the distributions installed in ``python``'s environment."""
    done = _uv("pip", "list", "--python", str(python), "--format", "json")
    assert done.returncode == 0, done.stderr
    return {entry["name"].lower().replace("_", "-") for entry in json.loads(done.stdout)}
