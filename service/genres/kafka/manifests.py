"""What operators apply, printed from the code: ACLs (``kafka-acls.sh`` lines, a Strimzi
``KafkaUser``, a table per role) and the topics (Strimzi ``KafkaTopic`` resources).

``deploy/strimzi/`` and deploy/README.md's ACL table are these functions' output on the
default settings; a unit test keeps them equal. YAML is written here (a few nested maps and
lists, every string JSON-quoted unless plainly safe) rather than with a YAML library, which the
service does not otherwise need.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Sequence
from typing import Any, Final

from genres.config import Settings
from genres.kafka.acls import ROLES, Acl, grants, topics_used

__all__ = [
    "STRIMZI_API",
    "acl_table",
    "kafka_acls_lines",
    "kafka_topics",
    "kafka_user",
    "user_name",
]

STRIMZI_API: Final = "kafka.strimzi.io/v1beta2"
CLUSTER_LABEL: Final = "strimzi.io/cluster"


def user_name(principal: str) -> str:
    """The user of a ``User:NAME`` principal; ``ValueError`` for any other kind."""
    kind, _, name = principal.partition(":")
    if kind != "User" or not name:
        raise ValueError(f"{principal!r} is not a principal of the form User:NAME")
    return name


def kafka_acls_lines(acls: Iterable[Acl], principal: str) -> list[str]:
    """One ``kafka-acls.sh --add`` command per ACL, for a shell with KAFKA_BOOTSTRAP_SERVERS set
    and the admin's client settings in ``client.properties``."""
    lines = []
    for acl in acls:
        words = [
            "kafka-acls.sh",
            '--bootstrap-server "$KAFKA_BOOTSTRAP_SERVERS"',
            "--command-config client.properties",
            "--add",
            f"--allow-principal {shlex.quote(principal)}",
            f"--operation {acl.operation.capitalize()}",
            _resource_flag(acl),
            "--resource-pattern-type prefixed" if acl.pattern == "prefixed" else "",
        ]
        lines.append(" ".join(word for word in words if word))
    return lines


def _resource_flag(acl: Acl) -> str:
    if acl.resource_type == "cluster":
        return "--cluster"
    return f"--{acl.resource_type} {shlex.quote(acl.name)}"


def kafka_user(acls: Iterable[Acl], principal: str, *, cluster: str, comment: str = "") -> str:
    """A Strimzi ``KafkaUser`` (SCRAM-SHA-512) granted ``acls``: one rule per resource;
    ``comment`` heads it."""
    rules: dict[tuple[str, str, str], list[str]] = {}
    for acl in acls:
        key = (acl.resource_type, acl.name, acl.pattern)
        rules.setdefault(key, []).append(acl.operation.capitalize())
    user = {
        "apiVersion": STRIMZI_API,
        "kind": "KafkaUser",
        "metadata": {"name": user_name(principal), "labels": {CLUSTER_LABEL: cluster}},
        "spec": {
            "authentication": {"type": "scram-sha-512"},
            "authorization": {
                "type": "simple",
                "acls": [
                    {
                        "resource": _resource(kind, name, pattern),
                        "operations": operations,
                    }
                    for (kind, name, pattern), operations in rules.items()
                ],
            },
        },
    }
    return _comment(comment) + _yaml(user)


def _comment(text: str) -> str:
    return "".join(f"# {line}\n" for line in text.splitlines())


def _resource(kind: str, name: str, pattern: str) -> dict[str, Any]:
    if kind == "cluster":
        return {"type": "cluster"}
    return {
        "type": kind,
        "name": name,
        "patternType": "prefix" if pattern == "prefixed" else pattern,
    }


def kafka_topics(settings: Settings, *, replicas: int, cluster: str) -> str:
    """A Strimzi ``KafkaTopic`` per topic of the service (every role's and command's), with
    KAFKA_TOPIC_PARTITIONS partitions and ``replicas`` replicas, as YAML documents."""
    # Two in-sync replicas survive one broker down without losing an acknowledged record;
    # with fewer than three replicas that would stop producing on any outage.
    min_insync = 2 if replicas >= 3 else 1
    documents = [
        {
            "apiVersion": STRIMZI_API,
            "kind": "KafkaTopic",
            "metadata": {"name": _resource_name(topic), "labels": {CLUSTER_LABEL: cluster}},
            "spec": {
                "topicName": topic,
                "partitions": settings.kafka_topic_partitions,
                "replicas": replicas,
                "config": {"min.insync.replicas": min_insync},
            },
        }
        for topic in sorted(topics_used(settings, ROLES))
    ]
    head = _comment(
        f"genres topics --format strimzi --replicas {replicas}: every topic the roles and\n"
        f"commands use; partitions from KAFKA_TOPIC_PARTITIONS ({settings.kafka_topic_partitions})."
    )
    return head + "---\n".join(_yaml(document) for document in documents)


def _resource_name(topic: str) -> str:
    """A Kubernetes name for ``topic`` (lower case, no ``_``); ``spec.topicName`` keeps the
    topic's own."""
    return re.sub(r"[^a-z0-9.-]", "-", topic.lower()).strip(".-")


def acl_table(settings: Settings) -> str:
    """A Markdown table: every ACL of every role and command, which need it, and why.
    CREATE rows apply only while the roles create their topics (KAFKA_CREATE_TOPICS)."""
    everything = grants(settings, ROLES, creates_topics=True)
    rows: dict[Acl, tuple[set[str], list[str]]] = {}
    for grant in everything:
        roles, reasons = rows.setdefault(grant.acl, (set(), []))
        roles.add(grant.role)
        if grant.why not in reasons:
            reasons.append(grant.why)
    header = ["resource", "name", "operation", *ROLES, "why"]
    lines = [_row(header), _row(["---"] * len(header))]
    for acl in sorted(rows):
        roles, reasons = rows[acl]
        name = f"`{acl.name}`" + (" (prefix)" if acl.pattern == "prefixed" else "")
        marks = ["x" if role in roles else "" for role in ROLES]
        lines.append(_row([acl.resource_type, name, acl.operation, *marks, "; ".join(reasons)]))
    return "\n".join(lines) + "\n"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9._/-]*")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}


def _scalar(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"no YAML for {value!r}")
    if isinstance(value, int):
        return str(value)
    if _PLAIN.fullmatch(value) and value.lower() not in _YAML_WORDS:
        return value
    return json.dumps(value)  # a JSON string is a YAML double-quoted scalar


def _yaml(value: object, indent: str = "") -> str:
    """Block YAML for nested dicts and lists of strings and integers."""
    lines: list[str] = []
    if not value and isinstance(value, dict | list):
        return f"{indent}{json.dumps(value)}\n"  # flow style: a block cannot be empty
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list):
                lines.append(f"{indent}{_scalar(key)}:\n" + _yaml(item, indent + "  "))
            else:
                lines.append(f"{indent}{_scalar(key)}: {_scalar(item)}\n")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict | list):
                # The first key on the dash's line, the rest under it.
                block = _yaml(item, indent + "  ")
                lines.append(f"{indent}- " + block[len(indent) + 2 :])
            else:
                lines.append(f"{indent}- {_scalar(item)}\n")
    else:
        raise TypeError(f"no YAML block for {value!r}")
    return "".join(lines)
