"""Every codec Kafka defines is readable and writable by the service's clients.

Brokers hand batches to consumers compressed as their producer wrote them: a consumer that
lacks a codec cannot fetch past such a batch. aiokafka reads gzip by itself and the other three
through cramjam, which must be a run-time dependency (so the production image carries it),
not a test one.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from aiokafka import codec
from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from genres.config import load_settings
from genres.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]
CODECS = {
    "gzip": DefaultRecordBatch.CODEC_GZIP,
    "snappy": DefaultRecordBatch.CODEC_SNAPPY,
    "lz4": DefaultRecordBatch.CODEC_LZ4,
    "zstd": DefaultRecordBatch.CODEC_ZSTD,
}


def test_the_client_library_has_every_codec() -> None:
    assert codec.has_gzip()
    assert codec.has_snappy()
    assert codec.has_lz4()
    assert codec.has_zstd()


@pytest.mark.parametrize("name", sorted(CODECS))
def test_a_batch_in_each_codec_round_trips(name: str) -> None:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=CODECS[name],
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    values = [b'{"track_id": %d, "file_id": "f"}' % i for i in range(50)]
    for offset, value in enumerate(values):
        builder.append(offset, timestamp=None, key=b"1", value=value, headers=[])
    raw = bytes(builder.build())
    batch = DefaultRecordBatch(raw)
    assert batch.compression_type == CODECS[name]
    assert [record.value for record in batch] == values
    assert len(raw) < sum(map(len, values))


def test_the_codecs_are_run_time_dependencies_of_the_service() -> None:
    """What the production image installs (`uv sync --no-dev`) includes cramjam."""
    exported = subprocess.run(
        ["uv", "export", "--frozen", "--no-dev", "--all-packages", "--no-hashes"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert any(line.startswith("cramjam==") for line in exported.splitlines())


@pytest.mark.parametrize(
    ("given", "client"),
    [("none", None), ("gzip", "gzip"), ("Snappy", "snappy"), ("LZ4", "lz4"), ("zstd", "zstd")],
)
def test_kafka_compression_names_the_codec_the_producers_use(
    given: str, client: str | None
) -> None:
    assert load_settings(kafka_compression=given).compression_type == client


def test_an_unknown_codec_is_a_one_line_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="KAFKA_COMPRESSION: Input should be 'none'"):
        load_settings(kafka_compression="brotli")
