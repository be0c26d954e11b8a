"""``bench compression``: bytes and CPU of each Kafka codec on the service's own records.

Builds record batches exactly as the producers do (aiokafka's batch builder, the code behind
``KAFKA_COMPRESSION``) from real ``GenresClassified`` events (ten Discogs predictions each),
for batches of 1 to 64 records, and reads them back as a consumer would. Prints, per codec and
batch size, bytes per record on the wire and CPU microseconds per record to compress and to
decompress (process time, the best of several rounds: it is the same on a busy machine).

    uv run python -m bench compression

The pipeline's batches are small: the producer lingers 1 ms and the classifier publishes each
outcome as soon as it is recorded, so at 200/s over 3 partitions a batch holds one to a few
records. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from bench.infra import report
from genres_contracts import GenresClassified, ModelRef, Prediction

CODECS = {
    "none": DefaultRecordBatch.CODEC_NONE,
    "gzip": DefaultRecordBatch.CODEC_GZIP,
    "snappy": DefaultRecordBatch.CODEC_SNAPPY,
    "lz4": DefaultRecordBatch.CODEC_LZ4,
    "zstd": DefaultRecordBatch.CODEC_ZSTD,
}


def _labels() -> list[str]:
    text = resources.files("genres.classify").joinpath("discogs400-labels.json").read_text()
    return [
        label.split("---")[1].lower() + " " + label.split("---")[0].lower()
        for label in json.loads(text)
    ]


def outcome_events(count: int, seed: int = 7) -> list[bytes]:
    """``count`` realistic ``GenresClassified`` values (random labels and confidences)."""
    rng = random.Random(seed)
    labels = _labels()
    events = []
    for track_id in range(1, count + 1):
        picked = rng.sample(labels, 10)
        scores = sorted((rng.random() * 0.5 for _ in picked), reverse=True)
        events.append(
            GenresClassified(
                event_id=str(uuid.UUID(int=rng.getrandbits(128))),
                source_event_id=str(uuid.UUID(int=rng.getrandbits(128))),
                track_id=track_id,
                file_id=f"{rng.getrandbits(48):012x}",
                predictions=[
                    Prediction(name=name, confidence=round(score, 4))
                    for name, score in zip(picked, scores, strict=True)
                ],
                model=ModelRef(name="mtg/effnet-discogs", version="1532dd06" * 8),
                classified_at=datetime(2026, 11, 28, tzinfo=UTC),
            )
            .model_dump_json()
            .encode()
        )
    return events


def _build(codec: int, values: Sequence[bytes]) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=codec,
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=16 * 1024 * 1024,
    )
    headers = [("content-type", b"application/json")]
    for offset, value in enumerate(values):
        builder.append(
            offset, timestamp=None, key=str(offset).encode(), value=value, headers=headers
        )
    return bytes(builder.build())


def _read(raw: bytes) -> int:
    return sum(len(record.value or b"") for record in DefaultRecordBatch(raw))


def measure(codec: str, batch: int, events: list[bytes], rounds: int) -> dict[str, float]:
    batches = [events[i : i + batch] for i in range(0, len(events) - batch + 1, batch)]
    best_write = best_read = float("inf")
    size = 0
    for _ in range(rounds):
        start = time.process_time()
        built = [_build(CODECS[codec], values) for values in batches]
        best_write = min(best_write, time.process_time() - start)
        start = time.process_time()
        for raw in built:
            _read(raw)
        best_read = min(best_read, time.process_time() - start)
        size = sum(map(len, built))
    records = len(batches) * batch
    return {
        "bytes_per_record": round(size / records, 1),
        "compress_us_per_record": round(best_write * 1e6 / records, 1),
        "decompress_us_per_record": round(best_read * 1e6 / records, 1),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    events = outcome_events(args.records)
    results: dict[str, Any] = {}
    for batch in args.batch_sizes:
        for codec in CODECS:
            results[f"{codec}@{batch}"] = measure(codec, batch, events, args.rounds)
    return {"value_bytes_mean": round(sum(map(len, events)) / len(events), 1), **results}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench compression", description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=2048)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--rounds", type=int, default=5)
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    result = run(args)
    table = [
        f"{batch:>5} {codec:>6} {row['bytes_per_record']:>10} "
        f"{row['compress_us_per_record']:>12} {row['decompress_us_per_record']:>14}"
        for batch in args.batch_sizes
        for codec in CODECS
        for row in [result[f"{codec}@{batch}"]]
    ]
    return report(
        result,
        f"GenresClassified values: {result['value_bytes_mean']} bytes on average",
        f"{'batch':>5} {'codec':>6} {'bytes/rec':>10} {'compress us':>12} {'decompress us':>14}",
        *table,
    )


if __name__ == "__main__":
    main()
