"""What each ``genres`` command does, once ``genres.cli.table`` has parsed its arguments.

Imports at the top are the standard library's only: each command first checks what it can
without the service (its arguments, then the settings it needs: ``common.settings_for``), then
imports what it runs. The heavier commands' bodies are this package's other modules.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from genres.cli.common import DATABASE, KAFKA, console, fail, run_async, settings_for

if TYPE_CHECKING:
    from genres_contracts import RecommendedTags


def run(role: str) -> None:
    settings = settings_for(KAFKA, DATABASE, service=True)
    from genres.bootstrap import ALL_ROLES, Role, serve

    roles = ALL_ROLES if role == "all" else frozenset({Role(role)})
    run_async(serve(settings, roles), settings)


def migrate() -> None:
    settings = settings_for(DATABASE)
    from genres.database.migrate import upgrade

    revision = run_async(upgrade(settings.required_database_url), settings)
    print(f"database at revision {revision}")


def grants(name: str, *, roles: list[str] | None, schema: str) -> None:
    """The GRANT statements, one a line (``genres.database.grants``)."""
    from genres.database.grants import ROLES, required_grants, statements

    try:
        lines = statements(name, required_grants(roles or ROLES), schema=schema)
    except ValueError as exc:
        fail(str(exc), code=2)
    print("\n".join(lines))


def classify(sources: list[str], *, as_json: bool) -> None:
    """Files, folders and URLs, in parallel (``genres.cli.classify``); exit 1 if any failed."""
    if len(sources) == 1:
        # One source: refuse what cannot be classified before importing anything.
        source = sources[0]
        if "://" in source and not source.startswith(("http://", "https://")):
            fail(f"{source}: only http(s) URLs, files and folders are accepted", code=2)
        if "://" not in source and not Path(source).exists():
            fail(f"{source}: no such file or folder")
    settings = settings_for()
    from genres.cli.classify import run_classify

    failed = run_async(
        run_classify(
            settings, sources, as_json=as_json, console=console(), errors=console(stderr=True)
        ),
        settings,
    )
    raise SystemExit(1 if failed else 0)


def recommend(track_id: int, *, limit: int, wait_ms: int, timeout: float, as_json: bool) -> None:
    settings = settings_for(KAFKA)
    from genres.kafka.client import genres_client
    from genres_contracts.kafka import (
        GenresClient,
        GenresClientError,
        InvalidRequest,
        Refused,
        RequestTimedOut,
        TrackNotFound,
        Unavailable,
    )

    clients: list[GenresClient] = []

    async def go() -> RecommendedTags | GenresClientError:
        # Built here: a setting it cannot use (a CA file) ends as one line, like the rest.
        client = genres_client(settings)
        clients.append(client)
        try:
            async with client:
                return await client.recommended_tags(
                    track_id, limit=limit, wait_ms=wait_ms, timeout=timeout + wait_ms / 1000
                )
        except GenresClientError as exc:
            return exc

    outcome = run_async(go(), settings)
    # An ACL denial is a setting to fix (exit 2), even one met closing, after an answer.
    refusal = clients[0].refusal if clients else None
    if refusal is not None and not isinstance(outcome, GenresClientError):
        _print_reply(outcome, as_json)
    if refusal is not None:
        fail(f"{refusal}: an ACL for the service's principal is missing (`genres acls`)", code=2)
    if isinstance(outcome, GenresClientError):
        if as_json and outcome.reply is not None:
            print(outcome.reply.model_dump_json())
        kind = {TrackNotFound: "not_found", InvalidRequest: "invalid_request"}.get(type(outcome))
        code = {InvalidRequest: 2, RequestTimedOut: 3, Unavailable: 3, Refused: 2}.get(
            type(outcome), 1
        )
        fail(f"{kind}: {outcome}" if kind else str(outcome), code=code)
    _print_reply(outcome, as_json)


def _print_reply(reply: RecommendedTags, as_json: bool) -> None:
    if as_json:
        print(reply.model_dump_json())
    else:
        from genres.cli.render import print_recommended

        print_recommended(console(), reply)


def backfill(
    *,
    dry_run: bool,
    limit: int | None,
    concurrency: int,
    wait: bool,
    timeout: float,
    other_model: bool,
) -> None:
    settings = settings_for(DATABASE, *(() if dry_run else (KAFKA,)))
    from genres.backfill.rule import BackfillOptions
    from genres.bootstrap import backfill as run_backfill
    from genres.cli.backfill import print_report, with_progress

    out = console()
    with with_progress(out, "listing" if dry_run else "requesting") as progress:
        report = run_async(
            run_backfill(
                settings,
                BackfillOptions(limit=limit, concurrency=concurrency, dry_run=dry_run),
                wait=wait,
                timeout=timeout,
                progress=progress,
                other_model=other_model,
            ),
            settings,
        )
    print_report(out, report, timeout=timeout)
    if report.failed:
        raise SystemExit(1)


def learn(
    directory: Path | None,
    *,
    from_database: bool,
    out: Path,
    teacher: str,
    soft: bool,
    min_tag_tracks: int,
    min_examples: int,
    target_agreement: float,
    standardise: bool,
) -> None:
    """A head from labelled folders or the database (``genres.cli.learn``); exit 1 if none."""
    if (directory is None) == (not from_database):
        fail("give either DIR or --from-database (see genres learn --help)", code=2)
    if directory is not None and not directory.is_dir():
        fail(f"{directory}: no such folder", code=2)
    if not out.parent.is_dir():
        fail(f"{out.parent}: no such folder for --out", code=2)
    settings = settings_for(*((DATABASE,) if from_database else ()))
    from genres.classify.local.learn import LearnError
    from genres.cli.learn import LearnOptions, Source, learn_from

    source = Source(directory, teacher, soft=soft, min_tag_tracks=min_tag_tracks)
    options = LearnOptions(out, min_examples, target_agreement, standardise)

    async def go() -> None:
        try:
            await learn_from(settings, source, options, console())
        except LearnError as exc:  # nothing could be learnt: the reason, exit 1
            fail(str(exc))

    run_async(go(), settings)


def demo(path: Path | None) -> None:
    if path is not None and not path.is_file():
        fail(f"{path}: no such file")
    settings = settings_for(classifier_backend="local")
    from genres.cli.demo import run_demo

    raise SystemExit(run_async(run_demo(settings, path, console()), settings))


def dev_up(*, sample: bool) -> None:
    """``genres dev up``: embedded servers for trying the roles by hand."""
    settings = settings_for()
    from genres.cli.dev import up

    raise SystemExit(run_async(up(console(), sample=sample), settings))


def schema(directory: Path) -> None:
    from genres_contracts.schema import write

    for path in write(directory):
        print(path)


def acls(
    principal: str,
    *,
    roles: list[str] | None,
    form: str,
    creates_topics: bool | None,
    cluster: str,
) -> None:
    """The ACLs of ``roles`` (``all``: what ``genres run all`` runs) for ``principal``."""
    settings = settings_for()
    from genres.kafka.acls import SERVICE_ROLES, required_acls
    from genres.kafka.manifests import kafka_acls_lines, kafka_user

    chosen = [name for role in roles or ["all"] for name in _roles(role, SERVICE_ROLES)]
    creates = settings.kafka_create_topics if creates_topics is None else creates_topics
    found = required_acls(settings, chosen, creates_topics=creates)
    if form == "strimzi":
        made = f"genres acls --principal {principal} --format strimzi: the ACLs of "
        comment = made + f"{', '.join(chosen)}, {'with' if creates else 'without'} CREATE."
        print(kafka_user(found, principal, cluster=cluster, comment=comment), end="")
    else:
        print("\n".join(kafka_acls_lines(found, principal)))


def _roles(role: str, service: tuple[str, ...]) -> tuple[str, ...]:
    return service if role == "all" else (role,)


def topics(form: str, *, replicas: int, cluster: str) -> None:
    """Every topic the roles and commands use: names, or Strimzi ``KafkaTopic`` resources."""
    settings = settings_for()
    from genres.kafka.broker import all_topics
    from genres.kafka.manifests import kafka_topics

    if form == "strimzi":
        print(kafka_topics(settings, replicas=replicas, cluster=cluster), end="")
    else:
        print("\n".join(sorted(all_topics(settings))))
