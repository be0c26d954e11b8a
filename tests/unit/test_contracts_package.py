"""``contracts/`` is a distribution of its own that depends on pydantic alone."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UV = shutil.which("uv") or "uv"  # the project is managed with uv; CI installs it first


def test_contracts_wheel_requires_only_pydantic(tmp_path: Path) -> None:
    subprocess.run(
        [UV, "build", "--wheel", "--out-dir", str(tmp_path), str(ROOT / "contracts")],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("genres_contracts-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        requires = [
            line.split(":", 1)[1].strip()
            for line in archive.read(metadata).decode().splitlines()
            if line.startswith("Requires-Dist:")
        ]
    assert [r.split(">")[0].split("=")[0].strip() for r in requires] == ["pydantic"]
    packages = {name.split("/")[0] for name in names if not name.endswith("dist-info/")}
    assert "genres" not in packages
    assert "genres_contracts" in packages
