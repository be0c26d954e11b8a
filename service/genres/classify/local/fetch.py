"""A bounded, SSRF-safe download of one audio file over http(s).

(Just over 300 lines: the address checks, the pinned request and the redirect loop guard one
another, and a rule split from the others is a rule that can be bypassed.)

Rules (each failure raises a ``ClassificationError`` whose ``kind`` says which rule):

* only ``http`` and ``https`` URLs; anything else (``file:``, ``ftp:``, ``data:``...) is refused
  with ``AUDIO_URL_REFUSED``;
* the host is resolved here and *every* address it resolves to must be public: loopback,
  private, link-local, shared (CGNAT), multicast, reserved and unspecified addresses, and IPv6
  forms embedding such an IPv4 address (mapped, 6to4, Teredo, NAT64), are refused with
  ``AUDIO_URL_REFUSED`` unless ``allow_private_addresses``. The connection then goes to the
  address that was checked (the URL's host stays in the ``Host`` header and TLS SNI, and the
  certificate is verified against it), so a second DNS answer cannot swap in another address;
* redirects are followed by hand, at most ``max_redirects``, each hop checked like the first;
* the body is streamed into a temporary file (memory up to ``SPOOL_BYTES``, then disk) and cut
  off at ``max_bytes`` with ``AUDIO_TOO_LARGE`` (a larger ``Content-Length`` is refused before
  reading);
* connect and read timeouts per request, and an overall deadline for the whole fetch
  (redirects included): past it, ``ClassificationTimeout`` (retryable);
* HTTP 4xx (but 408 and 429) and DNS names that do not exist are permanent ``AudioError``
  (``AUDIO_FETCH_FAILED``); 5xx, 408, 429, connection failures and temporary DNS failures are
  ``ServiceUnavailable`` with kind ``AUDIO_FETCH_FAILED`` (retryable).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

import httpx

from genres.errors import AudioError, ClassificationTimeout, ServiceUnavailable
from genres_contracts import FailureKind

if TYPE_CHECKING:
    from genres.config import Settings

SPOOL_BYTES = 8 * 1024 * 1024
"""Bodies up to this size stay in memory; larger ones go to a temporary file on disk."""

_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    """Limits of one audio download."""

    max_bytes: int = 200 * 1024 * 1024
    allow_private_addresses: bool = False
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    deadline: float = 120.0
    """Seconds for the whole fetch, redirects and body included."""
    max_redirects: int = 5
    user_agent: str = "genres-classifier/0.1 (+local musicnn backend)"

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchPolicy:
        deadline = settings.replicate_timeout_seconds
        return cls(
            max_bytes=settings.audio_max_bytes,
            allow_private_addresses=settings.audio_allow_private_addresses,
            deadline=deadline,
            connect_timeout=min(10.0, deadline),
            read_timeout=min(30.0, deadline),
        )


@dataclass(slots=True)
class FetchedAudio:
    """A downloaded body in a (spooled) temporary file, positioned at its start."""

    file: IO[bytes]
    size: int
    url: str
    """The final URL, after redirects."""
    content_type: str | None
    seconds: float

    def close(self) -> None:
        self.file.close()


def is_http_url(value: str) -> bool:
    """Whether ``value`` looks like an http(s) URL (rather than a path)."""
    scheme, sep, _ = value.partition("://")
    return bool(sep) and scheme.lower() in ("http", "https")


def looks_like_url(value: str) -> bool:
    """Whether ``value`` names a scheme (``x://`` or ``file:``...), so it is not a plain path."""
    scheme, sep, _ = value.partition(":")
    if not sep or not scheme or len(scheme) == 1:  # "C:\\..." is a Windows path
        return False
    return scheme[0].isalpha() and all(c.isalnum() or c in "+-." for c in scheme)


def address_is_public(address: IPAddress) -> bool:
    """False for every address a server-side fetch must not reach."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:  # ::ffff:a.b.c.d is a.b.c.d
            return address_is_public(address.ipv4_mapped)
        embedded: list[ipaddress.IPv4Address | None] = [address.sixtofour]
        if address.teredo is not None:
            embedded.extend(address.teredo)
        if address in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if any(v4 is not None and not address_is_public(v4) for v4 in embedded):
            return False
    return address.is_global and not address.is_multicast and not address.is_reserved


def _refused(message: str) -> AudioError:
    return AudioError(message, kind=FailureKind.AUDIO_URL_REFUSED)


async def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        message = f"cannot resolve the audio host {host!r}: {exc.strerror or exc}"
        if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
            raise AudioError(message, kind=FailureKind.AUDIO_FETCH_FAILED) from None
        raise ServiceUnavailable(message, kind=FailureKind.AUDIO_FETCH_FAILED) from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise AudioError(
            f"the audio host {host!r} has no address", kind=FailureKind.AUDIO_FETCH_FAILED
        )
    return addresses


async def _vet(url: httpx.URL, policy: FetchPolicy) -> IPAddress:
    """Check ``url``'s scheme and every address of its host; the address to connect to."""
    if url.scheme not in ("http", "https"):
        raise _refused(f"only http and https audio URLs are accepted, not {url.scheme or '?'}:")
    if not url.host:
        raise _refused("the audio URL has no host")
    if url.userinfo:
        raise _refused("audio URLs with credentials are not accepted")
    port = url.port or (443 if url.scheme == "https" else 80)
    addresses = await _resolve(url.host, port)
    if not policy.allow_private_addresses:
        for address in addresses:
            if not address_is_public(address):
                raise _refused(
                    f"the audio host {url.host!r} resolves to a non-public address ({address}); "
                    "AUDIO_ALLOW_PRIVATE_ADDRESSES=true allows it"
                )
    return addresses[0]


def _pinned_request(
    client: httpx.AsyncClient, url: httpx.URL, address: IPAddress, policy: FetchPolicy
) -> httpx.Request:
    """A GET to ``address`` carrying ``url``'s host in ``Host`` and SNI."""
    host_header = url.netloc.decode("ascii").rsplit("@", 1)[-1]
    target = url.copy_with(host=str(address))
    extensions: dict[str, object] = {}
    if url.scheme == "https":
        extensions["sni_hostname"] = url.host
    return client.build_request(
        "GET",
        target,
        headers={"Host": host_header, "User-Agent": policy.user_agent, "Accept": "audio/*, */*"},
        timeout=httpx.Timeout(
            connect=policy.connect_timeout,
            read=policy.read_timeout,
            write=policy.read_timeout,
            pool=policy.connect_timeout,
        ),
        extensions=extensions,
    )


def _status_error(status: int, url: httpx.URL) -> AudioError | ServiceUnavailable:
    message = f"the audio server answered HTTP {status} for {_redact(url)}"
    if status >= 500 or status in (408, 429):
        return ServiceUnavailable(message, kind=FailureKind.AUDIO_FETCH_FAILED)
    return AudioError(message, kind=FailureKind.AUDIO_FETCH_FAILED)


def _redact(url: httpx.URL) -> str:
    """The URL without query and fragment (they may carry signed tokens)."""
    return str(url.copy_with(query=None, fragment=None))


async def fetch_audio(
    url: str, *, client: httpx.AsyncClient, policy: FetchPolicy = FetchPolicy()
) -> FetchedAudio:
    """Download ``url`` under ``policy`` (see the module's rules)."""
    started = time.perf_counter()
    try:
        current = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise _refused(f"not a valid URL: {exc}") from None
    try:
        async with asyncio.timeout(policy.deadline):
            return await _fetch(current, client, policy, started)
    except TimeoutError:
        raise ClassificationTimeout(
            f"fetching the audio took longer than {policy.deadline:g} s"
        ) from None


async def _fetch(
    current: httpx.URL, client: httpx.AsyncClient, policy: FetchPolicy, started: float
) -> FetchedAudio:
    for _hop in range(policy.max_redirects + 1):
        address = await _vet(current, policy)
        request = _pinned_request(client, current, address, policy)
        with _transport_errors(
            f"the audio server at {current.host!r} timed out",
            f"cannot fetch the audio from {current.host!r}",
        ):
            response = await client.send(request, stream=True, follow_redirects=False)
        try:
            if response.status_code in _REDIRECT_CODES:
                location = response.headers.get("Location")
                if not location:
                    raise AudioError(
                        f"a redirect without Location from {_redact(current)}",
                        kind=FailureKind.AUDIO_FETCH_FAILED,
                    )
                try:
                    current = current.join(location)
                except (httpx.InvalidURL, ValueError) as exc:
                    raise _refused(f"the audio URL redirects to an invalid URL: {exc}") from None
                continue
            if response.status_code != 200:
                raise _status_error(response.status_code, current)
            return await _read_body(response, current, policy, started)
        finally:
            await response.aclose()
    raise AudioError(
        f"more than {policy.max_redirects} redirects fetching the audio",
        kind=FailureKind.AUDIO_FETCH_FAILED,
    )


@contextlib.contextmanager
def _transport_errors(timed_out: str, broken: str) -> Iterator[None]:
    """httpx's failures as the classifier's: a timeout, or a connection that failed."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise ClassificationTimeout(f"{timed_out} ({type(exc).__name__})") from None
    except httpx.HTTPError as exc:
        raise ServiceUnavailable(
            f"{broken}: {type(exc).__name__}: {exc}", kind=FailureKind.AUDIO_FETCH_FAILED
        ) from None


async def _read_body(
    response: httpx.Response, url: httpx.URL, policy: FetchPolicy, started: float
) -> FetchedAudio:
    too_large = AudioError(
        f"the audio is larger than the {policy.max_bytes} byte limit",
        kind=FailureKind.AUDIO_TOO_LARGE,
    )
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.strip().isdigit() and int(declared) > policy.max_bytes:
        raise too_large
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115
    size = 0
    try:
        with _transport_errors(
            f"the audio server at {url.host!r} stalled",
            f"the audio download from {url.host!r} broke off",
        ):
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > policy.max_bytes:
                    raise too_large
                spool.write(chunk)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return FetchedAudio(
        file=spool,
        size=size,
        url=_redact(url),
        content_type=response.headers.get("Content-Type"),
        seconds=time.perf_counter() - started,
    )
