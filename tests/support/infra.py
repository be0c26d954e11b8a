"""Helpers shared by the infrastructure fixtures (Docker detection, running coroutines)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import socket
from collections.abc import Callable, Coroutine
from functools import cache
from typing import Any, TypeVar

T = TypeVar("T")


class FallbackWarning(UserWarning):
    """A test bed that did not start, so the run falls back to the next choice (testcontainers
    to Apache Kafka or Tansu, or to a local or embedded PostgreSQL). pytest's configuration
    shows it rather than failing the run: the fallback is the intended behaviour."""


def run_async(factory: Callable[[], Coroutine[Any, Any, T]], timeout: float = 120.0) -> T:
    """Run a coroutine to completion in a private thread and loop.

    For synchronous fixtures: safe whether or not the caller's thread has an event loop.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result(timeout=timeout)


@cache
def docker_available() -> bool:
    """True when a Docker engine answers a ping within ~2 s.

    ``GENRES_TESTS_DOCKER=0`` skips Docker even when it runs (``=1`` requires nothing more
    than the ping either).
    """
    if os.environ.get("GENRES_TESTS_DOCKER", "").strip().lower() in {"0", "false", "no"}:
        return False
    if not _unix_socket_answers():
        return False
    try:
        import docker

        client = docker.from_env(timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def _unix_socket_answers() -> bool:
    """False when Docker's unix socket refuses a connection; True otherwise (another kind of
    ``DOCKER_HOST``, or the socket accepts).

    docker-py's unix connection leaves its socket open when ``connect`` fails
    (``docker/transport/unixconn.py``), which the garbage collector later reports as an
    unraisable ``ResourceWarning`` in whichever test runs then; so the socket is tried here
    first, with one that is always closed."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return True
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2)
        try:
            probe.connect(host.removeprefix("unix://"))
        except OSError:
            return False
    return True
