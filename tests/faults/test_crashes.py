"""Scenario 1: ``kill -9`` a role three times mid-run, restarting it each time.

Each role runs as its own ``genres run <role>`` process; the fake Replicate runs on the test's
loop with ~200 ms per prediction so that the 500-upload run lasts long enough to be
interrupted. Kill moments are drawn from a seeded RNG as points of progress (predictions
created, rows projected, seconds of request traffic) plus a random delay, so every kill
lands mid-run whatever the machine's speed.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from tests.faults.cascade_load import mixed_clips, prepare_load
from tests.faults.checks import expected_predictions
from tests.faults.harness import (
    Scenario,
    Track,
    all_projected,
    finished_claims,
    make_tracks,
    pending_claims,
    pending_tracks,
    projected_count,
    projected_reaches,
    replace_file,
)
from tests.support.broker import KafkaTestBed
from tests.support.bus import read_topic
from tests.support.fake_replicate import FakeReplicate
from tests.support.service import service_settings
from tests.support.synth_classes import served
from tests.support.waiting import holds_within

from genres.kafka.client import genres_client
from genres_contracts import RecommendedTags, topics
from genres_contracts.kafka import GenresClient, GenresClientError, RequestTimedOut

pytestmark = [pytest.mark.timeout(300)]

UPLOADS = 500
KILLS = 3
LATENCY_MS = 200
SETTLE_TIMEOUT = 150.0


async def _settle(engine: AsyncEngine, count: int) -> bool:
    return await all_projected(engine, count, timeout=SETTLE_TIMEOUT, interval=0.25)


async def test_the_classifier_killed_three_times_mid_run_loses_nothing_and_pays_little_twice(
    kafka: KafkaTestBed,
    fake_replicate: FakeReplicate,
    scenario: Scenario,
) -> None:
    rng = random.Random(20261125)
    concurrency = 16
    fake_replicate.configure(latency_ms=LATENCY_MS)
    tracks = make_tracks(UPLOADS)
    roles = await scenario.begin(
        kafka.bootstrap_servers, kafka.prefix, fake_replicate, tracks, concurrency=concurrency
    )
    in_flight_at_kill: list[int] = []
    created_at_kill: list[int] = []
    uploaded = {(t.id, t.file_id): t.audio_url for t in tracks}
    events = 0
    try:
        await roles.start_each("projector", "classifier")
        events += await scenario.upload(tracks)
        for number in range(KILLS):
            # Each kill comes after the running process has created 10-20% of the run's
            # predictions: it is busy, whatever the machine's speed.
            target = fake_replicate.stats.creations + rng.randint(UPLOADS // 10, UPLOADS // 5)

            async def reached(target: int = target) -> bool:
                return fake_replicate.stats.creations >= target

            assert await holds_within(reached, within=90, interval=0.02), roles.tail("classifier")
            await asyncio.sleep(rng.uniform(0.0, 0.3))
            in_flight_at_kill.append(await pending_claims(scenario.engine))
            created_at_kill.append(fake_replicate.stats.creations)
            await roles.kill("classifier")
            if number == 0:
                # While it is down, the platform replaces the audio of 5% of the tracks: the
                # old file's predictions must never land under the new file.
                replaced: list[Track] = []
                for track in rng.sample(tracks, UPLOADS // 20):
                    new = await replace_file(scenario.engine, track, f"b{track.id}")
                    uploaded[(new.id, new.file_id)] = new.audio_url
                    replaced.append(new)
                events += await scenario.upload(replaced)
            await roles.start("classifier")
        settled = await _settle(scenario.engine, UPLOADS)
    finally:
        codes = await roles.stop_all()

    verdict = await scenario.conclude(
        tracks,
        events=events,
        faults_injected=roles.kills,
        check={"uploaded_urls": uploaded, "crashes": KILLS, "concurrency": concurrency},
        claims_in_flight_at_kills=in_flight_at_kill,
        created_at_kills=created_at_kill,
    )
    verdict.assert_clean()
    assert settled, roles.tail("projector") + roles.tail("classifier")
    assert verdict.failed == 0
    # Every kill lands mid-run: the run was not over, and claims were in flight in total.
    assert all(n < events for n in created_at_kill), created_at_kill
    assert sum(in_flight_at_kill) > 0
    assert codes == {"projector": 0, "classifier": 0}, roles.tail("classifier")
    assert fake_replicate.stats.running == 0


CASCADE_UPLOADS = 100
CASCADE_SHARE = 0.3
"""About this share of the clips is below the threshold chosen for the scenario."""


# The embedded model runs for real here (the head's training, each clip analysed by the test
# and again by the classifier): about a minute of CPU, more than the others on a loaded machine.
@pytest.mark.timeout(480)
async def test_the_cascade_classifier_killed_mid_run_stores_every_upload_and_sends_the_unsure(
    kafka: KafkaTestBed,
    fake_replicate: FakeReplicate,
    scenario: Scenario,
    tmp_path: Path,
) -> None:
    """``CLASSIFIER_BACKEND=cascade`` with a head trained in the test (``cascade_load``):
    the classifier is killed twice mid-run and restarted. Every upload ends with the
    predictions of the side the threshold chose for it, told in its event; Replicate is asked
    for exactly the clips below the threshold (computed offline from the head), each paid
    once but for what the kills had in flight."""
    rng = random.Random(20261207)
    kills = 2
    concurrency = 8
    fake_replicate.configure(latency_ms=LATENCY_MS)
    prepared_at = time.monotonic()
    bodies = await asyncio.to_thread(mixed_clips, CASCADE_UPLOADS, 7)
    async with served(bodies) as base:
        load = await asyncio.to_thread(
            prepare_load, base, bodies, tmp_path, share=CASCADE_SHARE, seed=31
        )
        prepare_s = round(time.monotonic() - prepared_at, 1)
        tracks = load.tracks
        roles = await scenario.begin(
            kafka.bootstrap_servers,
            kafka.prefix,
            fake_replicate,
            tracks,
            concurrency=concurrency,
            **load.env(),
        )
        finished_at_kill: list[int] = []
        in_flight_at_kill: list[int] = []
        in_flight: set[int] = set()
        try:
            await roles.start_each("projector", "classifier")
            events = await scenario.upload(tracks)
            for _ in range(kills):
                # Each kill after the running process has finished 15-25% of the uploads.
                target = await finished_claims(scenario.engine) + rng.randint(
                    CASCADE_UPLOADS * 3 // 20, CASCADE_UPLOADS // 4
                )

                async def reached(target: int = target) -> bool:
                    return await finished_claims(scenario.engine) >= target

                assert await holds_within(reached, within=120, interval=0.05), roles.tail(
                    "classifier"
                )
                await asyncio.sleep(rng.uniform(0.0, 0.3))
                await roles.kill("classifier")
                # Read after the kill, before the restart: the claims the dead process held.
                claimed = await pending_tracks(scenario.engine)
                in_flight |= claimed
                in_flight_at_kill.append(len(claimed))
                finished_at_kill.append(await finished_claims(scenario.engine))
                await roles.start("classifier")
            settled = await _settle(scenario.engine, CASCADE_UPLOADS)
        finally:
            codes = await roles.stop_all()

    stats = fake_replicate.stats
    sent_urls = {t.audio_url for t in tracks if t.id in load.sent}
    records = await read_topic(kafka.bootstrap_servers, f"{kafka.prefix}{topics.GENRES_CLASSIFIED}")
    # Per track, the routes its events tell: (answered by, fallback, the head's confidence).
    routes: dict[int, set[tuple[str, str | None, float | None]]] = {}
    for record in records:
        event = json.loads(record.value)
        route = event.get("cascade") or {}
        routes.setdefault(int(event["track_id"]), set()).add(
            (route.get("answered_by"), route.get("fallback"), route.get("local_confidence"))
        )
    paid_twice = {url for url, n in stats.creations_per_url.items() if n > 1}
    verdict = await scenario.conclude(
        tracks,
        events=events,
        faults_injected=roles.kills,
        check={"crashes": kills, "concurrency": concurrency, "expected": load.expected},
        prepare_s=prepare_s,
        threshold=load.threshold,
        sent=len(load.sent),
        share_sent=round(len(load.sent) / CASCADE_UPLOADS, 3),
        creations=stats.creations,
        distinct_urls_created=len(stats.creations_per_url),
        in_flight_sent=len(in_flight & load.sent),
        claims_in_flight_at_kills=in_flight_at_kill,
        finished_at_kills=finished_at_kill,
    )
    verdict.assert_clean()
    assert settled, roles.tail("projector") + roles.tail("classifier")
    assert verdict.classified == CASCADE_UPLOADS
    assert verdict.failed == 0
    # Replicate saw exactly the clips below the threshold, each paid once: a second payment
    # only for a track whose claim a kill left in flight.
    assert set(stats.creations_per_url) == sent_urls
    assert 0 < len(sent_urls) < CASCADE_UPLOADS
    assert paid_twice <= {t.audio_url for t in tracks if t.id in in_flight}, paid_twice
    # Every event says which side answered (Replicate for the unsure, the head for the rest)
    # and the head's confidence, the one computed here.
    assert set(routes) == {t.id for t in tracks}
    for track in tracks:
        side = "replicate" if track.id in load.sent else "local"
        wanted = (side, None, load.confidences[track.audio_url])
        # A paid prediction resumed after a kill is published without the head's confidence
        # (the ledger keeps the prediction, not the local answer): allowed only for the
        # claims a kill left in flight.
        allowed = {wanted, (side, None, None)} if track.id in in_flight else {wanted}
        assert routes[track.id], track.id
        assert routes[track.id] <= allowed, (track.id, routes[track.id], wanted)
    assert all(n < CASCADE_UPLOADS for n in finished_at_kill), finished_at_kill
    assert codes == {"projector": 0, "classifier": 0}, roles.tail("classifier")
    assert stats.running == 0


async def test_the_projector_killed_three_times_mid_run_loses_nothing(
    kafka: KafkaTestBed,
    fake_replicate: FakeReplicate,
    scenario: Scenario,
) -> None:
    rng = random.Random(20261126)
    fake_replicate.configure(latency_ms=LATENCY_MS)
    tracks = make_tracks(UPLOADS)
    # A slower classifier keeps the projector busy for the whole run.
    roles = await scenario.begin(
        kafka.bootstrap_servers, kafka.prefix, fake_replicate, tracks, concurrency=4
    )
    projected_at_kill: list[int] = []
    try:
        await roles.start_each("projector", "classifier")
        events = await scenario.upload(tracks)
        for _ in range(KILLS):
            target = await projected_count(scenario.engine) + rng.randint(
                UPLOADS // 10, UPLOADS // 5
            )
            assert await projected_reaches(scenario.engine, target, timeout=90, interval=0.05), (
                roles.tail("projector")
            )
            await asyncio.sleep(rng.uniform(0.0, 0.3))
            projected_at_kill.append(await projected_count(scenario.engine))
            await roles.kill("projector")
            await roles.start("projector")
        settled = await _settle(scenario.engine, UPLOADS)
    finally:
        codes = await roles.stop_all()

    verdict = await scenario.conclude(
        tracks, events=events, faults_injected=roles.kills, projected_at_kills=projected_at_kill
    )
    verdict.assert_clean()
    assert settled, roles.tail("projector")
    assert all(n < UPLOADS for n in projected_at_kill), "every kill should land mid-run"
    assert codes == {"projector": 0, "classifier": 0}, roles.tail("projector")


async def test_the_responder_killed_three_times_with_requests_in_flight_never_answers_wrong(
    kafka: KafkaTestBed,
    fake_replicate: FakeReplicate,
    scenario: Scenario,
) -> None:
    """Requesters get an answer or a timeout error, never a wrong answer.

    Half the tracks are uploaded (classified and projected as usual); the other half are
    classified on demand by the requests themselves. Clients keep ~24 requests in flight
    (``wait_ms`` 0 or 1.5 s) while the responder is killed three times.
    """
    rng = random.Random(20261127)
    fake_replicate.configure(latency_ms=LATENCY_MS)
    tracks = make_tracks(UPLOADS)
    by_id = {t.id: t for t in tracks}
    # A short Replicate deadline: an on-demand marker lost with a killed responder is
    # reclaimed after twice that.
    roles = await scenario.begin(
        kafka.bootstrap_servers, kafka.prefix, fake_replicate, tracks, concurrency=32, timeout_s=5
    )
    settings = service_settings(kafka, scenario.database_url)
    tally = {"requests": 0, "answered": 0, "pending": 0, "timeouts": 0, "errors": 0}
    wrong: list[str] = []

    def judge(track: Track, reply: RecommendedTags, limit: int) -> None:
        expected = [
            {"name": n, "score": c} for n, c in expected_predictions(track.audio_url)[:limit]
        ]
        got = [tag.model_dump() for tag in reply.tags]
        if reply.track_id != track.id:
            wrong.append(f"asked {track.id}, answered for {reply.track_id}")
        elif reply.pending and not got:
            tally["pending"] += 1
        elif got != expected:
            wrong.append(f"track {track.id}: {got} instead of {expected}")
        else:
            tally["answered"] += 1

    stop = asyncio.Event()

    async def client(requester: GenresClient, seed: int) -> None:
        own = random.Random(seed)
        while not stop.is_set():
            track = by_id[own.randint(1, UPLOADS)]
            wait_ms = own.choice((0, 1500))
            limit = own.randint(1, 10)
            tally["requests"] += 1
            try:
                reply = await requester.recommended_tags(
                    track.id, limit=limit, wait_ms=wait_ms, timeout=wait_ms / 1000 + 3.0
                )
            except RequestTimedOut:
                tally["timeouts"] += 1
                continue
            except GenresClientError as exc:  # an error reply is a wrong answer here
                tally["errors"] += 1
                wrong.append(f"track {track.id}: {exc!r}")
                continue
            judge(track, reply, limit)

    try:
        await roles.start_each("projector", "classifier", "responder")
        events = await scenario.upload(tracks[: UPLOADS // 2])
        async with genres_client(settings) as requester:
            clients = [asyncio.create_task(client(requester, seed)) for seed in range(24)]
            try:
                for _ in range(KILLS):
                    # Requests flow for a while (and are answered), then the kill.
                    answered = tally["answered"]

                    async def flowing(answered: int = answered) -> bool:
                        return tally["answered"] >= answered + 20

                    assert await holds_within(flowing, within=60), roles.tail("responder")
                    await asyncio.sleep(rng.uniform(0.5, 1.5))
                    await roles.kill("responder")
                    await asyncio.sleep(rng.uniform(0.0, 1.0))
                    await roles.start("responder")
                answered = tally["answered"]

                async def recovered() -> bool:
                    return tally["answered"] >= answered + 20

                assert await holds_within(recovered, within=60), roles.tail("responder")
            finally:
                stop.set()
                await asyncio.gather(*clients)

            # Every track ends with its predictions, classified on demand when needed.
            async def final(track: Track) -> RecommendedTags:
                for _ in range(6):
                    try:
                        reply = await requester.recommended_tags(
                            track.id, limit=10, wait_ms=10_000, timeout=15.0
                        )
                    except RequestTimedOut:
                        continue
                    if not reply.pending:
                        return reply
                raise AssertionError(f"track {track.id} never got its tags")

            gate = asyncio.Semaphore(32)

            async def final_one(track: Track) -> None:
                async with gate:
                    judge(track, await final(track), 10)

            await asyncio.gather(*(final_one(t) for t in tracks))
        settled = await _settle(scenario.engine, UPLOADS)
    finally:
        codes = await roles.stop_all()

    verdict = await scenario.conclude(
        tracks,
        events=events + tally["requests"] + len(tracks),
        faults_injected=roles.kills,
        wrong=len(wrong),
        **tally,
    )
    assert not wrong, "\n".join(wrong[:20])
    verdict.assert_clean()
    assert settled
    assert codes["responder"] == 0, roles.tail("responder")
