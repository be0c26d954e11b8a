"""Failovers on the secured cluster (issue 20, item 6), driven from outside: ``genres run all``
over SASL_SSL as ``User:genres`` with exactly its derived ACLs, the Replicate backend on the
fake Replicate (which counts paid predictions), the platform's uploads written as a super user.

* **A leader killed under load.** Uploads flow (acks=all); ``kill -9`` the broker leading
  ``track.uploaded[0]`` once a fifth of them are projected; restart it once the service has
  moved on. Asserted: nothing lost or wrong (``tests.faults.checks``), nothing paid twice,
  no (track, file) classified twice (one event id each); a republished outcome (the same
  event again, at least once) is counted and bounded by the classifier's commit window;
  every ``/readyz`` sample 200; no ERROR line and at most a few WARNING lines.
* **Two of three brokers down** (``min.insync.replicas=2`` unmet), killed while
  classifications run (a slow fake: outcomes wait to be published), and uploads sent during
  the outage with acks=1 (the surviving leader takes them; Kafka 4's eligible leader replicas
  (KIP-966) keep the high watermark, hence consumers, behind them until the ISR is whole
  again). Within the stall bound plus the brokers' fencing: an ERROR ``partition stalled``
  line, ``genres_partition_stalled`` 1 and ``/readyz`` 503. After the brokers return: ready
  again, every upload projected, nothing paid twice. Then, classifications running again, two
  brokers frozen (SIGSTOP) and SIGTERM: exit 0 within the shutdown deadline, no traceback; a
  new process finishes what that one left, paying nothing twice.

* **An idle service with two brokers down** (nothing to publish, nothing to consume), one of
  them the responder group's coordinator: no partition stalls, but that group's coordinator
  is lost (found again on the survivor, which refuses its heartbeats). Within the bound: an
  ERROR ``group stalled`` line, ``genres_group_stalled`` 1, ``/readyz`` 503 naming the group;
  200 again after the brokers return.

Each scenario prints its figures (``faults:`` lines, as the fault suite does).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from genres.bootstrap import SHUTDOWN_SECONDS
from genres_contracts import topics
from tests.cluster.failover import (
    Health,
    health,
    levels,
    loud_lines,
    outcome_duplicates,
    report,
    run_all,
    show,
    upload,
)
from tests.faults.checks import check_tracks
from tests.faults.harness import current_projected, make_tracks, seed_tracks
from tests.support.fake_replicate import FakeReplicate
from tests.support.kafka_cluster import BROKERS, SecuredCluster
from tests.support.waiting import eventually

pytestmark = [pytest.mark.timeout(300)]

CONCURRENCY = 8
#: the classifier's commit window (CLASSIFIER_RECORDS_IN_FLIGHT's default): what one failover
#: may have it run again
IN_FLIGHT = 2 * CONCURRENCY
#: "at most a few WARNING lines" (issue 20): the client's lines pass once per cause (logger,
#: template, error) per 10 s and once more with the count; a failover touches up to about ten
#: causes (fetch, produce, connect, metadata, coordinator, heartbeat, commit): 6-16 measured
WARNINGS_BOUND = 20
#: how long a killed broker takes to be fenced (``broker.session.timeout.ms``) and its
#: partitions led elsewhere, plus the watchdog's sampling: the margin over KAFKA_STALL_SECONDS
FENCING_S = 4.5
STALL_MARGIN_S = FENCING_S + 10.0
STALL_SECONDS = 3


def _prefix() -> str:
    return f"f{uuid.uuid4().hex[:8]}."


def _led(cluster: SecuredCluster, broker: int, *names: str) -> dict[str, list[int]]:
    """The partitions of each topic that ``broker`` leads."""
    return {
        name: sorted(p for p, (leader, _) in cluster.partitions(name).items() if leader == broker)
        for name in names
    }


async def _ready(probe: Health, within: float, what: str) -> float:
    async def ready() -> bool:
        return (await probe.ready()).status == 200

    return await eventually(ready, within=within, what=what, interval=0.2)


async def _all_projected(engine: AsyncEngine, ids: set[int], within: float, what: str) -> float:
    async def done() -> bool:
        return ids <= await current_projected(engine)

    return await eventually(done, within=within, what=what, interval=0.25)


async def test_a_leader_killed_under_load_loses_nothing_pays_nothing_twice_and_stays_quiet(
    cluster: SecuredCluster,
    engine: AsyncEngine,
    database_url: str,
    fake_replicate: FakeReplicate,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    started = time.monotonic()
    count = 300
    prefix = _prefix()
    fake_replicate.configure(latency_ms=150)
    tracks = make_tracks(count)
    await seed_tracks(engine, tracks)
    roles, base = run_all(
        cluster,
        prefix,
        database_url,
        fake_replicate,
        tmp_path,
        concurrency=CONCURRENCY,
        # a failover (fencing 4.5 s, then a new leader) must stay well within it
        KAFKA_STALL_SECONDS="15",
    )
    uploaded = f"{prefix}{topics.TRACK_UPLOADED}"
    classified = f"{prefix}{topics.GENRES_CLASSIFIED}"
    async with health(base) as probe:
        try:
            await roles.start("all")
            await _ready(probe, 90, "run all ready")
            victim = await asyncio.to_thread(cluster.leader, uploaded, 0)
            led = await asyncio.to_thread(_led, cluster, victim, uploaded, classified)
            async with probe.sampling() as samples:
                sending = asyncio.create_task(upload(cluster, prefix, tracks, acks="all", rate=50))
                await _all_projected(
                    engine, {t.id for t in tracks[: count // 5]}, 60, "a fifth projected"
                )
                projected_at_kill = len(await current_projected(engine))
                killed_at = time.monotonic()
                await asyncio.to_thread(cluster.kill, victim)
                # moved on: a further tenth projected, then the broker comes back
                await _all_projected(
                    engine,
                    {t.id for t in tracks[: count // 5 + count // 10]},
                    60,
                    "progress after the kill",
                )
                resumed_s = time.monotonic() - killed_at
                await asyncio.to_thread(cluster.start, victim)
                restarted_s = time.monotonic() - killed_at
                events = await sending
                settle_s = await _all_projected(
                    engine, {t.id for t in tracks}, 120, "every upload projected"
                )
            for name in (uploaded, classified, "__consumer_offsets"):
                await asyncio.to_thread(cluster.wait_in_sync, name)
        finally:
            codes = await roles.stop_all(timeout=SHUTDOWN_SECONDS + 10)
    log = roles.logs()
    loud = loud_lines(log)
    counted = levels(loud)
    not_ready = [s for s in samples if s.status != 200]
    duplicates = await outcome_duplicates(cluster, prefix)
    verdict = await check_tracks(
        engine,
        cluster.internal_bootstrap_servers,
        prefix,
        tracks,
        fake_stats=fake_replicate.stats,
        concurrency=CONCURRENCY,
    )
    report(
        verdict.figures(
            events=events,
            faults_injected=1,
            started=started,
            victim=victim,
            victim_led=led,
            projected_at_kill=projected_at_kill,
            progress_again_s=round(resumed_s, 1),
            restarted_after_s=round(restarted_s, 1),
            settled_after_restart_s=round(settle_s, 1),
            readyz_samples=len(samples),
            readyz_not_200=len(not_ready),
            log_lines=counted,
            outcomes=duplicates,
            exit_codes=codes,
        ),
        record_property,
    )
    print(show(loud))
    verdict.assert_clean()
    assert verdict.duplicate_paid == 0
    assert 0 < projected_at_kill < count
    assert duplicates["pairs"] == count
    assert duplicates["classified_twice"] == 0
    assert duplicates["republished"] <= IN_FLIGHT, duplicates
    assert samples
    assert not_ready == [], [
        (round(s.at - killed_at, 1), s.status, s.body.get("checks")) for s in not_ready
    ]
    assert counted["ERROR"] == counted["CRITICAL"] == 0, show(loud)
    assert counted["WARNING"] <= WARNINGS_BOUND, show(loud)
    assert "Traceback" not in log, log[-4000:]
    assert codes == {"all": 0}, log[-4000:]


async def _since(
    moment: float, check: Callable[[], Awaitable[bool]], within: float, what: str
) -> float:
    """Seconds from ``moment`` until ``check`` holds (polled every 0.2 s)."""
    await eventually(check, within=within, what=what, interval=0.2)
    return round(time.monotonic() - moment, 1)


async def test_two_of_three_brokers_down_stall_loudly_lose_nothing_and_recover(
    cluster: SecuredCluster,
    engine: AsyncEngine,
    database_url: str,
    fake_replicate: FakeReplicate,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    started = time.monotonic()
    before, during, last = make_tracks(40), make_tracks(40, start=41), make_tracks(24, start=81)
    tracks = before + during + last
    prefix = _prefix()
    # slow enough that work is in flight when the brokers fall: outcomes to publish
    fake_replicate.configure(latency_ms=500)
    await seed_tracks(engine, tracks)
    roles, base = run_all(
        cluster,
        prefix,
        database_url,
        fake_replicate,
        tmp_path,
        concurrency=CONCURRENCY,
        KAFKA_STALL_SECONDS=str(STALL_SECONDS),
    )
    uploaded = f"{prefix}{topics.TRACK_UPLOADED}"
    bound = STALL_SECONDS + STALL_MARGIN_S
    async with health(base) as probe:

        async def error_line() -> bool:
            return any(
                line.level == "ERROR" and "stalled" in line.message
                for line in loud_lines(roles.logs())
            )

        async def gauge() -> bool:
            return await probe.stalled() == 1

        async def status(wanted: int) -> bool:
            return (await probe.ready()).status == wanted

        async def paid(count: int) -> bool:
            return fake_replicate.stats.creations >= count

        try:
            await roles.start("all")
            await _ready(probe, 90, "run all ready")
            events = await upload(cluster, prefix, before, acks="all", rate=200)
            await eventually(lambda: paid(CONCURRENCY + 1), within=60, what="the first paid")
            survivor = await asyncio.to_thread(cluster.leader, uploaded, 0)
            down = tuple(b for b in range(BROKERS) if b != survivor)

            # -- two down: loud within the bound
            killed_at = time.monotonic()
            await asyncio.to_thread(cluster.kill, *down)
            sending = asyncio.create_task(upload(cluster, prefix, during, acks=1, rate=50))
            async with probe.sampling() as outage:
                loud_s = await asyncio.gather(
                    _since(killed_at, error_line, bound, "an ERROR stalled line"),
                    _since(killed_at, gauge, bound, "genres_partition_stalled 1"),
                    _since(killed_at, lambda: status(503), bound, "/readyz 503"),
                )
                events += await sending
                projected_while_down = len(await current_projected(engine))
                restarted_at = time.monotonic()
                await asyncio.to_thread(cluster.start, *down)
                ready_again_s = await _since(
                    restarted_at, lambda: status(200), 90, "/readyz 200 after the brokers return"
                )
            await _all_projected(
                engine, {t.id for t in before + during}, 90, "every upload projected after"
            )
            recovered_s = round(time.monotonic() - restarted_at, 1)

            # -- two down again with classifications running, then SIGTERM
            events += await upload(cluster, prefix, last, acks="all", rate=200)
            await eventually(
                lambda: paid(len(before + during) + CONCURRENCY), within=60, what="the last paid"
            )
            # frozen this time (SIGSTOP: connections open, nothing answered), the hardest
            # case for a shutdown, and thawed at once afterwards (a restart costs ~10 s)
            cluster.pause(*down)
            await eventually(lambda: status(503), within=bound, what="not ready again")
            stopping = time.monotonic()
            code = await roles.stop("all", timeout=SHUTDOWN_SECONDS + 15)
            stop_s = round(time.monotonic() - stopping, 1)
            first_log = roles.logs()
            left = len({t.id for t in last} - await current_projected(engine))

            # -- what that process left is finished by the next, paid once
            cluster.resume(*down)
            await roles.start("all", name="again")
            await _all_projected(engine, {t.id for t in tracks}, 90, "every upload projected")
        finally:
            codes = await roles.stop_all(timeout=SHUTDOWN_SECONDS + 10)
    loud = loud_lines(first_log)
    counted = levels(loud)
    client_errors = [
        line
        for line in loud
        if line.level != "WARNING" and not line.logger.startswith("genres.observability")
    ]
    outcomes = await outcome_duplicates(cluster, prefix)
    verdict = await check_tracks(
        engine,
        cluster.internal_bootstrap_servers,
        prefix,
        tracks,
        fake_stats=fake_replicate.stats,
        concurrency=CONCURRENCY,
    )
    report(
        verdict.figures(
            events=events,
            faults_injected=2,
            started=started,
            brokers_down=list(down),
            stall_seconds=STALL_SECONDS,
            error_line_s=loud_s[0],
            gauge_s=loud_s[1],
            not_ready_s=loud_s[2],
            readyz_503_samples=sum(s.status == 503 for s in outage),
            readyz_samples=len(outage),
            projected_while_down=projected_while_down,
            left_by_sigterm=left,
            ready_again_s=ready_again_s,
            all_projected_after_return_s=recovered_s,
            sigterm_exit=code,
            sigterm_s=stop_s,
            log_lines=counted,
            outcomes=outcomes,
            exit_codes=codes,
        ),
        record_property,
    )
    print(show(loud))
    verdict.assert_clean()
    assert verdict.duplicate_paid == 0
    assert outcomes["classified_twice"] == 0
    assert max(loud_s) <= bound
    assert code == 0, first_log[-4000:]
    assert stop_s < SHUTDOWN_SECONDS + 5, first_log[-4000:]
    assert "Traceback" not in first_log, first_log[-6000:]
    assert "CancelledError" not in first_log, first_log[-6000:]
    assert client_errors == [], show(client_errors)
    assert codes["again"] == 0, roles.logs()[-4000:]


def _coordinator(cluster: SecuredCluster, group: str) -> int:
    [described] = cluster.admin().describe_consumer_groups([group]).values()
    return int(described.result(timeout=30).coordinator.id)


async def test_an_idle_service_with_two_brokers_down_turns_not_ready_then_ready_again(
    cluster: SecuredCluster,
    engine: AsyncEngine,
    database_url: str,
    fake_replicate: FakeReplicate,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    """Nothing to read or write, two brokers killed, one of them the responder group's
    coordinator: that group's coordinator is lost (found again on the survivor, which refuses
    its heartbeats), so the service is not ready within the bound, naming the group; ready
    again once the brokers are back."""
    prefix = _prefix()
    roles, base = run_all(
        cluster,
        prefix,
        database_url,
        fake_replicate,
        tmp_path,
        concurrency=CONCURRENCY,
        KAFKA_STALL_SECONDS=str(STALL_SECONDS),
    )
    bound = STALL_SECONDS + STALL_MARGIN_S
    async with health(base) as probe:

        async def status(wanted: int) -> bool:
            return (await probe.ready()).status == wanted

        async def named() -> bool:
            sample = await probe.ready()
            return sample.status == 503 and " group " in str(sample.body)

        try:
            await roles.start("all")
            await _ready(probe, 90, "run all ready")
            # The responder group's coordinator among the two: a group led by the survivor
            # keeps taking heartbeats (only its commits would fail).
            coordinator = await asyncio.to_thread(
                _coordinator, cluster, f"{prefix}genres-responder"
            )
            down = (coordinator, (coordinator + 1) % BROKERS)
            killed_at = time.monotonic()
            await asyncio.to_thread(cluster.kill, *down)
            not_ready_s = await _since(killed_at, named, bound, "/readyz 503 naming a group")
            body = (await probe.ready()).body
            groups = await probe.metric("genres_group_stalled")
            restarted_at = time.monotonic()
            await asyncio.to_thread(cluster.start, *down)
            ready_again_s = await _since(
                restarted_at, lambda: status(200), 60, "/readyz 200 after the brokers return"
            )
        finally:
            codes = await roles.stop_all(timeout=SHUTDOWN_SECONDS + 10)
    loud = loud_lines(roles.logs())
    figures = {
        "stall_seconds": STALL_SECONDS,
        "not_ready_s": not_ready_s,
        "ready_again_s": ready_again_s,
        "groups_stalled": groups,
        "log_lines": levels(loud),
        "exit_codes": codes,
    }
    for name, value in figures.items():
        record_property(name, value)
    print("faults:", json.dumps(figures, sort_keys=True, default=str))
    print(show(loud))
    assert not_ready_s <= bound
    assert "group" in str(body), body
    assert groups >= 1, groups
    assert any(
        line.level == "ERROR" and line.message.startswith("group stalled") for line in loud
    ), show(loud)
    assert codes == {"all": 0}, roles.logs()[-4000:]
