"""The privileges each role needs on the tables: what its SQL reads and writes, nothing more.

``genres migrate`` runs as the tables' owner. The roles run as a login role that owns nothing
and holds only these privileges (``genres grants NAME`` prints them as ``GRANT`` statements),
so a role cannot change the schema, nor write what it only reads: of the platform's
``tracks`` the projector may update ``extra`` alone.

Each entry comes from the statements of the role's store (``classifier/ledger.py``,
``database/pace.py``, ``projector/store.py``, ``responder/tracks.py``, ``backfill/store.py``).
PostgreSQL asks for ``SELECT`` beside a write whenever the statement reads the table's
columns (a ``WHERE``, ``RETURNING``, ``ON CONFLICT``), and for ``UPDATE`` on a row locked
``FOR UPDATE``. An integration test runs every statement as a role holding exactly these
privileges, and once more without each one, which then fails: none is missing or spare.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import Table

from genres.database.schema import (
    classification_requests,
    genre_classifications,
    projected_models,
    replicate_pace,
    tags,
    track_tags,
    tracks,
)

__all__ = ["ROLES", "Grant", "grants_of", "required_grants", "statements"]


@dataclass(frozen=True, order=True)
class Grant:
    """One privilege on one table (or on some of its columns), or ``USAGE`` on a sequence."""

    table: str
    privilege: str  # SELECT, INSERT, UPDATE, DELETE; USAGE on a sequence
    columns: tuple[str, ...] = ()  # none: the whole table
    sequence: bool = False


def _on(table: Table, *privileges: str) -> list[Grant]:
    return [Grant(table.name, privilege) for privilege in privileges]


# The sequence BIGSERIAL gives tags.id (docs/interface.md's DDL): the projector creates tags.
TAGS_SEQUENCE = f"{tags.name}_{tags.c.id.name}_seq"

_GRANTS: Mapping[str, list[Grant]] = {
    "classifier": [
        *_on(genre_classifications, "SELECT", "INSERT", "UPDATE"),
        # the Replicate backend's shared pace (database/pace.py)
        *_on(replicate_pace, "SELECT", "INSERT", "UPDATE"),
    ],
    "projector": [
        *_on(tracks, "SELECT"),
        Grant(tracks.name, "UPDATE", (tracks.c.extra.name,)),
        *_on(tags, "SELECT", "INSERT"),
        Grant(TAGS_SEQUENCE, "USAGE", sequence=True),
        *_on(track_tags, "SELECT", "INSERT"),
        *_on(projected_models, "SELECT", "INSERT", "UPDATE"),
        *_on(classification_requests, "SELECT", "DELETE"),
    ],
    "responder": [
        *_on(tracks, "SELECT"),
        *_on(tags, "SELECT"),
        *_on(track_tags, "SELECT"),
        *_on(genre_classifications, "SELECT"),
        *_on(classification_requests, "SELECT", "INSERT", "UPDATE", "DELETE"),
    ],
    "backfill": [
        *_on(tracks, "SELECT"),
        *_on(projected_models, "SELECT"),
    ],
}

ROLES = tuple(_GRANTS)
"""The roles that use the database (``recommend`` talks to the bus only)."""


def grants_of(role: str) -> list[Grant]:
    """What ``role`` needs (``ValueError`` naming the roles when there is no such role)."""
    if role not in _GRANTS:
        raise ValueError(f"no such role: {role} (roles: {', '.join(ROLES)})")
    return list(_GRANTS[role])


def required_grants(roles: Iterable[str]) -> list[Grant]:
    """What ``roles`` need together, each privilege once, in a stable order."""
    return sorted({grant for role in roles for grant in grants_of(role)})


def statements(grantee: str, grants: Iterable[Grant], *, schema: str = "public") -> list[str]:
    """``GRANT`` statements giving ``grantee`` ``grants`` on the tables in ``schema``: one per
    table and column list. Names are quoted (``grantee`` is taken exactly as spelt)."""
    to = _quote(grantee)
    where = _quote(schema)
    lines = [f"GRANT USAGE ON SCHEMA {where} TO {to};"]
    merged: dict[tuple[str, tuple[str, ...], bool], list[str]] = {}
    for grant in sorted(set(grants)):
        merged.setdefault((grant.table, grant.columns, grant.sequence), []).append(grant.privilege)
    for (table, columns, sequence), privileges in merged.items():
        what = ", ".join(_ordered(privileges))
        if columns:
            what += f" ({', '.join(_quote(column) for column in columns)})"
        kind = "SEQUENCE" if sequence else "TABLE"
        lines.append(f"GRANT {what} ON {kind} {where}.{_quote(table)} TO {to};")
    return lines


_ORDER = ("SELECT", "INSERT", "UPDATE", "DELETE", "USAGE")


def _ordered(privileges: list[str]) -> list[str]:
    return sorted(privileges, key=_ORDER.index)


def _quote(name: str) -> str:
    """A quoted identifier: safe whatever the name (``user`` unquoted would be a keyword)."""
    if not name or "\0" in name:
        raise ValueError(f"not a PostgreSQL name: {name!r}")
    return '"' + name.replace('"', '""') + '"'
