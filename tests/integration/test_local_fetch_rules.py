"""The local backend's audio download rules against a real HTTP server on loopback.

The server listens on 127.0.0.1 and on 127.0.0.2. For the redirect tests 127.0.0.2 plays a
public host (``address_is_public`` is patched to say so) that redirects to 127.0.0.1, which
stays non-public.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from aiohttp import web

from genres.classify.local import FetchPolicy, LocalClassifier, MusicnnModel
from genres.classify.local import fetch as fetch_module
from genres.classify.local.fetch import address_is_public, fetch_audio
from genres.classify.local.model import TAGS_PATH
from genres.classify.local.tags import genre_names
from genres.errors import AudioError, ClassificationTimeout, ServiceUnavailable
from genres_contracts import FailureKind

SAMPLE = Path(__file__).resolve().parents[2] / "service" / "genres" / "samples" / "ambi_drone.flac"
GENRES = genre_names(json.loads(TAGS_PATH.read_text()))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AudioServer:
    """Routes: /audio.flac, /text, /big, /big-chunked, /trickle, /status/{n},
    /redirect?to=URL, /loop/{n} (redirects forever)."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.requests: list[tuple[str, str]] = []
        app = web.Application()
        app.router.add_get("/audio.flac", self.audio)
        app.router.add_get("/text", self.text)
        app.router.add_get("/big", self.big)
        app.router.add_get("/big-chunked", self.big_chunked)
        app.router.add_get("/trickle", self.trickle)
        app.router.add_get("/status/{code}", self.status)
        app.router.add_get("/redirect", self.redirect)
        app.router.add_get("/loop/{n}", self.loop)
        self._runner = web.AppRunner(app)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    async def __aenter__(self) -> AudioServer:
        await self._runner.setup()
        for host in ("127.0.0.1", "127.0.0.2"):
            await web.TCPSite(self._runner, host, self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()

    def _seen(self, request: web.Request) -> None:
        self.requests.append((request.host, request.path))

    async def audio(self, request: web.Request) -> web.StreamResponse:
        self._seen(request)
        return web.Response(body=SAMPLE.read_bytes(), content_type="audio/flac")

    async def text(self, request: web.Request) -> web.StreamResponse:
        self._seen(request)
        return web.Response(text="<html>Not a song</html>" * 200, content_type="text/html")

    async def big(self, request: web.Request) -> web.StreamResponse:
        self._seen(request)
        return web.Response(body=b"\0" * 300_000, content_type="audio/mpeg")

    async def big_chunked(self, request: web.Request) -> web.StreamResponse:
        self._seen(request)
        response = web.StreamResponse(headers={"Content-Type": "audio/mpeg"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(40):
            await response.write(b"\0" * 10_000)
        await response.write_eof()
        return response

    async def trickle(self, request: web.Request) -> web.StreamResponse:
        self._seen(request)
        response = web.StreamResponse(headers={"Content-Type": "audio/mpeg"})
        response.content_length = 1_000_000
        await response.prepare(request)
        for _ in range(1000):
            await response.write(b"\0" * 10)
            await asyncio.sleep(0.1)
        return response

    async def status(self, request: web.Request) -> web.StreamResponse:
        self._seen(request)
        return web.Response(status=int(request.match_info["code"]), text="no")

    async def redirect(self, request: web.Request) -> web.StreamResponse:
        self._seen(request)
        raise web.HTTPFound(request.query["to"])

    async def loop(self, request: web.Request) -> web.StreamResponse:
        self._seen(request)
        n = int(request.match_info["n"])
        raise web.HTTPFound(f"/loop/{n + 1}")


@pytest_asyncio.fixture
async def server() -> AsyncIterator[AudioServer]:
    async with AudioServer() as running:
        yield running


@pytest_asyncio.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        yield http


@pytest.fixture(scope="module")
def model() -> MusicnnModel:
    return MusicnnModel()


OPEN = FetchPolicy(allow_private_addresses=True, deadline=10.0)
CLOSED = FetchPolicy(allow_private_addresses=False, deadline=10.0)


@pytest.fixture
def fake_public(monkeypatch: pytest.MonkeyPatch) -> None:
    """127.0.0.2 counts as public; every other address keeps the real rule."""
    real: Callable[[fetch_module.IPAddress], bool] = address_is_public
    two = ipaddress.ip_address("127.0.0.2")
    monkeypatch.setattr(fetch_module, "address_is_public", lambda a: a == two or real(a))


async def test_happy_path_classifies_a_url(
    server: AudioServer, client: httpx.AsyncClient, model: MusicnnModel
) -> None:
    local = LocalClassifier(http_client=client, model=model, top_n=5, fetch_policy=OPEN)
    from_url = await local.classify(server.url("/audio.flac"))
    from_path = await local.classify(str(SAMPLE))
    assert from_url.predictions == from_path.predictions
    assert len(from_url.predictions) == 5
    assert {p.name for p in from_url.predictions} <= GENRES
    assert from_url.extra["download_bytes"] == SAMPLE.stat().st_size


async def test_loopback_is_refused_when_private_addresses_are_not_allowed(
    server: AudioServer, client: httpx.AsyncClient, model: MusicnnModel
) -> None:
    local = LocalClassifier(http_client=client, model=model, fetch_policy=CLOSED)
    for url in (server.url("/audio.flac"), f"http://localhost:{server.port}/audio.flac"):
        with pytest.raises(AudioError) as info:
            await local.classify(url)
        assert info.value.kind is FailureKind.AUDIO_URL_REFUSED
    assert server.requests == []  # refused before connecting


@pytest.mark.usefixtures("fake_public")
async def test_a_redirect_to_loopback_is_refused(
    server: AudioServer, client: httpx.AsyncClient
) -> None:
    audio = await fetch_audio(server.url("/audio.flac", "127.0.0.2"), client=client, policy=CLOSED)
    audio.close()  # the "public" host itself is fine
    for target in (server.url("/audio.flac"), f"http://localhost:{server.port}/audio.flac"):
        url = server.url("/redirect", "127.0.0.2") + "?to=" + target
        with pytest.raises(AudioError) as info:
            await fetch_audio(url, client=client, policy=CLOSED)
        assert info.value.kind is FailureKind.AUDIO_URL_REFUSED
    assert (f"127.0.0.1:{server.port}", "/audio.flac") not in server.requests


@pytest.mark.usefixtures("fake_public")
async def test_a_redirect_to_another_scheme_is_refused(
    server: AudioServer, client: httpx.AsyncClient
) -> None:
    url = server.url("/redirect", "127.0.0.2") + "?to=file:///etc/passwd"
    with pytest.raises(AudioError) as info:
        await fetch_audio(url, client=client, policy=CLOSED)
    assert info.value.kind is FailureKind.AUDIO_URL_REFUSED


async def test_redirects_are_followed_up_to_the_limit(
    server: AudioServer, client: httpx.AsyncClient
) -> None:
    to = server.url("/audio.flac")
    audio = await fetch_audio(server.url("/redirect") + "?to=" + to, client=client, policy=OPEN)
    assert audio.size == SAMPLE.stat().st_size
    assert audio.url == to
    audio.close()
    with pytest.raises(AudioError) as info:
        await fetch_audio(server.url("/loop/0"), client=client, policy=OPEN)
    assert info.value.kind is FailureKind.AUDIO_FETCH_FAILED
    assert len([p for _, p in server.requests if p.startswith("/loop/")]) == 6


@pytest.mark.parametrize("path", ["/big", "/big-chunked"])
async def test_an_oversized_body_is_refused(
    server: AudioServer, client: httpx.AsyncClient, path: str
) -> None:
    policy = FetchPolicy(allow_private_addresses=True, max_bytes=100_000)
    with pytest.raises(AudioError) as info:
        await fetch_audio(server.url(path), client=client, policy=policy)
    assert info.value.kind is FailureKind.AUDIO_TOO_LARGE


async def test_a_body_at_the_limit_is_accepted(
    server: AudioServer, client: httpx.AsyncClient
) -> None:
    policy = FetchPolicy(allow_private_addresses=True, max_bytes=SAMPLE.stat().st_size)
    audio = await fetch_audio(server.url("/audio.flac"), client=client, policy=policy)
    assert audio.file.read() == SAMPLE.read_bytes()
    audio.close()


async def test_a_non_audio_body_is_unreadable(
    server: AudioServer, client: httpx.AsyncClient, model: MusicnnModel
) -> None:
    local = LocalClassifier(http_client=client, model=model, fetch_policy=OPEN)
    with pytest.raises(AudioError) as info:
        await local.classify(server.url("/text"))
    assert info.value.kind is FailureKind.AUDIO_UNREADABLE


async def test_a_trickling_server_times_out_within_the_deadline(
    server: AudioServer, client: httpx.AsyncClient
) -> None:
    policy = FetchPolicy(allow_private_addresses=True, deadline=1.0, read_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(ClassificationTimeout) as info:
        await fetch_audio(server.url("/trickle"), client=client, policy=policy)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 2.0
    assert info.value.retryable
    assert info.value.kind is FailureKind.TIMEOUT


async def test_a_404_fails_for_good_and_a_503_is_retryable(
    server: AudioServer, client: httpx.AsyncClient
) -> None:
    with pytest.raises(AudioError) as permanent:
        await fetch_audio(server.url("/status/404"), client=client, policy=OPEN)
    assert permanent.value.kind is FailureKind.AUDIO_FETCH_FAILED
    assert not permanent.value.retryable
    with pytest.raises(ServiceUnavailable) as transient:
        await fetch_audio(server.url("/status/503"), client=client, policy=OPEN)
    assert transient.value.kind is FailureKind.AUDIO_FETCH_FAILED
    assert transient.value.retryable


async def test_a_closed_port_is_retryable(client: httpx.AsyncClient) -> None:
    url = f"http://127.0.0.1:{_free_port()}/audio.flac"
    with pytest.raises(ServiceUnavailable) as info:
        await fetch_audio(url, client=client, policy=OPEN)
    assert info.value.kind is FailureKind.AUDIO_FETCH_FAILED


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:8.8.8.8", True),
        ("64:ff9b::a00:1", False),
        ("2002:7f00:1::", False),
    ],
)
def test_only_globally_routable_addresses_count_as_public(address: str, public: bool) -> None:
    assert address_is_public(ipaddress.ip_address(address)) is public
