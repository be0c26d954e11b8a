"""The service's AsyncAPI 3.0 document, generated from the code.

Every channel of docs/interface.md is declared (`channels`) on a FastStream broker that
never connects, with the real message models of :mod:`genres_contracts` and the topic and
consumer-group constants the roles use (their handlers consume raw records, so their own
signatures say nothing about payloads). What FastStream cannot express (message headers, the
Kafka key, consumer groups, the request's dynamic reply address) is added to the generated
document by :class:`GenresAsyncAPI`, so ``faststream docs gen`` and :func:`write_asyncapi`
write the same file.

Regenerate ``docs/asyncapi.json`` after changing a message model or a channel::

    uv run python -m genres.asyncapi docs/asyncapi.json
    # same output:
    uv run faststream docs gen --factory genres.asyncapi:build_app --out docs/asyncapi.json

Nothing here runs when the service starts: the broker is built only by :func:`build_app`.
"""

from genres.asyncapi.channels import ENDPOINTS, REQUEST_KEY, Endpoint
from genres.asyncapi.document import (
    DEFAULT_PATH,
    TITLE,
    GenresAsyncAPI,
    build_app,
    build_broker,
    main,
    package_version,
    render,
    write_asyncapi,
)

__all__ = [
    "DEFAULT_PATH",
    "ENDPOINTS",
    "REQUEST_KEY",
    "TITLE",
    "Endpoint",
    "GenresAsyncAPI",
    "build_app",
    "build_broker",
    "main",
    "package_version",
    "render",
    "write_asyncapi",
]
