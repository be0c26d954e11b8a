"""The ``genres`` command line: parsing only.

Start-up is part of the interface: ``genres --help`` and every mistake in the arguments or the
settings are answered before the service is imported (``python -m bench startup``). So this
module imports the standard library only, and parses with argparse: typer (0.29) imports
pydantic to parse, which alone took longer than the whole budget. The commands' bodies are in
``genres.commands``, imported once the arguments are known to be good; each checks the
settings it needs, then imports what it runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

ROLES = ("classifier", "projector", "responder")
"""``genres.bootstrap.Role``'s values, here so that a wrong role is refused before importing it
(a unit test keeps the two equal)."""
GRANT_ROLES = ("classifier", "projector", "responder", "backfill")
"""``genres.database.grants.ROLES``, here for the same reason (a unit test keeps them equal)."""

BUS_ROLES = (*ROLES, "recommend", "backfill")
"""``genres.kafka.acls.ROLES``: the roles and the commands that use the bus (a unit test keeps
the two equal)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, not argparse's usage and message on two."""
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _bounded(kind: Callable[[str], Any], low: float | None, high: float | None) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f">= {low:g}" if high is None else f"between {low:g} and {high:g}"
            raise argparse.ArgumentTypeError(f"{text} is not {bounds}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _number_option(
    parser: argparse.ArgumentParser,
    flag: str,
    kind: Callable[[str], float],
    bounds: tuple[float | None, float | None],
    default: float,
    metavar: str,
    help: str,
) -> None:
    """A number from ``bounds`` (``None``: open), its default said at the end of ``help``."""
    parser.add_argument(
        flag,
        type=_bounded(kind, *bounds),
        default=default,
        metavar=metavar,
        help=f"{help} (default {default:g})",
    )


def _principal(text: str) -> str:
    kind, _, name = text.partition(":")
    if kind != "User" or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not of the form User:NAME")
    return text


def build_parser() -> argparse.ArgumentParser:
    root = _Parser(
        prog="genres",
        description="Genre classification for music tracks, on Kafka and PostgreSQL.",
    )
    root.add_argument("--debug", action="store_true", help="show tracebacks (also GENRES_DEBUG=1)")
    commands = root.add_subparsers(
        title="commands", metavar="COMMAND", dest="command", parser_class=_Parser
    )

    def command(name: str, summary: str, description: str = "") -> argparse.ArgumentParser:
        parser = commands.add_parser(
            name,
            help=summary,
            description=f"{summary}\n\n{description}" if description else summary,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        # Also after the command (``genres migrate --debug``); absent, the root's value stays.
        parser.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
        return parser

    run = command(
        "run",
        "Run roles until SIGTERM: in-flight work is finished or handed back, then exit 0.",
        "Needs KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL. Logs are JSON lines on stderr.",
    )
    run.add_argument("role", choices=(*ROLES, "all"), help="%(choices)s")

    command(
        "migrate",
        "Create or upgrade the schema (the platform's tables only when missing).",
        "Needs DATABASE_URL.",
    )

    grants = command(
        "grants",
        "Print the GRANT statements a PostgreSQL role needs to run the roles (least privilege).",
        "Migrations run as the tables' owner (`genres migrate`); the roles run as a login role\n"
        "that owns nothing. Apply after each `genres migrate`, as the owner:\n"
        '  genres grants genres_app | psql -v ON_ERROR_STOP=1 "$OWNER_URL"\n'
        "Needs no setting and connects to nothing.",
    )
    grants.add_argument("name", help="the PostgreSQL role to grant to (taken as spelt)")
    grants.add_argument(
        "--role",
        dest="roles",
        action="append",
        choices=GRANT_ROLES,
        help="only what this role needs (repeatable; default: all of %(choices)s)",
    )
    grants.add_argument("--schema", default="public", help="the tables' schema (default public)")

    classify = command(
        "classify",
        "Classify audio files, folders and URLs with the configured backend, in parallel.",
        "Folders are searched recursively for audio files. Each source that fails gets its own\n"
        "line and the batch goes on. Exit codes: 0 every source classified, 1 any failed,\n"
        "2 invalid arguments or configuration.",
    )
    classify.add_argument(
        "sources", nargs="+", metavar="PATH_OR_URL", help="audio files, folders, http(s) URLs"
    )
    classify.add_argument(
        "--json",
        dest="as_json",
        action="store_true",
        help="one JSON object per line and source: path, predictions, model, seconds, or error",
    )

    recommend = command(
        "recommend",
        "Ask the running service for a track's recommended tags, over the bus.",
        "Needs KAFKA_BOOTSTRAP_SERVERS. Exit codes: 0 answered (also when pending or no\n"
        "classifier is configured), 1 no such track or the service failed, 2 invalid request\n"
        "or configuration, 3 no answer (the broker is unreachable or no reply came in time).",
    )
    recommend.add_argument("track_id", type=_bounded(int, 1, None), help="the track id")
    recommend.add_argument(
        "--limit", type=_bounded(int, 1, 20), default=5, help="at most this many tags (1-20)"
    )
    _number_option(
        recommend, "--wait-ms", int, (0, 30_000), 0, "MS", "wait this long for a classification"
    )
    _number_option(
        recommend,
        "--timeout",
        float,
        (0.001, None),
        10.0,
        "S",
        "seconds to wait for the reply, beyond --wait-ms",
    )
    recommend.add_argument(
        "--json", dest="as_json", action="store_true", help="print the reply as JSON"
    )

    backfill = command(
        "backfill",
        "Request classification of tracks that lack predictions for their current file.",
        "Needs DATABASE_URL, and KAFKA_BOOTSTRAP_SERVERS unless --dry-run. With --wait, exits 1\n"
        "when a track failed (each is listed with the failure's kind and message).",
    )
    backfill.add_argument(
        "--dry-run", action="store_true", help="list the tracks only (reads the database only)"
    )
    backfill.add_argument(
        "--limit", type=_bounded(int, 1, None), metavar="N", help="at most this many tracks"
    )
    _number_option(backfill, "--concurrency", int, (1, 1000), 10, "N", "requests in flight")
    backfill.add_argument(
        "--wait", action="store_true", help="wait for the outcomes; list the tracks that failed"
    )
    backfill.add_argument(
        "--other-model",
        action="store_true",
        help="also the tracks whose predictions another model or version than the configured "
        "one made (or one not recorded)",
    )
    _number_option(
        backfill, "--timeout", float, (0, None), 600.0, "S", "seconds to wait for outcomes"
    )

    learn = command(
        "learn",
        "Train a head for the local model on labelled audio; write it for LOCAL_HEAD.",
        "DIR holds one folder per label with audio files in it (the folder names the label).\n"
        "--from-database learns from tracks Replicate classified (--teacher replicate) or from\n"
        "the platform's tags (--teacher tags); needs DATABASE_URL. Prints the examples per\n"
        "label, held-out top-1 and top-3, and the cascade's threshold for a target agreement.\n"
        "Exit codes: 0 written, 1 nothing could be learnt (the reason on one line), 2 invalid\n"
        "arguments or configuration.",
    )
    learn.add_argument("directory", nargs="?", type=Path, metavar="DIR", help="labelled folders")
    learn.add_argument(
        "--from-database", action="store_true", help="learn from the database's tracks"
    )
    learn.add_argument("--out", type=Path, required=True, metavar="PATH", help="the head file")
    learn.add_argument(
        "--teacher",
        choices=("replicate", "tags"),
        default="replicate",
        help="with --from-database: Replicate's stored predictions or the tracks' tags "
        "(default replicate)",
    )
    learn.add_argument(
        "--soft",
        action="store_true",
        help="with --teacher replicate: learn the stored score distribution, not the top label",
    )
    _number_option(
        learn,
        "--min-tag-tracks",
        int,
        (1, None),
        20,
        "N",
        "with --teacher tags: tags on >= N tracks",
    )
    _number_option(
        learn, "--min-examples", int, (2, None), 5, "N", "fewest examples a label may have"
    )
    _number_option(
        learn,
        "--target-agreement",
        float,
        (0.01, 1.0),
        0.9,
        "SHARE",
        "agreement with the teacher the proposed cascade threshold must reach",
    )
    learn.add_argument(
        "--standardise",
        action="store_true",
        help="standardise each feature first (default: the embedding as the model's own "
        "batch-norm leaves it, which measured as good or better)",
    )

    demo = command(
        "demo", "The whole pipeline on embedded defaults: broker, database, all roles, one track."
    )
    demo.add_argument(
        "path", nargs="?", type=Path, help="your own audio file (default: the bundled sample)"
    )

    dev = command("dev", "Try the real commands on embedded servers.")
    dev_commands = dev.add_subparsers(
        title="commands", metavar="COMMAND", dest="action", parser_class=_Parser, required=True
    )
    up = dev_commands.add_parser(
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

    schema = command("schema", "Write the JSON Schema of every message model.")
    schema.add_argument(
        "directory", nargs="?", type=Path, default=Path("schemas"), help="default: schemas"
    )

    acls = command(
        "acls",
        "Print the Kafka ACLs the roles and commands need, derived from what each reads and "
        "writes.",
        "Topic and group names carry GENRES_TOPIC_PREFIX. Needs no broker.",
    )
    acls.add_argument(
        "--principal", required=True, type=_principal, help="the service's, e.g. User:genres"
    )
    acls.add_argument(
        "--role",
        dest="roles",
        action="append",
        choices=(*BUS_ROLES, "all"),
        help="%(choices)s; repeatable (default all: what `genres run all` runs)",
    )
    acls.add_argument(
        "--format",
        dest="form",
        choices=("kafka-acls", "strimzi"),
        default="kafka-acls",
        help="kafka-acls.sh lines, or a Strimzi KafkaUser (default kafka-acls)",
    )
    acls.add_argument(
        "--creates-topics",
        action=argparse.BooleanOptionalAction,
        help="the roles create their missing topics: CREATE on them (default KAFKA_CREATE_TOPICS)",
    )
    _cluster_option(acls)

    topics = command(
        "topics",
        "Print every topic the roles and commands use: names, or Strimzi KafkaTopic resources.",
        "Partitions: KAFKA_TOPIC_PARTITIONS. Topic names carry GENRES_TOPIC_PREFIX. Needs no "
        "broker.",
    )
    topics.add_argument(
        "--format",
        dest="form",
        choices=("names", "strimzi"),
        default="names",
        help="one name a line, or Strimzi KafkaTopic resources (default names)",
    )
    _number_option(topics, "--replicas", int, (1, 16), 3, "N", "strimzi: replicas per topic")
    _cluster_option(topics)
    return root


def _cluster_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cluster",
        default="my-cluster",
        metavar="NAME",
        help="strimzi: the Kafka resource's name, the label strimzi.io/cluster (default "
        "my-cluster)",
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    if args.pop("debug"):
        os.environ["GENRES_DEBUG"] = "1"
    name = args.pop("command")
    if name is None:
        parser.print_help(sys.stderr)
        raise SystemExit(2)
    from genres import commands

    try:
        getattr(commands, name)(**args)
    except KeyboardInterrupt:
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
