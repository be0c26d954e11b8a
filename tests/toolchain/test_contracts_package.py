"""``contracts/`` is a distribution of its own: pydantic alone, aiokafka only with ``[kafka]``."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from tests.support.contracts_venv import build_contracts_wheel


def test_contracts_wheel_requires_pydantic_and_aiokafka_only_with_the_kafka_extra(
    tmp_path: Path,
) -> None:
    wheel = build_contracts_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        lines = archive.read(metadata).decode().splitlines()
    requires = [line.split(":", 1)[1].strip() for line in lines if line.startswith("Requires-Dist")]
    assert [r for r in requires if "extra ==" not in r] == ["pydantic>=2.8"]
    assert [r for r in requires if "extra ==" in r] == [
        "aiokafka[lz4,snappy,zstd]>=0.12; extra == 'kafka'"
    ]
    assert "Provides-Extra: kafka" in lines
    packages = {name.split("/")[0] for name in names if not name.endswith("dist-info/")}
    assert "genres" not in packages
    assert "genres_contracts" in packages
    assert "genres_contracts/kafka/__init__.py" in names
    assert "genres_contracts/py.typed" in names


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


def test_the_integrating_page_shows_the_examples_the_tests_run() -> None:
    """docs/integrating/index.md copies the two examples of contracts/README.md, which the
    tests run."""
    root = Path(__file__).resolve().parents[2]
    tested = _python_blocks(root / "contracts" / "README.md")
    shown = _python_blocks(root / "docs" / "integrating" / "index.md")
    for needle in ("GenresClient(", "KafkaBroker("):
        original = [block for block in tested if needle in block]
        copies = [block for block in shown if needle in block]
        assert len(original) == 1
        assert copies == original
