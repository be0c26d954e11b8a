"""What ``genres demo`` and ``genres dev up`` share: the sample, its file server, its track.

A track as the platform would add it: the audio served over loopback HTTP as a CDN would serve
it, a ``file_id`` hashed from its bytes, a row in ``tracks``. And the settings under which all
roles run in one process on an embedded broker and answer within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

SAMPLE = Path(__file__).parents[1] / "samples" / "loop_garzul.flac"

ONE_PROCESS: dict[str, Any] = {
    "audio_allow_private_addresses": True,  # the sandbox's own loopback file server
    "kafka_session_timeout_ms": 1000,  # the groups join (and rejoin) in about a second
    "kafka_heartbeat_interval_ms": 300,
    "kafka_fetch_max_wait_ms": 10,
    "kafka_topic_partitions": 1,
    "health_port": 0,  # one process, no probes to answer
}
"""Settings for every role in one process on an embedded broker, answering within seconds."""


@contextlib.contextmanager
def serve_file(path: Path) -> Iterator[str]:
    """Serve ``path`` over loopback HTTP, as a CDN would; yields its URL."""
    handler = functools.partial(_QuietHandler, directory=str(path.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="sandbox-audio", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{quote(path.name)}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return None


async def file_id_of(path: Path) -> str:
    """The ``file_id`` the platform would give the file: a hash of its bytes."""
    return hashlib.sha256(await asyncio.to_thread(path.read_bytes)).hexdigest()[:12]


async def insert_track(engine: AsyncEngine, file_id: str, audio_url: str) -> int:
    """A row in the platform's ``tracks`` for ``audio_url``, as the platform would add it."""
    from sqlalchemy import text

    async with engine.begin() as conn:
        track_id: int = (
            await conn.execute(
                text(
                    "INSERT INTO tracks (id, file_id, audio_url) "
                    "SELECT coalesce(max(id), 0) + 1, :file_id, :audio_url FROM tracks "
                    "RETURNING id"
                ),
                {"file_id": file_id, "audio_url": audio_url},
            )
        ).scalar_one()
    return track_id
