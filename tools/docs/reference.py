"""The site's reference pages, written from the code at build time (tools/docs/hooks.py).

Each function returns one page's Markdown and the problems it found (a setting, a failure kind
or a reply error kind the code has and the page could not explain). The hook logs each problem
as a warning, so `mkdocs build --strict` fails until the code and its words agree again.

Over 300 lines because it holds five page writers side by side, each short and standing alone,
and the words the contracts lack (what each reply error kind means; failure kinds are explained
once, in docs/interface.md).
"""

from __future__ import annotations

import argparse
import enum
import json
import os
import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
INTERFACE = ROOT / "docs" / "interface.md"

Page = tuple[str, list[str]]

# The meaning of each `error.kind` a reply (`RecommendedTags`) may carry, and what the Python
# client raises for it.
REPLY_ERROR_KINDS = {
    "invalid_request": (
        "the request could not be parsed or validated (not JSON, `track_id` missing, `limit` "
        "out of range); `track_id` is set when it could be read",
        "`InvalidRequest`",
    ),
    "not_found": ("the track does not exist in `tracks`", "`TrackNotFound`"),
    "unavailable": (
        "the service cannot answer now; ask again later (allowed by the contract; today's "
        "responder answers its own failures with `internal`)",
        "`Unavailable`",
    ),
    "internal": (
        "answering failed on an unexpected error; the message names the exception's type",
        "`ServiceError`",
    ),
}


def _cell(text: str) -> str:
    return re.sub(r"(?<!\\)\|", r"\\|", " ".join(text.split()))


# -- settings --------------------------------------------------------------------------------


def _interface_meanings() -> dict[str, tuple[str, str]]:
    """Each variable of docs/interface.md's Configuration table: (meaning, default).

    A row naming several variables gives each its share of the default when it splits into as
    many parts ("`PLAIN`, none, none"), else the whole."""
    text = INTERFACE.read_text(encoding="utf-8")
    start = text.index("\n## Configuration")
    section = text[start : text.index("\n## ", start + 1)]
    meanings = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        names = re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0])
        default_parts = cells[2].split(", ")
        for i, name in enumerate(names):
            default = default_parts[i] if len(default_parts) == len(names) > 1 else cells[2]
            meanings[name] = (_from_interface(cells[1]), default)
    return meanings


def _failure_meanings() -> dict[str, tuple[str, str]]:
    """Each row of docs/interface.md's Failure kinds table: kind -> (retryable, when).

    The contract page states the meanings once; this page joins them to the enum."""
    text = INTERFACE.read_text(encoding="utf-8")
    start = text.index("\n### Failure kinds")
    section = text[start : text.index("\n#", start + 1)]
    table = section[section.index("\n|") :].split("\n\n")[0]
    meanings = {}
    for line in table.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            meanings[cells[0].strip("`")] = (cells[1], _from_interface(cells[2]))
    return meanings


def _from_interface(text: str) -> str:
    """Text of docs/interface.md with its relative links made relative to reference/."""

    def one(match: re.Match[str]) -> str:
        target = match.group(1)
        if re.match(r"^[a-z]+:", target):
            return match.group(0)
        return f"]({'../interface.md' if target.startswith('#') else '../'}{target})"

    return re.sub(r"\]\(([^)\s]+)\)", one, text)


def _type_name(annotation: Any) -> str:
    """The type as a reader knows it: enums and literals as their values."""
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " | ".join(f"`{member.value}`" for member in annotation)
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " | ".join(f"`{value}`" for value in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):  # X | None: the default column says unset
        kept = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return " | ".join(_type_name(arg) for arg in kept)
    if origin is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin is not None:
        args = ", ".join(_type_name(arg) for arg in typing.get_args(annotation))
        return f"{origin.__name__}[{args}]"
    return getattr(annotation, "__name__", str(annotation))


def _constraints(field: Any) -> str:
    found = []
    for item in field.metadata:
        for key in ("ge", "gt", "le", "lt", "pattern"):
            value = getattr(item, key, None)
            if value is not None:
                symbol = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<", "pattern": "matches"}[key]
                found.append(f"{symbol} `{value}`")
    return ", ".join(found)


def _default(field: Any, documented: str) -> str:
    """The code's default; where the code computes it (None), the documented one."""
    value = field.default
    if field.default_factory is not None or value is None:
        return documented or "unset"
    if isinstance(value, enum.Enum):
        value = value.value
    return f"`{value}`" if value != "" else "empty"


def settings_page() -> Page:
    from genres.config import FROM_FILE, Settings

    meanings = _interface_meanings()
    hints = typing.get_type_hints(Settings)
    problems = []
    rows = []
    for name, field in Settings.model_fields.items():
        variable = name.upper()
        meaning, documented_default = meanings.get(variable, ("", ""))
        described = field.description or ""
        if not (described or meaning):
            problems.append(f"setting {variable} has no description in Settings or interface.md")
        words = described if described and not meaning else meaning
        if name in FROM_FILE and f"{variable}_FILE" not in words and "*_FILE" not in words:
            words += f" (also `{variable}_FILE`)"
        annotation = hints.get(name, field.annotation)
        rows.append(
            f"| `{variable}` | {_cell(_type_name(annotation))} | {_cell(_constraints(field))} | "
            f"{_default(field, documented_default)} | {_cell(words)} |"
        )
    body = "\n".join(rows)
    page = f"""# Settings

Generated at build time from the fields of `genres.config.Settings`
([source]({_source("service/genres/config.py")})): one environment variable per field, its
upper-case name. Types, bounds and defaults are the code's; the meaning is the field's
description, or the row of [the interface](../interface.md#configuration-environment-variables)
for it (a unit test keeps the two lists equal). A bad value stops the program at start with one
line naming the variable (exit 2). "computed" defaults depend on other settings (see the
meaning). Secrets may come from mounted files: `<NAME>_FILE`.

| variable | type | bounds | default | meaning |
|---|---|---|---|---|
{body}

OpenTelemetry's standard variables (`OTEL_EXPORTER_OTLP_ENDPOINT`, …) are read where tracing
starts, not through `Settings`.
"""
    return page, problems


# -- commands --------------------------------------------------------------------------------


def _walk(
    parser: argparse.ArgumentParser, path: str
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, f"{path} {name}")


def commands_page() -> Page:
    from genres.cli import build_parser

    os.environ["COLUMNS"] = "100"  # argparse wraps at the terminal's width: the same every build
    sections = []
    summary = []
    for path, parser in _walk(build_parser(), "genres"):
        anchor = path.replace(" ", "-")
        first = (parser.description or "").split("\n")[0]
        if path != "genres":
            summary.append(f"| [`{path}`](#{anchor}) | {_cell(first)} |")
        sections.append(
            f"## `{path}` {{#{anchor}}}\n\n```text\n{parser.format_help().rstrip()}\n```\n"
        )
    page = f"""# Commands

Generated at build time from the argument parser (`genres.cli.build_parser`): each command's
`--help`, as `genres` prints it. Every command also takes `--debug` (or `GENRES_DEBUG=1`) for
tracebacks. Exit codes: 0 success, 1 a failure of the work itself, 2 a wrong argument or
setting (or a refusal from the Kafka cluster), 3 a broker or database that does not answer.
What each command does in more words: [the interface](../interface.md#command-line-genres).

Every mistake a user can make is answered with one line on stderr, `error: ...`, and a non-zero
exit: 2 for a wrong argument or setting (a missing variable is named before anything is
imported; an invalid one is named without echoing its value), 3 for a broker or database that
does not answer (named with its host and port, never its credentials; a connection to
PostgreSQL gets 10 s, `migrate` included, a broker aiokafka's request timeout, 40 s), 1 for
everything else (an empty, unreadable or non-audio file, a refused URL naming
`AUDIO_ALLOW_PRIVATE_ADDRESSES`). The one-shot commands print for people: no JSON log lines,
warnings as `warning: ...`; `genres run` logs JSON lines.

| command | what it does |
|---|---|
{chr(10).join(summary)}

{chr(10).join(sections)}"""
    return page, []


# -- metrics ---------------------------------------------------------------------------------


class _Nothing:
    """Stands in for the watched parts (commit window, slots, stall watchdog) of a process."""

    in_flight = handled = retried = running = 0

    def partitions(self) -> list[Any]:
        return []

    def groups(self) -> list[Any]:
        return []

    @property
    def groups_watch(self) -> _Nothing:
        return self


def _families(registry: Any) -> Iterator[tuple[str, str, str, list[str]]]:
    from prometheus_client.metrics import MetricWrapperBase

    for collector in list(registry._collector_to_names):
        if isinstance(collector, MetricWrapperBase):
            yield (
                collector._name,
                collector._type,
                collector._documentation,
                list(collector._labelnames),
            )
            continue
        for family in collector.collect():
            labels = list(getattr(family, "_labelnames", ()))
            yield family.name, family.type, family.documentation, labels


def _exposed(name: str, kind: str) -> str:
    if kind == "counter":
        return f"`{name}_total`"
    if kind == "histogram":
        return f"`{name}_bucket`, `_sum`, `_count`"
    return f"`{name}`"


def metrics_page() -> Page:
    from genres.observability.metrics import ServiceMetrics, prometheus_middleware

    metrics = ServiceMetrics()
    nothing: Any = _Nothing()
    metrics.watch_window(nothing)
    metrics.watch_classifications(nothing)
    nothing.groups = _Nothing()
    metrics.watch_stalls(nothing)
    prometheus_middleware(metrics)
    rows = [
        f"| {_exposed(name, kind)} | {kind} | {', '.join(f'`{label}`' for label in labels)} | "
        f"{_cell(doc)} |"
        for name, kind, doc, labels in sorted(_families(metrics.registry))
    ]
    page = f"""# Metrics

Generated at build time from the Prometheus registry a process builds
(`genres.observability.metrics.ServiceMetrics`, with the commit window, the classifications in
flight and the stall watchdog attached, and FastStream's middleware): every metric `/metrics`
can serve. Each process serves only the ones its roles fill. How to read them, and the stall
rules: [Observability](../observability.md); what to alert on: [Alerts](../operating/alerts.md).

| metric (as exposed) | type | labels | meaning |
|---|---|---|---|
{chr(10).join(rows)}
"""
    return page, []


# -- failures --------------------------------------------------------------------------------


def failures_page() -> Page:
    from genres_contracts.events import FailureKind
    from genres_contracts.requests import ReplyError

    problems = []
    failure_meanings = _failure_meanings()
    failure_rows = []
    for kind in FailureKind:
        retryable, meaning = failure_meanings.get(kind.value, ("", ""))
        if not meaning:
            problems.append(f"FailureKind {kind.value!r} is not in docs/interface.md's table")
        failure_rows.append(f"| `{kind.value}` | {_cell(meaning)} | {_cell(retryable)} |")
    for extra in set(failure_meanings) - {kind.value for kind in FailureKind}:
        problems.append(f"docs/interface.md explains {extra!r}, not a FailureKind")

    reply_kinds = typing.get_args(ReplyError.model_fields["kind"].annotation)
    reply_rows = []
    for kind in reply_kinds:
        if kind not in REPLY_ERROR_KINDS:
            problems.append(f"reply error kind {kind!r} has no entry in tools/docs/reference.py")
        meaning, raised = REPLY_ERROR_KINDS.get(kind, ("", ""))
        reply_rows.append(f"| `{kind}` | {_cell(meaning)} | {raised} |")
    for extra in set(REPLY_ERROR_KINDS) - set(reply_kinds):
        problems.append(f"tools/docs/reference.py explains {extra!r}, not a reply error kind")

    page = f"""# Failure kinds and reply errors

Generated at build time from the contracts (`genres_contracts`). Both sets may grow: a
consumer should treat a kind it does not know as it treats `internal`.

## `track.genres_failed`: `error.kind` {{#failure-kinds}}

From `FailureKind`. The event also says `retryable` (a later attempt may succeed: the error was
transient) and `attempts`. Failures of the paid path (`rate_limited` … `malformed_output`) come
from Replicate; `audio_*` from fetching or decoding the audio (the local model and the
cascade); the cascade publishes a failure only when both its paths failed.

| kind | when | retryable |
|---|---|---|
{chr(10).join(failure_rows)}

## Replies on the reply topic: `error.kind` {{#reply-error-kinds}}

From `ReplyError.kind`. A reply with an `error` carries `"tags": []` and `"pending": false`.
The Python client (`genres_contracts.kafka`) raises the exception named for each.

| kind | when | the client raises |
|---|---|---|
{chr(10).join(reply_rows)}

## Codes a command exits with

| code | meaning |
|---|---|
| 0 | done |
| 1 | the work failed: a file not classified, no such track, a failure with `backfill --wait` |
| 2 | a wrong argument or setting; a refusal from Kafka (ACL, login, TLS, missing topic) |
| 3 | a broker or database that does not answer |
"""
    return page, problems


# -- the AsyncAPI document ---------------------------------------------------------------------


def asyncapi_page() -> Page:
    document = json.loads((ROOT / "docs" / "asyncapi.json").read_text(encoding="utf-8"))
    info = document.get("info", {})
    lines = [
        "# Messages (AsyncAPI)",
        "",
        f"Rendered at build time from [`asyncapi.json`](../asyncapi.json) "
        f"(AsyncAPI {document.get('asyncapi', '?')}, generated from the code by "
        "`scripts/gen_asyncapi.sh`): {title} {version}.".format(
            title=info.get("title", ""), version=info.get("version", "")
        ),
        "",
    ]
    if info.get("description"):
        lines += [info["description"], ""]
    channels = document.get("channels", {})
    operations = document.get("operations", {})
    lines += [
        "## Operations",
        "",
        "| operation | action | channel | summary |",
        "|---|---|---|---|",
    ]
    for name, operation in operations.items():
        channel = operation.get("channel", {}).get("$ref", "").rsplit("/", 1)[-1]
        address = channels.get(channel, {}).get("address", channel)
        lines.append(
            f"| `{name}` | {operation.get('action', '')} | `{address}` | "
            f"{_cell(operation.get('summary') or operation.get('description') or '')} |"
        )
    lines += ["", "## Channels", ""]
    for name, channel in channels.items():
        lines += [f"### `{channel.get('address', name)}`", ""]
        if channel.get("description"):
            lines += [channel["description"], ""]
        messages = [
            ref.get("$ref", "").rsplit("/", 1)[-1] for ref in channel.get("messages", {}).values()
        ]
        if messages:
            lines += ["Messages: " + ", ".join(f"[`{m}`](#{_anchor(m)})" for m in messages), ""]
    schemas = document.get("components", {}).get("schemas", {})
    lines += ["## Messages", ""]
    for name, message in document.get("components", {}).get("messages", {}).items():
        lines += [f"### `{name}` {{#{_anchor(name)}}}", ""]
        if message.get("summary") or message.get("description"):
            lines += [message.get("summary") or message.get("description"), ""]
        payload = message.get("payload", {})
        schema_name = payload.get("$ref", "").rsplit("/", 1)[-1]
        schema = schemas.get(schema_name, payload)
        lines += _schema_table(schema)
    lines += ["## Schemas", ""]
    for name, schema in schemas.items():
        lines += [f"### `{name}` {{#schema-{_anchor(name)}}}", ""]
        if schema.get("description"):
            lines += [_cell(schema["description"]), ""]
        lines += _schema_table(schema)
    return "\n".join(lines) + "\n", []


def _anchor(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _schema_type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[`{name}`](#schema-{_anchor(name)})"
    if "anyOf" in schema:
        return " or ".join(_schema_type(s) for s in schema["anyOf"])
    if schema.get("type") == "array":
        return f"list of {_schema_type(schema.get('items', {}))}"
    if "enum" in schema:
        return " | ".join(f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    return f"`{schema.get('type', 'any')}`"


def _schema_table(schema: dict[str, Any]) -> list[str]:
    properties = schema.get("properties", {})
    if not properties:
        return []
    required = set(schema.get("required", []))
    rows = ["| field | type | required | description |", "|---|---|---|---|"]
    for name, prop in properties.items():
        rows.append(
            f"| `{name}` | {_schema_type(prop)} | {'yes' if name in required else ''} | "
            f"{_cell(prop.get('description', ''))} |"
        )
    return [*rows, ""]


# -- links to the repository ---------------------------------------------------------------------


def _source(path: str) -> str:
    """A link to a repository file (``repo:`` links are resolved by tools/docs/hooks.py)."""
    return f"repo:{path}"
