"""``bench cascade``: the share of tracks ``CLASSIFIER_BACKEND=cascade`` sends to Replicate
against its agreement with Replicate, with the cost and cap arithmetic.

From held-out tracks (each: the head's top probability, and whether its top label is the
teacher's), ``cascade_threshold.agreement_table`` gives, per ``CASCADE_MIN_CONFIDENCE``, the
share sent to Replicate and the agreement of the tracks answered locally; the tracks sent are
answered by Replicate itself, so the whole agreement is ``kept x agreement + sent``. Then, for
that share: Replicate runs per 1,000 uploads and their cost (``--cost-per-run``, ~$0.00019),
and the uploads a minute the account's cap allows (``--cap`` creations a minute, paced 1%
under it by the service).

    uv run python -m bench cascade                          # the stand-in head (below)
    uv run python -m bench cascade --held-out pairs.json    # [[top probability, agrees], ...]

Without ``--held-out`` the head is the tests' stand-in (``tests/support/cascade_standin.py``:
a logistic head on synthetic embeddings of six classes, ~80% top-1), whose figures show the
arithmetic, not the embedded model's quality; it also runs the cascade on fresh clips against
the fake Replicate (which answers each clip's label) at the threshold chosen for 0.9, and
prints the share it measured. The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
from tests.support.cascade_standin import StandInHead, StandInLocal, collection, held_out
from tests.support.fake_replicate import FakeConfig, FakeReplicate

from bench.infra import report
from genres.classify.cascade import CascadeClassifier
from genres.classify.cascade_threshold import ThresholdChoice, agreement_table, choose_threshold
from genres.classify.factory import build_replicate_classifier
from genres.classify.ranking import discogs_name
from genres.config import load_settings

CDN = "https://cdn.example/clips"
PACE_MARGIN = 1.01
"""The service spaces creations 60 s x 1.01 / cap apart (README, "Operating and scaling")."""


def row(choice: ThresholdChoice, *, cap: int, cost_per_run: float) -> dict[str, Any]:
    kept = 1.0 - choice.share_sent
    local = choice.agreement
    overall = (kept * local if local is not None else 0.0) + choice.share_sent
    creations_per_minute = cap / PACE_MARGIN
    return {
        "threshold": choice.threshold,
        "share_sent": round(choice.share_sent, 4),
        "local_agreement": None if local is None else round(local, 4),
        "agreement": round(overall, 4),
        "runs_per_1000": round(1000 * choice.share_sent, 1),
        "usd_per_1000": round(1000 * choice.share_sent * cost_per_run, 4),
        "uploads_per_minute_at_cap": (
            None if choice.share_sent == 0 else round(creations_per_minute / choice.share_sent)
        ),
        "reached": choice.reached,
    }


async def measured(head: StandInHead, threshold: float, per_class: int) -> dict[str, Any]:
    """The cascade on fresh clips against the fake Replicate: the share it really sent."""
    clips = collection(per_class, seed=3, base=CDN)
    config = FakeConfig(latency_ms=20, answers={clip.url: clip.label for clip in clips})
    async with FakeReplicate(config) as fake, aiohttp.ClientSession() as session:
        settings = load_settings(
            replicate_api_token=fake.token,
            replicate_base_url=fake.base_url,
            replicate_max_predictions_per_minute=100_000,
        )
        cascade = CascadeClassifier(
            StandInLocal(head, clips),
            build_replicate_classifier(settings, session),
            min_confidence=threshold,
        )
        gate = asyncio.Semaphore(32)

        async def one(url: str) -> str:
            async with gate:
                return (await cascade.classify(url)).predictions[0].name

        answers = await asyncio.gather(*(one(clip.url) for clip in clips))
        creations = fake.stats.creations
    agreeing = sum(a == discogs_name(c.label) for a, c in zip(answers, clips, strict=True))
    return {
        "tracks": len(clips),
        "sent": creations,
        "share_sent": round(creations / len(clips), 4),
        "agreement": round(agreeing / len(clips), 4),
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench cascade", description=__doc__.split("\n\n")[0])
    p.add_argument("--held-out", type=Path, help="JSON [[top probability, agrees], ...]")
    p.add_argument(
        "--thresholds",
        type=float,
        nargs="+",
        default=[0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95],
    )
    p.add_argument("--targets", type=float, nargs="+", default=[0.85, 0.9, 0.95])
    p.add_argument("--cap", type=int, default=600, help="creations a minute (the account's)")
    p.add_argument("--cost-per-run", type=float, default=0.00019, help="USD per Replicate run")
    p.add_argument("--per-class", type=int, default=80, help="stand-in held-out clips per class")
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    head = None
    if args.held_out is not None:
        pairs = [(float(p), bool(a)) for p, a in json.loads(args.held_out.read_text())]
        source = str(args.held_out)
    else:
        head = StandInHead.fit(collection(60, seed=1, base=CDN))
        pairs = held_out(head, collection(args.per_class, seed=2, base=CDN))
        source = "stand-in head on synthetic embeddings (tests/support/cascade_standin.py)"
    money = {"cap": args.cap, "cost_per_run": args.cost_per_run}
    table = [row(c, **money) for c in agreement_table(pairs, args.thresholds)]
    chosen = {str(target): row(choose_threshold(pairs, target), **money) for target in args.targets}
    result: dict[str, Any] = {
        "source": source,
        "held_out": len(pairs),
        "table": table,
        "chosen": chosen,
    }
    if head is not None and "0.9" in chosen and chosen["0.9"]["reached"]:
        result["measured_at_0.9"] = asyncio.run(
            measured(head, chosen["0.9"]["threshold"], args.per_class // 2)
        )

    def line(label: str, r: dict[str, Any]) -> str:
        local = "-" if r["local_agreement"] is None else f"{r['local_agreement']:.3f}"
        at_cap = r["uploads_per_minute_at_cap"] or "unbounded"
        return (
            f"{label:>16} {r['share_sent']:>6.3f} {local:>7} {r['agreement']:>7.3f} "
            f"{r['runs_per_1000']:>7} {r['usd_per_1000']:>8.4f} {at_cap!s:>10}"
        )

    header = (
        f"{'threshold':>16} {'sent':>6} {'local':>7} {'overall':>7} {'runs/1k':>7} "
        f"{'$/1k':>8} {'uploads/min':>10}"
    )
    lines = [f"held-out tracks: {len(pairs)} ({source})", header]
    lines += [line(f"{r['threshold']:g}", r) for r in table]
    lines += [
        line(f"target {t} -> {r['threshold']:g}" + ("" if r["reached"] else "!"), r)
        for t, r in chosen.items()
    ]
    if "measured_at_0.9" in result:
        m = result["measured_at_0.9"]
        lines.append(
            f"measured through the cascade and the fake Replicate at target 0.9: "
            f"{m['sent']} of {m['tracks']} sent ({m['share_sent']:.3f}), "
            f"agreement {m['agreement']:.3f}"
        )
    return report(result, *lines)


if __name__ == "__main__":
    main()
