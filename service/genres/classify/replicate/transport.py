"""HTTP to Replicate: one call read in full inside the deadline, the token sent only to the
API's host and never across a redirect, network failures mapped to classification errors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from genres.classify.replicate.redaction import Redactor
from genres.classify.replicate.retries import Deadline
from genres.errors import ClassificationTimeout, MalformedOutput, ServiceUnavailable

MAX_BODY_BYTES = 8 * 1024 * 1024
"""A prediction or a 400-label output file is a few KB; anything this large is not one."""


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer read in full (bodies here are small and capped)."""

    method: str
    url: str
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        # orjson: the 400-label output file is the largest thing the classifier parses.
        return orjson.loads(self.body)


class Transport:
    def __init__(self, session: aiohttp.ClientSession, token: str, base_url: str) -> None:
        self.session = session
        self._token = token
        self._api_host = urlsplit(base_url).netloc
        self.redact = Redactor(token)

    async def send(
        self,
        method: str,
        url: str,
        *,
        read_timeout: float,
        deadline: Deadline,
        payload: object | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        remaining = deadline.remaining
        if remaining <= 0:
            raise ClassificationTimeout(f"no time left for {method} {self.redact.url(url)}")
        # `total` keeps every call, connection and body included, inside the deadline.
        timeout = aiohttp.ClientTimeout(
            total=remaining, connect=min(10.0, remaining), sock_read=min(read_timeout, remaining)
        )
        auth = self.auth_headers(url)
        try:
            async with self.session.request(
                method,
                url,
                json=payload,
                headers={**auth, **(headers or {})},
                timeout=timeout,
                # Output files may redirect to storage; the API never does, and a redirect
                # must never carry the token anywhere.
                allow_redirects=not auth,
            ) as response:
                body = await _read_capped(response)
                return Reply(method, url, response.status, response.headers, body)
        except TimeoutError as exc:
            raise ClassificationTimeout(
                f"{method} {self.redact.url(url)} timed out ({type(exc).__name__})"
            ) from None
        except aiohttp.ClientError as exc:
            raise ServiceUnavailable(
                f"{method} {self.redact.url(url)} failed: {type(exc).__name__}"
            ) from None

    async def post_without_deadline(self, url: str, *, timeout: float) -> int:
        """A bodiless POST whose status alone matters (a cancel); network errors propagate."""
        async with self.session.post(
            url,
            headers=self.auth_headers(url),
            timeout=aiohttp.ClientTimeout(total=timeout),
            allow_redirects=False,
        ) as response:
            return response.status

    def auth_headers(self, url: str) -> dict[str, str]:
        # Output files may live on another host; the token goes only to the API's host.
        if urlsplit(url).netloc != self._api_host:
            return {}
        return {"Authorization": f"Bearer {self._token}"}


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    if (response.content_length or 0) > MAX_BODY_BYTES:
        raise MalformedOutput(f"answer of {response.content_length} bytes is too large")
    body = bytearray()
    async for chunk in response.content.iter_any():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise MalformedOutput(f"answer larger than {MAX_BODY_BYTES} bytes")
    return bytes(body)
