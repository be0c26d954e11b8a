"""``genres grants``: the statements, their quoting, and the roles the command line offers.

Whether the privileges are the right ones is ``tests/integration/test_database_grants.py``'s:
there the roles' SQL runs with them, and without each of them.
"""

from __future__ import annotations

import pytest

from genres.cli import GRANT_ROLES, build_parser
from genres.database.grants import ROLES, Grant, grants_of, required_grants, statements
from genres.database.schema import ALL_TABLES


def test_the_cli_knows_the_roles_with_grants_without_importing_them() -> None:
    assert GRANT_ROLES == ROLES


def test_statements_merge_a_tables_privileges_and_keep_column_grants_apart() -> None:
    grants = [
        Grant("tracks", "UPDATE", ("extra",)),
        Grant("tracks", "SELECT"),
        Grant("tags", "INSERT"),
        Grant("tags", "SELECT"),
        Grant("tags_id_seq", "USAGE", sequence=True),
        Grant("tags", "SELECT"),
    ]
    assert statements("genres_app", grants, schema="app") == [
        'GRANT USAGE ON SCHEMA "app" TO "genres_app";',
        'GRANT SELECT, INSERT ON TABLE "app"."tags" TO "genres_app";',
        'GRANT USAGE ON SEQUENCE "app"."tags_id_seq" TO "genres_app";',
        'GRANT SELECT ON TABLE "app"."tracks" TO "genres_app";',
        'GRANT UPDATE ("extra") ON TABLE "app"."tracks" TO "genres_app";',
    ]


@pytest.mark.parametrize(
    ("name", "quoted"),
    [("user", '"user"'), ("Genres App", '"Genres App"'), ('a"b', '"a""b"')],
)
def test_the_grantee_is_quoted_as_spelt(name: str, quoted: str) -> None:
    assert statements(name, [Grant("tracks", "SELECT")])[-1].endswith(f" TO {quoted};")


@pytest.mark.parametrize("name", ["", "a\0b"])
def test_a_name_postgresql_cannot_hold_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not a PostgreSQL name"):
        statements(name, [Grant("tracks", "SELECT")])


def test_an_unknown_role_is_refused_naming_the_roles() -> None:
    with pytest.raises(ValueError, match=r"no such role: recommend \(roles: .*backfill\)"):
        required_grants(["projector", "recommend"])


def test_roles_together_need_each_privilege_once() -> None:
    together = required_grants(ROLES)
    assert len(together) == len(set(together))
    assert set(together) == {grant for role in ROLES for grant in grants_of(role)}
    # The platform's tracks: read by all, written by the projector in `extra` alone.
    assert {g for g in together if g.table == "tracks"} == {
        Grant("tracks", "SELECT"),
        Grant("tracks", "UPDATE", ("extra",)),
    }


def test_the_command_takes_a_name_roles_and_a_schema() -> None:
    args = vars(build_parser().parse_args(["grants", "app", "--role", "projector"]))
    assert args == {
        "debug": False,
        "command": "grants",
        "name": "app",
        "roles": ["projector"],
        "schema": "public",
    }


def test_every_table_the_service_knows_is_granted_to_some_role() -> None:
    tables = {grant.table for grant in required_grants(ROLES) if not grant.sequence}
    assert tables == set(ALL_TABLES)
