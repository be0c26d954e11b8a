"""The contracts' JSON Schemas are compared with the previous release's snapshot
(``scripts/contract_schemas.py``): what counts as breaking, and the check on the code as it is."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field
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


class Before(BaseModel):
    id: int
    kind: Literal["a", "b"]
    score: float
    title: str = Field(max_length=100)
    note: str | None = None
    tags: list[Tag] = []


def changes(after: type[BaseModel]) -> list[str]:
    return breaking_changes({"M": Before.model_json_schema()}, {"M": after.model_json_schema()})


def test_the_same_schema_breaks_nothing() -> None:
    assert changes(Before) == []


def test_additions_and_widenings_break_nothing() -> None:
    class After(BaseModel):
        id: int | None  # null accepted too
        kind: Literal["a", "b", "c"]  # a value added
        score: float
        title: str = Field(max_length=200)  # a looser bound
        note: str | None = None
        tags: list[Tag] = []
        extra: str | None = None  # an optional field added

    assert changes(After) == []


def test_a_removed_field_breaks() -> None:
    class After(BaseModel):
        id: int
        kind: Literal["a", "b"]
        score: float
        title: str = Field(max_length=100)
        tags: list[Tag] = []

    assert changes(After) == ["M.note: removed"]


def test_a_newly_required_field_breaks() -> None:
    class After(BaseModel):
        id: int
        kind: Literal["a", "b"]
        score: float
        title: str = Field(max_length=100)
        note: str | None
        tags: list[Tag] = []
        added: str

    assert changes(After) == ["M.added: newly required", "M.note: newly required"]


def test_a_narrowed_type_breaks() -> None:
    class After(BaseModel):
        id: int
        kind: Literal["a", "b"]
        score: int  # was float
        title: str = Field(max_length=50)  # a tighter bound
        note: str = ""  # null no longer accepted
        tags: list[Tag] = []

    assert changes(After) == [
        "M.note: no longer accepts null",
        "M.score: no longer accepts number",
        "M.title: maxLength 100 -> 50",
    ]


def test_a_removed_enum_value_breaks() -> None:
    class After(BaseModel):
        id: int
        kind: Literal["a"]
        score: float
        title: str = Field(max_length=100)
        note: str | None = None
        tags: list[Tag] = []

    assert changes(After) == ['M.kind: value "b" removed']


def test_changes_inside_nested_models_and_removed_models_break() -> None:
    class Tag(BaseModel):  # same name, in $defs
        name: str

    class After(BaseModel):
        id: int
        kind: Literal["a", "b"]
        score: float
        title: str = Field(max_length=100)
        note: str | None = None
        tags: list[Tag] = []

    old: dict[str, Any] = {"M": Before.model_json_schema(), "Gone": Tag.model_json_schema()}
    assert breaking_changes(old, {"M": After.model_json_schema()}) == [
        "Gone: model removed",
        "M.tags[].score: removed",
    ]


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
