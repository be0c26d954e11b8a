"""The contracts distribution installed alone in fresh virtualenvs: by each route the README
documents (a clone, the wheel and sdist ``make dist`` builds, a git URL), what each install
pulls in, and the client's README example run from there against the real responder; the
FastStream example of the same README run against the real broker."""

from __future__ import annotations

import asyncio
import re
import shlex
import subprocess
import tomllib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from sqlalchemy.ext.asyncio import AsyncEngine

from genres.config import Settings
from genres.kafka.broker import ensure_topics
from genres.kafka.parsing import parse
from genres.kafka.producer import Publisher
from genres_contracts import GenresClassified, ModelRef, Prediction, TrackUploaded, topics
from tests.integration.test_responder import Service, add_track, cached, running_responder
from tests.support.bus import read_topic
from tests.support.contracts_venv import (
    ROOT,
    build_contracts_sdist,
    build_contracts_wheel,
    fresh_venv,
    installed,
)

README = ROOT / "contracts" / "README.md"
# Never pulled in by the contracts, with or without the client.
SERVICE_SIDE = {"genres", "faststream", "sqlalchemy", "asyncpg", "alembic", "httpx", "numpy"}


def closure(requirement: str) -> set[str]:
    """Normalised names of ``requirement`` and everything it needs, from this environment's
    metadata (the fresh installs are constrained to the same versions)."""
    seen: set[str] = set()
    todo = [Requirement(requirement)]
    while todo:
        wanted = todo.pop()
        name = wanted.name.lower().replace("_", "-")
        for extra in sorted(wanted.extras) or [""]:
            key = f"{name}[{extra}]"
            if key in seen:
                continue
            seen.add(key)
            for line in metadata.requires(name) or []:
                needed = Requirement(line)
                if needed.marker is None or needed.marker.evaluate({"extra": extra}):
                    todo.append(needed)
    return {key.split("[")[0] for key in seen}


def readme_block(marker: str) -> str:
    """The README's Python example that contains ``marker``."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    (block,) = [b for b in blocks if marker in b]
    return block


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_contracts_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def kafka_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fresh_venv(tmp_path_factory.mktemp("with-kafka"), wheel, "kafka")


def run(python: Path, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


VERSION = tomllib.loads((ROOT / "contracts" / "pyproject.toml").read_text())["project"]["version"]
WHEEL = f"genres_contracts-{VERSION}-py3-none-any.whl"
GIT_URL = "git+https://github.com/<owner>/genres.git"


def readme_installs() -> list[str]:
    """The arguments of every ``pip install`` the README's install section shows."""
    text = README.read_text(encoding="utf-8").split("## Installing", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    commands = [line for block in blocks for line in block.splitlines()]
    return [shlex.split(c)[2] for c in commands if c.startswith("pip install ")]


def test_the_readme_shows_the_routes_tested_here() -> None:
    assert readme_installs() == [
        "./contracts",
        "./contracts[kafka]",
        f"dist/{WHEEL}[kafka]",
        f"genres-contracts[kafka] @ {GIT_URL}@main#subdirectory=contracts",
    ]
    assert "make dist\n" in README.read_text(encoding="utf-8")


def head() -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.mark.parametrize("route", ["clone", "sdist", "git"])
def test_each_documented_route_installs_the_client_alone(
    route: str, kafka_python: Path, tmp_path: Path
) -> None:
    """The clone's folder, the sdist and a git URL (the checkout's HEAD through ``file://``:
    committed code) install what the wheel does (``kafka_python``), and it imports."""
    source: Path | str
    if route == "clone":
        source = ROOT / "contracts"
    elif route == "sdist":
        source = build_contracts_sdist(tmp_path / "dist")
    else:
        source = f"git+{ROOT.as_uri()}@{head()}#subdirectory=contracts"
    python = fresh_venv(tmp_path, source, "kafka")
    assert installed(python) == installed(kafka_python)
    done = run(
        python,
        "from importlib.metadata import version\n"
        "from genres_contracts.kafka import GenresClient\n"
        "from genres_contracts import TrackUploaded\n"
        "print(version('genres-contracts'))\n",
    )
    assert done.stdout.strip() == VERSION, done.stderr


def test_the_base_install_pulls_in_pydantic_alone(wheel: Path, tmp_path: Path) -> None:
    python = fresh_venv(tmp_path, wheel)
    assert installed(python) == {"genres-contracts"} | closure("pydantic")
    done = run(python, "import genres_contracts; print(genres_contracts.TrackUploaded.__name__)")
    assert done.stdout.strip() == "TrackUploaded", done.stderr
    done = run(python, "import genres_contracts.kafka")
    assert done.returncode == 1
    assert "genres_contracts.kafka needs aiokafka: pip install 'genres-contracts[kafka]'" in (
        done.stderr
    )


def test_the_kafka_extra_adds_aiokafka_and_its_codecs_only(kafka_python: Path) -> None:
    names = installed(kafka_python)
    assert names == {"genres-contracts"} | closure("pydantic") | closure(
        "aiokafka[lz4,snappy,zstd]"
    )
    assert {"aiokafka", "cramjam"} <= names
    assert not names & SERVICE_SIDE
    done = run(
        kafka_python,
        "import sys\n"
        "from aiokafka.codec import has_lz4, has_snappy, has_zstd\n"
        "from genres_contracts.kafka import GenresClient, GenresClientError\n"
        "print(has_lz4(), has_snappy(), has_zstd())\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{sorted(SERVICE_SIDE)!r}))\n",
    )
    assert done.stdout.splitlines() == ["True True True", "[]"], done.stderr


@pytest.fixture
async def service(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Service]:
    async with running_responder(settings, engine) as running:
        yield running


async def test_the_readme_client_example_runs_from_the_client_alone(
    kafka_python: Path, service: Service, engine: AsyncEngine
) -> None:
    await add_track(engine, 668, extra=cached(), own_tags=("techno electronic",))
    settings = service.settings
    address = f"{settings.kafka_bootstrap_servers!r}, topic_prefix={settings.genres_topic_prefix!r}"
    example = readme_block("GenresClient(")
    assert example.count('"localhost:9092"') == 1
    done = await asyncio.to_thread(run, kafka_python, example.replace('"localhost:9092"', address))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "ambient electronic: 0.5",
        "experimental electronic: 0.4",
        "synth-pop electronic: 0.3",
        "house electronic: 0.1",
    ]
    assert done.stderr == ""  # no "Unclosed ..." or any other complaint on exit


async def test_the_readme_faststream_example_publishes_uploads_and_consumes_outcomes(
    settings: Settings,
    publisher: Publisher,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The example names the canonical topics; this test's run of it uses its own prefix.
    for name in ("TRACK_UPLOADED", "GENRES_CLASSIFIED"):
        monkeypatch.setattr(topics, name, settings.topic(getattr(topics, name)))
    await ensure_topics(settings)
    example = readme_block("KafkaBroker(")
    assert example.count('"localhost:9092"') == 1
    namespace: dict[str, Any] = {}
    exec(example.replace('"localhost:9092"', repr(settings.kafka_bootstrap_servers)), namespace)
    broker = namespace["broker"]
    await broker.start()
    try:
        await namespace["track_uploaded"](668, "b2c1e0", "https://cdn.example/audio/b2c1e0.mp3")
        (record,) = await read_topic(
            settings.kafka_bootstrap_servers or "", topics.TRACK_UPLOADED, count=1, timeout=15
        )
        # What the service's classifier reads from it:
        assert record.key == b"668"
        upload = parse(TrackUploaded, record.value)
        assert (upload.track_id, upload.file_id, str(upload.audio_url)) == (
            668,
            "b2c1e0",
            "https://cdn.example/audio/b2c1e0.mp3",
        )

        # The classifier's outcome, published as the service publishes it.
        outcome = GenresClassified(
            source_event_id="e1",
            track_id=668,
            file_id="b2c1e0",
            predictions=[
                Prediction(name="ambient electronic", confidence=0.5),
                Prediction(name="techno electronic", confidence=0.25),
            ],
            model=ModelRef(name="mtg/effnet-discogs", version="1"),
            classified_at=datetime.now(UTC),
        )
        await publisher.publish(topics.GENRES_CLASSIFIED, outcome, key=b"668", prefixed=True)
        printed = ""
        async with asyncio.timeout(30):
            while "track 668" not in printed:
                await asyncio.sleep(0.1)
                printed += capsys.readouterr().out
    finally:
        await broker.stop()
    assert "track 668 (b2c1e0): ambient electronic, techno electronic\n" in printed
