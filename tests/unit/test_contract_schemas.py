"""The contracts' JSON Schemas are compared with the previous release's snapshot
(``scripts/contract_schemas.py``): what counts as breaking, and the check on the code as it is."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, create_model
from scripts.contract_schemas import (
    breaking_changes,
    check,
    current_version,
    load,
    snapshots,
    version_key,
)

from genres_contracts.schema import schemas


class Tag(BaseModel):
    name: str
    score: float


FIELDS: dict[str, Any] = {
    "id": (int, ...),
    "kind": (Literal["a", "b"], ...),
    "score": (float, ...),
    "title": (str, Field(max_length=100)),
    "note": (str | None, None),
    "tags": (list[Tag], []),
}


def model(**changed: Any) -> type[BaseModel]:
    """The model ``M`` with ``FIELDS``, each of ``changed`` replaced (``None``: removed)."""
    fields = {k: v for k, v in (FIELDS | changed).items() if v is not None}
    made: type[BaseModel] = create_model("M", **fields)
    return made


def changes(**changed: Any) -> list[str]:
    before, after = model().model_json_schema(), model(**changed).model_json_schema()
    return breaking_changes({"M": before}, {"M": after})


def test_the_same_schema_breaks_nothing() -> None:
    assert changes() == []


def test_additions_and_widenings_break_nothing() -> None:
    assert (
        changes(
            id=(int | None, ...),  # null accepted too
            kind=(Literal["a", "b", "c"], ...),  # a value added
            title=(str, Field(max_length=200)),  # a looser bound
            extra=(str | None, None),  # an optional field added
        )
        == []
    )


def test_a_removed_field_breaks() -> None:
    assert changes(note=None) == ["M.note: removed"]


def test_a_newly_required_field_breaks() -> None:
    assert changes(note=(str | None, ...), added=(str, ...)) == [
        "M.added: newly required",
        "M.note: newly required",
    ]


def test_a_narrowed_type_breaks() -> None:
    assert changes(
        score=(int, ...),  # was float
        title=(str, Field(max_length=50)),  # a tighter bound
        note=(str, ""),  # null no longer accepted
    ) == [
        "M.note: no longer accepts null",
        "M.score: no longer accepts number",
        "M.title: maxLength 100 -> 50",
    ]


def test_a_removed_enum_value_breaks() -> None:
    assert changes(kind=(Literal["a"], ...)) == ['M.kind: value "b" removed']


def test_changes_inside_nested_models_and_removed_models_break() -> None:
    class Tag(BaseModel):  # same name, in $defs, without its score
        name: str

    old: dict[str, Any] = {"M": model().model_json_schema(), "Gone": Tag.model_json_schema()}
    new = {"M": model(tags=(list[Tag], [])).model_json_schema()}
    assert breaking_changes(old, new) == ["Gone: model removed", "M.tags[].score: removed"]


def test_a_breaking_change_fails_unless_the_major_version_moves() -> None:
    (baseline, *_) = snapshots()
    now = {name: dict(schema) for name, schema in load(baseline).items()}
    now.pop("TrackUploaded")
    major, minor, patch = version_key(baseline)
    assert check(f"{major}.{minor}.{patch + 1}", baseline, now)[1:] == [
        "  TrackUploaded: model removed"
    ]
    assert check(f"{major}.{minor + 1}.0", baseline, now) != []
    assert check(f"{major + 1}.0.0", baseline, now) == []
    assert check(f"{major}.{minor}.{patch + 1}", baseline, load(baseline)) == []


def test_the_contracts_as_they_are_keep_to_their_version() -> None:
    """The CI check: the code's schemas against the release snapshot this version follows."""
    version = current_version()
    known = [v for v in snapshots() if version_key(v) <= version_key(version)]
    assert known, "no snapshot of a release: scripts/contract_schemas.py --snapshot"
    assert check(version, known[-1]) == []
    if version in snapshots():  # a released version's snapshot is what it makes
        assert load(version) == schemas()
