"""What the secured test cluster's admin does besides starting nodes: ACLs
(``genres.kafka.acls.Acl``-shaped rules made ALLOW bindings for a principal, set and cleared
with confluent-kafka's admin client) and asking each broker itself. A change the controller
has committed reaches each broker when it replays the metadata log, a moment later: a test
acting at once could meet a broker that does not know it yet, so changes are waited for on
every running broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.admin import DescribeAclsRequest
from aiokafka.protocol.api import Request
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

_RESOURCES = {
    "topic": ResourceType.TOPIC,
    "group": ResourceType.GROUP,
    "cluster": ResourceType.BROKER,
}
_PATTERNS = {"literal": ResourcePatternType.LITERAL, "prefixed": ResourcePatternType.PREFIXED}


class AclLike(Protocol):
    """``genres.kafka.acls.Acl``'s shape."""

    resource_type: str
    name: str
    pattern: str
    operation: str


Rule = tuple[int, str, int, int, int]
"""An ACL as DescribeAcls answers it: resource type, name, pattern type, operation,
permission (Kafka's codes, which confluent-kafka's enums carry as values)."""


def acl_binding(principal: str, acl: AclLike) -> AclBinding:
    """The ALLOW rule ``acl`` for ``principal`` from any host, as confluent-kafka's binding."""
    return AclBinding(
        _RESOURCES[acl.resource_type],
        acl.name,
        _PATTERNS[acl.pattern],
        principal,
        "*",
        AclOperation[acl.operation.upper()],
        AclPermissionType.ALLOW,
    )


def _rule(binding: AclBinding) -> Rule:
    return (
        binding.restype.value,
        binding.name,
        binding.resource_pattern_type.value,
        binding.operation.value,
        binding.permission_type.value,
    )


def set_acls(
    admin: AdminClient, brokers: Mapping[int, str], principal: str, acls: Iterable[AclLike]
) -> None:
    """Make ``acls`` the principal's only ACLs, in force on ``brokers`` (node id -> address of
    a listener where the caller may describe ACLs) when this returns."""
    bindings = [acl_binding(principal, acl) for acl in acls]
    _delete(admin, principal)
    if bindings:
        for done in admin.create_acls(bindings, request_timeout=30).values():
            done.result()
    _wait(brokers, principal, {_rule(binding) for binding in bindings})


def clear_acls(admin: AdminClient, brokers: Mapping[int, str], principal: str) -> None:
    """Delete every ACL of ``principal``, gone from ``brokers`` when this returns."""
    _delete(admin, principal)
    _wait(brokers, principal, set())


def _delete(admin: AdminClient, principal: str) -> None:
    every = AclBindingFilter(
        ResourceType.ANY,
        None,
        ResourcePatternType.ANY,
        principal,
        None,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    for done in admin.delete_acls([every], request_timeout=30).values():
        done.result()


def _wait(
    brokers: Mapping[int, str], principal: str, expected: set[Rule], timeout: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        held = held_acls(brokers, principal)
        if all(rules == expected for rules in held.values()):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"ACLs of {principal} not applied: {held} != {expected}")
        time.sleep(0.05)


def held_acls(brokers: Mapping[int, str], principal: str) -> dict[int, set[Rule]]:
    """Each broker's ACLs for ``principal``."""
    any_ = 1  # the filter's ANY, for resource, pattern, operation and permission
    request = DescribeAclsRequest(any_, None, any_, principal, None, any_, any_)
    return {
        node: {
            (kind, name, pattern, acl[2], acl[3])
            for kind, name, pattern, acls in response.resources
            for acl in acls
        }
        for node, response in ask_each(brokers, request).items()
    }


def ask_each(brokers: Mapping[int, str], request: Request[Any]) -> dict[int, Any]:
    """``request``'s answer from each of ``brokers`` (node id -> address of a listener that
    needs no credentials); confluent-kafka's admin client asks a broker of its choosing."""

    async def ask() -> dict[int, Any]:
        client = AIOKafkaClient(bootstrap_servers=list(brokers.values()))
        await client.bootstrap()
        try:
            return {node: await client.send(node, request) for node in brokers}
        finally:
            await client.close()

    # a thread of its own: the caller may be a coroutine, with its loop running
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, ask()).result()
