"""The embedded broker (Tansu) and PostgreSQL of ``genres demo``, ``genres dev up``, the
benches and the tests: the ``embedded`` extra, which the production image leaves out.

``servers`` runs them; ``reaper`` stops what a dying process leaves behind.
"""

from genres.embedded.servers import (
    BrokerStartError,
    EmbeddedBroker,
    EmbeddedPostgres,
    api_versions_probe,
    free_port,
    require,
)

__all__ = [
    "BrokerStartError",
    "EmbeddedBroker",
    "EmbeddedPostgres",
    "api_versions_probe",
    "free_port",
    "require",
]
