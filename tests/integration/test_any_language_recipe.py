"""docs/integrating/any-language.md's librdkafka example, run against the real responder.

The page tells a service in another language how to ask for recommended tags: its own reply
topic (one partition, read without a group from its end), the ``reply_to`` and
``correlation_id`` headers, matching by correlation id. The page's code block is the recipe
written with librdkafka (confluent-kafka), the library most non-Java clients wrap; this test
runs that block as it is printed.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from genres.bootstrap import Role, running
from genres.config import Settings
from tests.support.broker import KafkaTestBed
from tests.support.database import insert_track

PAGE = Path(__file__).resolve().parents[2] / "docs" / "integrating" / "any-language.md"
STORED = {
    "genre_predictions": [
        {"name": "ambient electronic", "confidence": 0.5},
        {"name": "techno electronic", "confidence": 0.2},
    ],
    "genre_predictions_file_id": "f",
}


def _recipe() -> Any:
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
    (block,) = [b for b in blocks if "def recommended_tags" in b]
    namespace: dict[str, Any] = {}
    exec(compile(block, str(PAGE), "exec"), namespace)
    return namespace["recommended_tags"]


async def test_the_any_language_recipe_gets_its_replies(
    kafka: KafkaTestBed, settings: Settings, engine: AsyncEngine
) -> None:
    recommended_tags = _recipe()
    await insert_track(engine, 7, "f", extra=STORED)
    async with running(settings, frozenset({Role.RESPONDER})):
        found = await asyncio.to_thread(
            recommended_tags, kafka.bootstrap_servers, 7, kafka.prefix, 30.0
        )
        missing = await asyncio.to_thread(
            recommended_tags, kafka.bootstrap_servers, 404, kafka.prefix, 30.0
        )
    assert [tag["name"] for tag in found["tags"]] == ["ambient electronic", "techno electronic"]
    assert found["error"] is None
    assert found["pending"] is False
    assert missing["error"]["kind"] == "not_found"
    assert missing["tags"] == []
