"""The Kafka ACLs and topic declarations operators apply (``genres acls``, ``genres topics``,
``deploy/strimzi/``, deploy/README.md's table) against the subscriptions and the roles' code.

The expected sets are written out here from reading the roles (what each consumes, publishes,
dead-letters and answers), independently of ``genres.kafka.acls``; the cluster test bed
applies the derived set to a real secured cluster.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from genres.cli import BUS_ROLES, build_parser
from genres.config import Settings
from genres.kafka import acls as module
from genres.kafka.acls import ROLES, SERVICE_ROLES, Acl, required_acls, topics_used
from genres.kafka.broker import all_topics
from genres.kafka.manifests import acl_table, kafka_acls_lines, kafka_topics, kafka_user
from genres.subscriptions import SUBSCRIPTIONS
from genres_contracts import topics
from genres_contracts.kafka import REPLY_TOPIC_STEM
from genres_contracts.kafka._replies import reply_topic_name
from tests.support.ci import schema_dependency
from tests.support.process import run_together

yaml = schema_dependency("yaml")

ROOT = Path(__file__).resolve().parents[2]
STRIMZI = ROOT / "deploy" / "strimzi"
README = ROOT / "deploy" / "README.md"
PLAIN = Settings(genres_topic_prefix="", kafka_topic_partitions=3)

UPLOADED, REQUESTED = topics.TRACK_UPLOADED, topics.CLASSIFICATION_REQUESTED
CLASSIFIED, FAILED, ASKED = topics.GENRES_CLASSIFIED, topics.GENRES_FAILED, topics.RECOMMENDED_TAGS


def topic(name: str, operation: str) -> Acl:
    return Acl("topic", name, "literal", operation)


def group(name: str) -> Acl:
    return Acl("group", name, "literal", "READ")


def replies(operation: str) -> Acl:
    return Acl("topic", "genres.replies.", "prefixed", operation)


EXPECTED = {
    "classifier": {
        group("genres-classifier"),
        topic(UPLOADED, "READ"),
        topic(REQUESTED, "READ"),
        topic(f"{UPLOADED}.dlq", "WRITE"),
        topic(f"{REQUESTED}.dlq", "WRITE"),
        topic(CLASSIFIED, "WRITE"),
        topic(FAILED, "WRITE"),
    },
    "projector": {
        group("genres-projector"),
        topic(CLASSIFIED, "READ"),
        topic(f"{CLASSIFIED}.dlq", "WRITE"),
    },
    "responder": {
        group("genres-responder"),
        topic(ASKED, "READ"),
        topic(f"{ASKED}.dlq", "WRITE"),
        replies("WRITE"),
        # The outcome listener, and on-demand classification.
        topic(CLASSIFIED, "READ"),
        topic(FAILED, "READ"),
        topic(REQUESTED, "WRITE"),
    },
    "recommend": {
        topic(ASKED, "WRITE"),
        replies("CREATE"),
        replies("READ"),
        replies("DELETE"),
    },
    "backfill": {topic(REQUESTED, "WRITE"), topic(CLASSIFIED, "READ"), topic(FAILED, "READ")},
}
"""Without CREATE: what each role and command does, read from its code."""


def test_the_service_needs_the_issues_set_but_the_unwritten_dead_letter_topic() -> None:
    """Issue 20's least-privilege set that worked: READ on the five topics, WRITE on the three
    written ones and on the dead-letter topics, READ on the three groups, WRITE on the reply
    prefix. Nothing writes ``track.genres_failed.dlq`` (no group consumes that topic), so it
    is neither granted nor created: 16 ACLs, and CREATE on the 9 topics."""
    five = (UPLOADED, REQUESTED, CLASSIFIED, FAILED, ASKED)
    expected = (
        {topic(name, "READ") for name in five}
        | {topic(name, "WRITE") for name in (CLASSIFIED, FAILED, REQUESTED)}
        | {topic(f"{name}.dlq", "WRITE") for name in (UPLOADED, REQUESTED, CLASSIFIED, ASKED)}
        | {group(f"genres-{role}") for role in SERVICE_ROLES}
        | {replies("WRITE")}
    )
    found = required_acls(PLAIN, SERVICE_ROLES, creates_topics=False)
    assert set(found) == expected
    assert len(found) == 16
    assert found == sorted(set(found)), "sorted, each once"
    assert not [acl for acl in found if acl.resource_type == "cluster"]

    creating = required_acls(PLAIN, SERVICE_ROLES, creates_topics=True)
    created = {acl.name for acl in creating if acl.operation == "CREATE"}
    assert set(creating) - set(found) == {topic(name, "CREATE") for name in created}
    assert created == set(all_topics(PLAIN)) == set(topics_used(PLAIN, SERVICE_ROLES))
    assert len(created) == 9
    assert f"{FAILED}.dlq" not in created


@pytest.mark.parametrize("role", ROLES)
def test_each_role_needs_only_what_its_code_uses(role: str) -> None:
    assert set(required_acls(PLAIN, [role], creates_topics=False)) == EXPECTED[role]


def test_no_role_writes_what_it_only_reads() -> None:
    assert topic(UPLOADED, "WRITE") not in required_acls(PLAIN, ROLES, creates_topics=True)
    projector = required_acls(PLAIN, ["projector"], creates_topics=False)
    assert {acl.operation for acl in projector if acl.name == CLASSIFIED} == {"READ"}


@pytest.mark.parametrize("role", ROLES)
def test_a_role_creates_and_checks_only_the_topics_it_uses(role: str) -> None:
    """CREATE exactly on the topics it reads or writes (its start-up check), and only for the
    roles and commands that check their topics at start (recommend makes its reply topic)."""
    used = {
        acl.name
        for acl in EXPECTED[role]
        if acl.pattern == "literal" and acl.resource_type == "topic"
    }
    creating = set(required_acls(PLAIN, [role], creates_topics=True)) - EXPECTED[role]
    if role == "recommend":
        assert creating == set()
    else:
        assert creating == {topic(name, "CREATE") for name in used}
        assert set(topics_used(PLAIN, [role])) == used


def test_every_consumed_topic_has_its_dead_letter_topic_and_only_those() -> None:
    consumed = {name for subscription in SUBSCRIPTIONS for name in subscription.topics}
    dead = {name for name in all_topics(PLAIN) if name.endswith(topics.DLQ_SUFFIX)}
    assert dead == {topics.dead_letter_topic(name) for name in consumed}
    written = {acl.name for acl in required_acls(PLAIN, ROLES, creates_topics=False)}
    assert dead <= written


def test_the_prefix_is_on_every_topic_group_and_reply_prefix() -> None:
    prefixed = Settings(genres_topic_prefix="t7-")
    for role in ROLES:
        found = required_acls(prefixed, [role], creates_topics=True)
        assert all(acl.name.startswith("t7-") for acl in found), found
        unprefixed = {
            Acl(acl.resource_type, acl.name.removeprefix("t7-"), acl.pattern, acl.operation)
            for acl in found
        }
        assert unprefixed == set(required_acls(PLAIN, [role], creates_topics=True))
    # The contracts' client names its reply topic under the prefixed stem.
    assert reply_topic_name("t7-").startswith(prefixed.topic(module.REPLY_TOPIC_STEM))
    assert module.REPLY_TOPIC_STEM == REPLY_TOPIC_STEM


def test_unknown_roles_are_refused_and_the_cli_knows_every_role() -> None:
    with pytest.raises(ValueError, match="unknown roles"):
        required_acls(PLAIN, ["classifier", "auditor"], creates_topics=False)
    assert BUS_ROLES == ROLES


def _acl_from_line(line: str) -> tuple[str, Acl]:
    words = shlex.split(line)
    assert words[0] == "kafka-acls.sh"
    parser = argparse.ArgumentParser(exit_on_error=False)
    for flag in ("--bootstrap-server", "--command-config", "--allow-principal", "--operation"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--add", action="store_true", required=True)
    parser.add_argument("--topic")
    parser.add_argument("--group")
    parser.add_argument("--resource-pattern-type", default="literal")
    args = parser.parse_args(words[1:])
    assert args.bootstrap_server == "$KAFKA_BOOTSTRAP_SERVERS"
    assert (args.topic is None) != (args.group is None), line
    kind = "topic" if args.topic is not None else "group"
    name = args.topic if args.topic is not None else args.group
    return args.allow_principal, Acl(kind, name, args.resource_pattern_type, args.operation.upper())


@pytest.mark.parametrize("creates", [False, True])
def test_kafka_acls_lines_parse_back_to_the_set(creates: bool) -> None:
    found = required_acls(Settings(genres_topic_prefix="a b-"), ROLES, creates_topics=creates)
    lines = kafka_acls_lines(found, "User:genres")
    assert len(lines) == len(found)
    parsed = [_acl_from_line(line) for line in lines]
    assert {principal for principal, _ in parsed} == {"User:genres"}
    assert [acl for _, acl in parsed] == found


def _acls_of_user(document: dict[str, Any]) -> set[Acl]:
    rules = document["spec"]["authorization"]["acls"]
    return {
        Acl(
            rule["resource"]["type"],
            rule["resource"]["name"],
            "prefixed" if rule["resource"]["patternType"] == "prefix" else "literal",
            operation.upper(),
        )
        for rule in rules
        for operation in rule["operations"]
    }


def test_the_strimzi_user_parses_back_to_the_set() -> None:
    found = required_acls(PLAIN, ROLES, creates_topics=True)
    document = yaml.safe_load(kafka_user(found, "User:svc-genres", cluster="prod", comment="x\ny"))
    assert document["apiVersion"] == "kafka.strimzi.io/v1beta2"
    assert document["kind"] == "KafkaUser"
    assert document["metadata"] == {"name": "svc-genres", "labels": {"strimzi.io/cluster": "prod"}}
    assert document["spec"]["authentication"] == {"type": "scram-sha-512"}
    assert document["spec"]["authorization"]["type"] == "simple"
    assert _acls_of_user(document) == set(found)
    resources = [rule["resource"] for rule in document["spec"]["authorization"]["acls"]]
    assert len(resources) == len({(r["type"], r["name"]) for r in resources}), "a rule a resource"


def test_the_strimzi_topics_are_the_services_topics() -> None:
    settings = Settings(genres_topic_prefix="", kafka_topic_partitions=12)
    documents = list(yaml.safe_load_all(kafka_topics(settings, replicas=3, cluster="prod")))
    assert {doc["spec"]["topicName"] for doc in documents} == set(all_topics(settings))
    for doc in documents:
        assert (doc["apiVersion"], doc["kind"]) == ("kafka.strimzi.io/v1beta2", "KafkaTopic")
        assert re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", doc["metadata"]["name"])
        assert doc["metadata"]["labels"] == {"strimzi.io/cluster": "prod"}
        assert doc["spec"]["partitions"] == 12
        assert doc["spec"]["replicas"] == 3
        assert doc["spec"]["config"] == {"min.insync.replicas": 2}
    names = [doc["metadata"]["name"] for doc in documents]
    assert len(set(names)) == len(names)
    # One replica cannot keep two in sync.
    single = yaml.safe_load_all(kafka_topics(settings, replicas=1, cluster="prod"))
    assert {doc["spec"]["config"]["min.insync.replicas"] for doc in single} == {1}


def test_the_committed_declarations_are_what_the_commands_print() -> None:
    """deploy/strimzi/ is the commands' output on the default settings; regenerate with
    ``genres topics --format strimzi > deploy/strimzi/topics.yaml`` and
    ``genres acls --principal User:genres --format strimzi --no-creates-topics
    > deploy/strimzi/kafka-user.yaml``."""
    printed_topics, printed_user, printed_lines = run_together(
        (["topics", "--format", "strimzi"], {}),
        (["acls", "--principal", "User:genres", "--format", "strimzi", "--no-creates-topics"], {}),
        (["acls", "--principal", "User:genres", "--role", "all", "--role", "backfill"], {}),
    )
    for printed in (printed_topics, printed_user, printed_lines):
        assert printed.returncode == 0, printed.stderr
    assert (STRIMZI / "topics.yaml").read_text() == printed_topics.stdout
    assert (STRIMZI / "kafka-user.yaml").read_text() == printed_user.stdout
    user = yaml.safe_load(printed_user.stdout)
    assert _acls_of_user(user) == set(required_acls(PLAIN, SERVICE_ROLES, creates_topics=False))
    # KAFKA_CREATE_TOPICS is unset there: its default (true) adds CREATE.
    lines = printed_lines.stdout.splitlines()
    expected = required_acls(PLAIN, [*SERVICE_ROLES, "backfill"], creates_topics=True)
    assert [_acl_from_line(line)[1] for line in lines] == expected


def test_the_operators_table_is_the_generated_one() -> None:
    text = README.read_text()
    match = re.search(r"<!-- acl-table:[^\n]*-->\n(.*?)<!-- end acl-table -->", text, re.S)
    assert match is not None, "deploy/README.md lost its ACL table markers"
    assert match.group(1) == acl_table(PLAIN)
    rows = [line for line in match.group(1).splitlines()[2:]]
    every = required_acls(PLAIN, ROLES, creates_topics=True)
    assert len(rows) == len(every)


def test_the_principal_must_be_a_user() -> None:
    parser = build_parser()
    args = vars(parser.parse_args(["acls", "--principal", "User:genres"]))
    assert args["roles"] is None
    assert args["creates_topics"] is None
    assert args["form"] == "kafka-acls"
    with pytest.raises(SystemExit):
        parser.parse_args(["acls", "--principal", "Group:genres"])
