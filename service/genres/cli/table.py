"""The commands as a table: each one's name, words, arguments, and the call its arguments make.

A command's arguments and the call that reads them sit side by side, so a flag's destination
and the parameter it fills are seen (and changed) together. Standard library only: the calls
go to ``genres.cli.commands``, whose bodies import the service once the arguments are good.
This module is long because it is the whole command line's surface, flag by flag, in one place.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from genres.cli import commands
from genres.cli.arguments import Parser, bounded, cluster_option, number_option, principal

ROLES = ("classifier", "projector", "responder")
"""``genres.bootstrap.Role``'s values, here so that a wrong role is refused before importing it
(a unit test keeps the two equal)."""
GRANT_ROLES = ("classifier", "projector", "responder", "backfill")
"""``genres.database.grants.ROLES``, here for the same reason (a unit test keeps them equal)."""

BUS_ROLES = (*ROLES, "recommend", "backfill")
"""``genres.kafka.acls.ROLES``: the roles and the commands that use the bus (a unit test keeps
the two equal)."""

Arguments = argparse.Namespace


class Command(NamedTuple):
    """One ``genres`` command: ``arguments`` adds its flags, ``call`` runs it with them.

    (A named tuple, not a dataclass: ``dataclasses`` imports ``inspect``, a tenth of the
    start-up budget of ``genres --help``.)"""

    name: str
    summary: str
    description: str
    arguments: Callable[[argparse.ArgumentParser], None]
    call: Callable[[Arguments], None]


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    return None


def _run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("role", choices=(*ROLES, "all"), help="%(choices)s")


def _grants(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the PostgreSQL role to grant to (taken as spelt)")
    parser.add_argument(
        "--role",
        dest="roles",
        action="append",
        choices=GRANT_ROLES,
        help="only what this role needs (repeatable; default: all of %(choices)s)",
    )
    parser.add_argument("--schema", default="public", help="the tables' schema (default public)")


def _classify(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "sources", nargs="+", metavar="PATH_OR_URL", help="audio files, folders, http(s) URLs"
    )
    parser.add_argument(
        "--json",
        dest="as_json",
        action="store_true",
        help="one JSON object per line and source: path, predictions, model, seconds, or error",
    )


def _recommend(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("track_id", type=bounded(int, 1, None), help="the track id")
    parser.add_argument(
        "--limit", type=bounded(int, 1, 20), default=5, help="at most this many tags (1-20)"
    )
    number_option(
        parser, "--wait-ms", int, (0, 30_000), 0, "MS", "wait this long for a classification"
    )
    number_option(
        parser,
        "--timeout",
        float,
        (0.001, None),
        10.0,
        "S",
        "seconds to wait for the reply, beyond --wait-ms",
    )
    parser.add_argument(
        "--json", dest="as_json", action="store_true", help="print the reply as JSON"
    )


def _backfill(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dry-run", action="store_true", help="list the tracks only (reads the database only)"
    )
    parser.add_argument(
        "--limit", type=bounded(int, 1, None), metavar="N", help="at most this many tracks"
    )
    number_option(parser, "--concurrency", int, (1, 1000), 10, "N", "requests in flight")
    parser.add_argument(
        "--wait", action="store_true", help="wait for the outcomes; list the tracks that failed"
    )
    parser.add_argument(
        "--other-model",
        action="store_true",
        help="also the tracks whose predictions another model or version than the configured "
        "one made (or one not recorded)",
    )
    number_option(parser, "--timeout", float, (0, None), 600.0, "S", "seconds to wait for outcomes")


def _learn(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", nargs="?", type=Path, metavar="DIR", help="labelled folders")
    parser.add_argument(
        "--from-database", action="store_true", help="learn from the database's tracks"
    )
    parser.add_argument("--out", type=Path, required=True, metavar="PATH", help="the head file")
    parser.add_argument(
        "--teacher",
        choices=("replicate", "tags"),
        default="replicate",
        help="with --from-database: Replicate's stored predictions or the tracks' tags "
        "(default replicate)",
    )
    parser.add_argument(
        "--soft",
        action="store_true",
        help="with --teacher replicate: learn the stored score distribution, not the top label",
    )
    number_option(
        parser,
        "--min-tag-tracks",
        int,
        (1, None),
        20,
        "N",
        "with --teacher tags: tags on >= N tracks",
    )
    number_option(
        parser, "--min-examples", int, (2, None), 5, "N", "fewest examples a label may have"
    )
    number_option(
        parser,
        "--target-agreement",
        float,
        (0.01, 1.0),
        0.9,
        "SHARE",
        "agreement with the teacher the proposed cascade threshold must reach",
    )
    parser.add_argument(
        "--standardise",
        action="store_true",
        help="standardise each feature first (default: the embedding as the model's own "
        "batch-norm leaves it, which measured as good or better)",
    )


def _demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path", nargs="?", type=Path, help="your own audio file (default: the bundled sample)"
    )


def _dev(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(
        title="commands", metavar="COMMAND", dest="action", parser_class=Parser, required=True
    )
    up = actions.add_parser(
        "up",
        help="start the embedded broker and PostgreSQL, print their settings, stay until Ctrl-C",
        description="Start the embedded broker and PostgreSQL, print the settings to export "
        "(`eval` them or copy them), stay until Ctrl-C or SIGTERM, then stop both and delete "
        "their data.",
    )
    up.add_argument(
        "--no-sample",
        dest="sample",
        action="store_false",
        help="do not migrate and add the bundled recording as track 1",
    )


def _schema(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "directory", nargs="?", type=Path, default=Path("schemas"), help="default: schemas"
    )


def _acls(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--principal", required=True, type=principal, help="the service's, e.g. User:genres"
    )
    parser.add_argument(
        "--role",
        dest="roles",
        action="append",
        choices=(*BUS_ROLES, "all"),
        help="%(choices)s; repeatable (default all: what `genres run all` runs)",
    )
    parser.add_argument(
        "--format",
        dest="form",
        choices=("kafka-acls", "strimzi"),
        default="kafka-acls",
        help="kafka-acls.sh lines, or a Strimzi KafkaUser (default kafka-acls)",
    )
    parser.add_argument(
        "--creates-topics",
        action=argparse.BooleanOptionalAction,
        help="the roles create their missing topics: CREATE on them (default KAFKA_CREATE_TOPICS)",
    )
    cluster_option(parser)


def _topics(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        dest="form",
        choices=("names", "strimzi"),
        default="names",
        help="one name a line, or Strimzi KafkaTopic resources (default names)",
    )
    number_option(parser, "--replicas", int, (1, 16), 3, "N", "strimzi: replicas per topic")
    cluster_option(parser)


COMMANDS: tuple[Command, ...] = (
    Command(
        "run",
        "Run roles until SIGTERM: in-flight work is finished or handed back, then exit 0.",
        "Needs KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL. Logs are JSON lines on stderr.",
        _run,
        lambda a: commands.run(a.role),
    ),
    Command(
        "migrate",
        "Create or upgrade the schema (the platform's tables only when missing).",
        "Needs DATABASE_URL.",
        _no_arguments,
        lambda a: commands.migrate(),
    ),
    Command(
        "grants",
        "Print the GRANT statements a PostgreSQL role needs to run the roles (least privilege).",
        "Migrations run as the tables' owner (`genres migrate`); the roles run as a login role\n"
        "that owns nothing. Apply after each `genres migrate`, as the owner:\n"
        '  genres grants genres_app | psql -v ON_ERROR_STOP=1 "$OWNER_URL"\n'
        "Needs no setting and connects to nothing.",
        _grants,
        lambda a: commands.grants(a.name, roles=a.roles, schema=a.schema),
    ),
    Command(
        "classify",
        "Classify audio files, folders and URLs with the configured backend, in parallel.",
        "Folders are searched recursively for audio files. Each source that fails gets its own\n"
        "line and the batch goes on. Exit codes: 0 every source classified, 1 any failed,\n"
        "2 invalid arguments or configuration.",
        _classify,
        lambda a: commands.classify(a.sources, as_json=a.as_json),
    ),
    Command(
        "recommend",
        "Ask the running service for a track's recommended tags, over the bus.",
        "Needs KAFKA_BOOTSTRAP_SERVERS. Exit codes: 0 answered (also when pending or no\n"
        "classifier is configured), 1 no such track or the service failed, 2 invalid request\n"
        "or configuration, 3 no answer (the broker is unreachable or no reply came in time).",
        _recommend,
        lambda a: commands.recommend(
            a.track_id, limit=a.limit, wait_ms=a.wait_ms, timeout=a.timeout, as_json=a.as_json
        ),
    ),
    Command(
        "backfill",
        "Request classification of tracks that lack predictions for their current file.",
        "Needs DATABASE_URL, and KAFKA_BOOTSTRAP_SERVERS unless --dry-run. With --wait, exits 1\n"
        "when a track failed (each is listed with the failure's kind and message).",
        _backfill,
        lambda a: commands.backfill(
            dry_run=a.dry_run,
            limit=a.limit,
            concurrency=a.concurrency,
            wait=a.wait,
            timeout=a.timeout,
            other_model=a.other_model,
        ),
    ),
    Command(
        "learn",
        "Train a head for the local model on labelled audio; write it for LOCAL_HEAD.",
        "DIR holds one folder per label with audio files in it (the folder names the label).\n"
        "--from-database learns from tracks Replicate classified (--teacher replicate) or from\n"
        "the platform's tags (--teacher tags); needs DATABASE_URL. Prints the examples per\n"
        "label, held-out top-1 and top-3, and the cascade's threshold for a target agreement.\n"
        "Exit codes: 0 written, 1 nothing could be learnt (the reason on one line), 2 invalid\n"
        "arguments or configuration.",
        _learn,
        lambda a: commands.learn(
            a.directory,
            from_database=a.from_database,
            out=a.out,
            teacher=a.teacher,
            soft=a.soft,
            min_tag_tracks=a.min_tag_tracks,
            min_examples=a.min_examples,
            target_agreement=a.target_agreement,
            standardise=a.standardise,
        ),
    ),
    Command(
        "demo",
        "The whole pipeline on embedded defaults: broker, database, all roles, one track.",
        "",
        _demo,
        lambda a: commands.demo(a.path),
    ),
    Command(
        "dev",
        "Try the real commands on embedded servers.",
        "",
        _dev,
        lambda a: commands.dev_up(sample=a.sample),  # `up` is the only action
    ),
    Command(
        "schema",
        "Write the JSON Schema of every message model.",
        "",
        _schema,
        lambda a: commands.schema(a.directory),
    ),
    Command(
        "acls",
        "Print the Kafka ACLs the roles and commands need, derived from what each reads and "
        "writes.",
        "Topic and group names carry GENRES_TOPIC_PREFIX. Needs no broker.",
        _acls,
        lambda a: commands.acls(
            a.principal,
            roles=a.roles,
            form=a.form,
            creates_topics=a.creates_topics,
            cluster=a.cluster,
        ),
    ),
    Command(
        "topics",
        "Print every topic the roles and commands use: names, or Strimzi KafkaTopic resources.",
        "Partitions: KAFKA_TOPIC_PARTITIONS. Topic names carry GENRES_TOPIC_PREFIX. Needs no "
        "broker.",
        _topics,
        lambda a: commands.topics(a.form, replicas=a.replicas, cluster=a.cluster),
    ),
)


def build_parser() -> argparse.ArgumentParser:
    root = Parser(
        prog="genres",
        description="Genre classification for music tracks, on Kafka and PostgreSQL.",
    )
    root.add_argument("--debug", action="store_true", help="show tracebacks (also GENRES_DEBUG=1)")
    subparsers = root.add_subparsers(
        title="commands", metavar="COMMAND", dest="command", parser_class=Parser
    )
    for command in COMMANDS:
        summary, description = command.summary, command.description
        parser = subparsers.add_parser(
            command.name,
            help=summary,
            description=f"{summary}\n\n{description}" if description else summary,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        # Also after the command (``genres migrate --debug``); absent, the root's value stays.
        parser.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
        command.arguments(parser)
    return root


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.debug:
        os.environ["GENRES_DEBUG"] = "1"
    if args.command is None:
        parser.print_help(sys.stderr)
        raise SystemExit(2)
    command = next(c for c in COMMANDS if c.name == args.command)
    try:
        command.call(args)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
