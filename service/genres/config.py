"""Settings from the environment: the variables listed in docs/interface.md.

Read by a plain pydantic model rather than pydantic-settings: that package's import (its
sources for dotenv, secrets, cloud vaults and CLIs, none used here) more than doubled the time
``genres`` took to refuse a bad setting (``python -m bench startup``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from genres.errors import ConfigurationError

DEFAULT_MODEL_VERSION = "1532dd069fb4f0e27c6833e28815f6b8c194dfec76fd9cd73460540fd720ffe1"


class Backend(StrEnum):
    REPLICATE = "replicate"
    LOCAL = "local"
    CASCADE = "cascade"
    """The local model with its head first; Replicate when the head is unsure."""
    NONE = "none"


Compression = Literal["none", "gzip", "snappy", "lz4", "zstd"]
"""Every codec Kafka defines, and none."""

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

FROM_FILE = (
    "kafka_sasl_username",
    "kafka_sasl_password",
    "kafka_ssl_key_password",
    "replicate_api_token",
    "database_url",
)
"""Settings also read from a file named by ``<NAME>_FILE`` (mounted secrets)."""


class Settings(BaseModel):
    """Every setting of the service; read once by the composition root.

    Each field comes from the variable of its name (in any case); arguments win over the
    environment."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    # Replicate (docs/interface.md)
    replicate_enabled: bool = Field(default=False, description="Classification through Replicate.")
    replicate_api_token: SecretStr | None = Field(default=None, description="Never logged.")
    replicate_top_n: Annotated[int, Field(ge=1, le=400)] = 10
    replicate_timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 120.0
    replicate_base_url: AnyHttpUrl = AnyHttpUrl("https://api.replicate.com/v1")
    replicate_model_version: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] = (
        DEFAULT_MODEL_VERSION
    )
    replicate_model_name: str = "mtg/effnet-discogs"
    replicate_max_predictions_per_minute: Annotated[int, Field(ge=1, le=100_000)] = 600
    replicate_prefer_wait_seconds: Annotated[int, Field(ge=1, le=60)] = Field(
        default=5,
        description=(
            "Prefer: wait on creation. Longer saves polls; shorter records the prediction's "
            "id sooner, so a crash resumes it instead of paying again."
        ),
    )
    classifier_backend: Backend | None = Field(
        default=None, description="`replicate` when REPLICATE_ENABLED, else `local`."
    )
    classifier_concurrency: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=64, description="Classifications (paid predictions) in flight per process."
    )
    classifier_records_in_flight: Annotated[int, Field(ge=1, le=100_000)] | None = Field(
        default=None,
        description=(
            "Records fetched and not yet finished per process (the commit window); fetching "
            "pauses when full. Default: twice CLASSIFIER_CONCURRENCY, so that claiming, "
            "recording and publishing never hold a classification's slot."
        ),
    )
    classifier_max_attempts: Annotated[int, Field(ge=1, le=100)] = 5

    # Infrastructure (docs/interface.md)
    kafka_bootstrap_servers: list[str] | None = Field(
        default=None,
        description="`host:port` of one or more brokers, comma-separated (spaces tolerated).",
    )
    database_url: str | None = None

    # Operational knobs (all optional)
    genres_topic_prefix: str = Field(
        default="",
        description="Prefix for topic and group names; empty in production, used by tests.",
    )
    kafka_enable_idempotence: bool = Field(
        default=False, description="Idempotent producer; off for Tansu, which lacks it."
    )
    kafka_client_id: str = "genres"
    kafka_compression: Compression = Field(
        default="gzip",
        description=(
            "Codec of the batches the service produces; its consumers read every codec "
            "whatever this is. gzip halves an outcome event even alone in its batch and is "
            "the one codec every Kafka client reads without an extra library "
            "(`python -m bench compression`)."
        ),
    )
    kafka_fetch_max_wait_ms: Annotated[int, Field(ge=0, le=60_000)] = 20
    kafka_session_timeout_ms: Annotated[int, Field(ge=500, le=600_000)] = 10_000
    kafka_heartbeat_interval_ms: Annotated[int, Field(ge=100, le=60_000)] = 3_000
    kafka_stall_seconds: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=30.0,
        description=(
            "A partition whose records wait this long without the consumer making progress "
            "is stalled: an ERROR line, genres_partition_stalled and /readyz say so."
        ),
    )
    kafka_topic_partitions: Annotated[int, Field(ge=1, le=1024)] = Field(
        default=3,
        description=(
            "Partitions of the topics the service creates. A role's processes share a topic's "
            "partitions, so this is the most processes of one role that can share the work "
            "(the classifier's concurrency within a process does not depend on it). Kafka can "
            "add partitions later but never remove them, and adding moves keys (tracks) to "
            "other partitions: choose the most replicas a role will run, not more. 3: up to "
            "three processes per role, and each topic's leaders spread over three brokers."
        ),
    )
    kafka_replication_factor: Annotated[int, Field(ge=1, le=16)] | None = Field(
        default=None,
        description=(
            "Replication factor of the topics the service creates; unset, the broker's "
            "default.replication.factor (KIP-464), as the cluster wants it."
        ),
    )
    kafka_create_topics: bool = Field(
        default=True,
        description=(
            "Create missing topics at start; false: never create, check at start that each "
            "topic exists (topics managed as code)."
        ),
    )
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism | None = Field(default=None, description="PLAIN if unset.")
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None
    kafka_ssl_certfile: str | None = Field(
        default=None, description="Client certificate (PEM) for mutual TLS."
    )
    kafka_ssl_keyfile: str | None = Field(
        default=None, description="Its private key (PEM), unless the certificate file holds it."
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        default=None, description="Password of an encrypted private key."
    )
    log_level: str = "INFO"
    log_format: str = Field(default="json", pattern="^(json|console)$")
    audio_max_bytes: Annotated[int, Field(ge=1)] = 200 * 1024 * 1024
    audio_allow_private_addresses: bool = False
    audio_max_seconds: Annotated[float, Field(gt=0)] = 30 * 60.0
    # genres.classify.local.length.MIN_SECONDS (not imported: it would load the model's code).
    audio_min_seconds: Annotated[float, Field(ge=0, le=3600)] = Field(
        default=3.0,
        description=(
            "Local backend and cascade: audio shorter than this fails as `audio_too_short` "
            "instead of being classified (the model reads ~3 s patches; a shorter track would "
            "be repeated to fill one); 0 turns the minimum off."
        ),
    )
    local_windows: Annotated[int, Field(ge=0, le=1000)] = Field(
        default=4,
        description=(
            "Local backend: ~3 s windows classified per track, spread across it (seeking where "
            "the file allows), so the cost per track does not grow with its length; 0 analyses "
            "every window of the track's first AUDIO_MAX_SECONDS."
        ),
    )
    local_head: Path | None = Field(
        default=None,
        description=(
            "Local backend: a head file written by `genres learn`; its labels and "
            "probabilities are output instead of the model's 33 tags."
        ),
    )
    local_workers: Annotated[int, Field(ge=0, le=1024)] | None = Field(
        default=None,
        description=(
            "Processes running the local model (default: the machine's cores; 0: none, the"
            " model runs in the process itself)."
        ),
    )
    cascade_min_confidence: Annotated[float, Field(gt=0, lt=1)] = Field(
        default=0.5,
        description=(
            "CLASSIFIER_BACKEND=cascade: a track whose head's top probability is below this "
            "goes to Replicate; `genres learn` proposes one for a target agreement."
        ),
    )
    health_port: Annotated[int, Field(ge=0, le=65535)] = Field(
        default=8080, description="Port of /healthz, /readyz and /metrics; 0 disables them."
    )
    health_host: str = Field(default="0.0.0.0", description="Address the health server binds.")
    replicate_cost_per_second: Annotated[float, Field(ge=0)] = Field(
        default=0.000095,
        description="USD per second of Replicate predict_time (~$0.00019 per ~2 s run).",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_environment(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        environment = {key.lower(): value for key, value in os.environ.items()}
        return _from_files(_known(cls, environment)) | _from_files(_known(cls, data))

    @field_validator("kafka_bootstrap_servers", mode="before")
    @classmethod
    def _server_list(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        return None if not value.strip() else [item.strip() for item in value.split(",")]

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _servers_have_ports(cls, value: list[str] | None) -> list[str] | None:
        for item in value or ():
            host, colon, port = item.rpartition(":")
            if not item:
                raise ValueError("an empty item in the list (host:port, comma-separated)")
            if not colon or not host or not port:
                raise ValueError(f"{item!r} has no port (host:port)")
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{item!r}: the port is not a number from 1 to 65535")
        return value

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper_case(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
    @classmethod
    def _readable(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                with open(value, "rb"):
                    pass
            except OSError as exc:
                raise ValueError(f"cannot read {value}: {_reason(exc)}") from None
        return value

    @field_validator(
        "database_url",
        "kafka_sasl_mechanism",
        "kafka_ssl_cafile",
        "kafka_ssl_certfile",
        "kafka_ssl_keyfile",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("kafka_compression", mode="before")
    @classmethod
    def _codec_any_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _database_url_is_postgres(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if not scheme.startswith("postgres"):
            raise ValueError("must be a postgresql:// or postgresql+asyncpg:// URL")
        return value

    @model_validator(mode="after")
    def _window_holds_the_classifications(self) -> Self:
        records = self.classifier_records_in_flight
        if records is not None and records < self.classifier_concurrency:
            raise ValueError(
                f"CLASSIFIER_RECORDS_IN_FLIGHT ({records}) is below CLASSIFIER_CONCURRENCY "
                f"({self.classifier_concurrency}): that many classifications could never run"
            )
        return self

    @model_validator(mode="after")
    def _backend_is_usable(self) -> Self:
        if self.backend is Backend.REPLICATE and not self.replicate_token:
            raise ValueError("the Replicate backend is enabled but REPLICATE_API_TOKEN is not set")
        if self.backend is Backend.CASCADE:
            missing = [
                name
                for name, value in (
                    ("LOCAL_HEAD", self.local_head),
                    ("REPLICATE_API_TOKEN", self.replicate_token),
                )
                if not value
            ]
            if missing:
                raise ValueError(
                    f"CLASSIFIER_BACKEND=cascade needs {' and '.join(missing)} "
                    "(a head to answer first, Replicate for what it is unsure of)"
                )
        return self

    @model_validator(mode="after")
    def _sasl_has_credentials(self) -> Self:
        if self.kafka_security_protocol.startswith("SASL"):
            for name in ("kafka_sasl_username", "kafka_sasl_password"):
                if not getattr(self, name):
                    raise ValueError(
                        f"KAFKA_SECURITY_PROTOCOL is {self.kafka_security_protocol} but "
                        f"{name.upper()} is not set"
                    )
        return self

    @model_validator(mode="after")
    def _client_key_has_its_certificate(self) -> Self:
        for name in ("kafka_ssl_keyfile", "kafka_ssl_key_password"):
            if getattr(self, name) is not None and self.kafka_ssl_certfile is None:
                raise ValueError(f"{name.upper()} is set but KAFKA_SSL_CERTFILE is not")
        return self

    @property
    def backend(self) -> Backend:
        if self.classifier_backend is not None:
            return self.classifier_backend
        return Backend.REPLICATE if self.replicate_enabled else Backend.LOCAL

    @property
    def classifications_in_flight(self) -> int:
        """The classifier's slots: classifications (paid predictions) running at once per
        process (CLASSIFIER_CONCURRENCY, its environment name from before the glossary)."""
        return self.classifier_concurrency

    @property
    def records_in_flight(self) -> int:
        """The classifier's commit window: CLASSIFIER_RECORDS_IN_FLIGHT, else twice the
        classifications in flight."""
        return self.classifier_records_in_flight or 2 * self.classifications_in_flight

    @property
    def replicate_token(self) -> str | None:
        if self.replicate_api_token is None:
            return None
        return self.replicate_api_token.get_secret_value() or None

    @property
    def compression_type(self) -> Literal["gzip", "snappy", "lz4", "zstd"] | None:
        """``KAFKA_COMPRESSION`` as Kafka clients take it (``None`` for no codec)."""
        return None if self.kafka_compression == "none" else self.kafka_compression

    @property
    def required_database_url(self) -> str:
        """``DATABASE_URL``; a ``ConfigurationError`` when it is not set."""
        if not self.database_url:
            raise ConfigurationError("DATABASE_URL is not set")
        return self.database_url

    def topic(self, name: str) -> str:
        return f"{self.genres_topic_prefix}{name}"

    def group(self, name: str) -> str:
        return f"{self.genres_topic_prefix}{name}"


def _known(cls: type[Settings], values: Mapping[str, object]) -> dict[str, object]:
    """The fields among ``values``, and the ``<name>_file`` of those that may come from one."""
    names = set(cls.model_fields) | {f"{name}_file" for name in FROM_FILE}
    return {name: value for name, value in values.items() if name in names}


def _from_files(values: dict[str, object]) -> dict[str, object]:
    """``values`` with each ``<name>_file`` replaced by ``<name>``: the file's content, its
    trailing newline stripped (how secrets are mounted). The value and its file both set is an
    error; so is a file that cannot be read, named without its content."""
    resolved = dict(values)
    for name in FROM_FILE:
        path = resolved.pop(f"{name}_file", None)
        if path is None or path == "":
            continue
        variable = f"{name}_FILE".upper()
        if resolved.get(name) not in (None, ""):
            raise ValueError(f"{name.upper()} and {variable} are both set: set one")
        try:
            with open(str(path), encoding="utf-8") as file:
                resolved[name] = file.read().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{variable}: cannot read {path}: {_reason(exc)}") from None
    return resolved


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return type(exc).__name__


def load_settings(**overrides: object) -> Settings:
    """Read the settings; a bad configuration raises ``ConfigurationError`` with one line."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigurationError(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    """One line naming each bad variable and why, never echoing the value (it may be secret)."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        location = "_".join(str(part) for part in error["loc"]).upper()
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{location}: {message}" if location else message)
    return "invalid configuration: " + "; ".join(parts)
