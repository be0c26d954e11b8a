"""The contracts' JSON Schemas against the previous release's: semantic versioning, checked.

``contracts/schemas/<version>/<Model>.schema.json`` holds the schemas of each release (written
by ``--snapshot`` when the version is bumped for a release). Without arguments this compares
the schemas the code makes now with the newest snapshot and exits 1 when a change is breaking
and the major version of ``contracts/pyproject.toml`` has not moved past the snapshot's.

Breaking, for records that producers and consumers on other versions exchange: a model or a
field removed, a field newly required, a type narrowed (a type no longer accepted, a tighter
bound, length or pattern), an enum (or constant) value removed.

    uv run python scripts/contract_schemas.py              # CI: the check
    uv run python scripts/contract_schemas.py --snapshot   # at a release: save this version's
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

from genres_contracts.schema import schemas

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = ROOT / "contracts"
SNAPSHOTS = CONTRACTS / "schemas"

Schema = dict[str, Any]
# Bounds that reject more values when they rise (lower bounds) or fall (upper bounds).
LOWER = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
UPPER = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
ANY_TYPE = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def current_version() -> str:
    project = tomllib.loads((CONTRACTS / "pyproject.toml").read_text(encoding="utf-8"))
    return str(project["project"]["version"])


def snapshots() -> list[str]:
    """Versions with a committed snapshot, oldest first."""
    found = [p.name for p in SNAPSHOTS.iterdir() if p.is_dir()] if SNAPSHOTS.is_dir() else []
    return sorted(found, key=version_key)


def load(version: str) -> dict[str, Schema]:
    return {
        path.name.removesuffix(".schema.json"): json.loads(path.read_text(encoding="utf-8"))
        for path in sorted((SNAPSHOTS / version).glob("*.schema.json"))
    }


def breaking_changes(old: dict[str, Schema], new: dict[str, Schema]) -> list[str]:
    """What in ``new`` breaks a reader or writer of ``old``, one line each."""
    changes = [f"{name}: model removed" for name in sorted(old.keys() - new.keys())]
    for name in sorted(old.keys() & new.keys()):
        changes += _Walk(old[name], new[name]).compare(old[name], new[name], name)
    return changes


class _Walk:
    """One model's comparison; ``$ref`` is resolved against each side's own ``$defs``."""

    def __init__(self, old_root: Schema, new_root: Schema) -> None:
        self._roots = (old_root, new_root)
        self._seen: set[tuple[int, int]] = set()

    def _resolve(self, node: Schema, side: int) -> Schema:
        while "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            node = {**self._roots[side].get("$defs", {})[name], **_without(node, "$ref")}
        return node

    def compare(self, old: Schema, new: Schema, where: str) -> list[str]:
        old, new = self._resolve(old, 0), self._resolve(new, 1)
        if (id(old), id(new)) in self._seen:
            return []
        self._seen.add((id(old), id(new)))
        changes = []
        lost = _types(old, self, 0) - _types(new, self, 1)
        if lost:
            changes.append(f"{where}: no longer accepts {', '.join(sorted(lost))}")
        old_values, new_values = _values(old), _values(new)
        if new_values is not None:
            removed = (
                ["(any value)"]
                if old_values is None
                else [json.dumps(v) for v in old_values if v not in new_values]
            )
            if removed:
                changes.append(f"{where}: value {', '.join(removed)} removed")
        changes += _bounds(old, new, where)
        changes += self._objects(old, new, where)
        old_items, new_items = _items(old, self, 0), _items(new, self, 1)
        if old_items is not None and new_items is not None:
            changes += self.compare(old_items, new_items, f"{where}[]")
        return changes

    def _objects(self, old: Schema, new: Schema, where: str) -> list[str]:
        old_props, new_props = _properties(old, self, 0), _properties(new, self, 1)
        if old_props is None or new_props is None:
            return []
        changes = [f"{where}.{field}: removed" for field in sorted(old_props[0] - new_props[0])]
        newly = sorted(new_props[1] - old_props[1])
        changes += [f"{where}.{field}: newly required" for field in newly]
        for field in sorted(old_props[0] & new_props[0]):
            changes += self.compare(old_props[2][field], new_props[2][field], f"{where}.{field}")
        return changes


def _without(node: Schema, *keys: str) -> Schema:
    return {k: v for k, v in node.items() if k not in keys}


def _branches(node: Schema, walk: _Walk, side: int) -> list[Schema]:
    """The alternatives of a union (``anyOf``/``oneOf``), resolved; else the node itself."""
    union = node.get("anyOf") or node.get("oneOf")
    if not union:
        return [node]
    return [b for branch in union for b in _branches(walk._resolve(branch, side), walk, side)]


def _types(node: Schema, walk: _Walk, side: int) -> set[str]:
    found: set[str] = set()
    for branch in _branches(node, walk, side):
        kind = branch.get("type")
        if kind is None:
            if "properties" in branch:
                found.add("object")
            elif "const" in branch or "enum" in branch:
                found |= {_json_type(v) for v in _values(branch) or []}
            else:
                found |= ANY_TYPE
        else:
            found |= set(kind) if isinstance(kind, list) else {kind}
    if "integer" in found and "number" in found:
        found.discard("integer")
    return found


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _values(node: Schema) -> list[Any] | None:
    """The values a node allows when it lists them (``enum``/``const`` in it or its union);
    ``None``: any value of its types."""
    union = node.get("anyOf") or node.get("oneOf")
    if union:
        listed = [_values(branch) for branch in union if branch.get("type") != "null"]
        if any(values is None for values in listed):
            return None
        return [v for values in listed if values is not None for v in values]
    if "enum" in node:
        return list(node["enum"])
    if "const" in node:
        return [node["const"]]
    return None


def _bounds(old: Schema, new: Schema, where: str) -> list[str]:
    changes = []
    for key in LOWER:
        if key in new and (key not in old or new[key] > old[key]):
            changes.append(f"{where}: {key} {old.get(key, 'none')} -> {new[key]}")
    for key in UPPER:
        if key in new and (key not in old or new[key] < old[key]):
            changes.append(f"{where}: {key} {old.get(key, 'none')} -> {new[key]}")
    for key in ("pattern", "format"):
        if key in new and new[key] != old.get(key):
            changes.append(f"{where}: {key} {old.get(key, 'none')} -> {new[key]}")
    return changes


def _properties(
    node: Schema, walk: _Walk, side: int
) -> tuple[set[str], set[str], dict[str, Schema]] | None:
    """``(names, required, schemas)`` of the object among the node's alternatives."""
    for branch in _branches(node, walk, side):
        if "properties" in branch:
            props = branch["properties"]
            return set(props), set(branch.get("required", ())), props
    return None


def _items(node: Schema, walk: _Walk, side: int) -> Schema | None:
    for branch in _branches(node, walk, side):
        if isinstance(branch.get("items"), dict):
            items: Schema = branch["items"]
            return items
    return None


def check(version: str, baseline: str | None, now: dict[str, Schema] | None = None) -> list[str]:
    """The failures of the check: breaking changes since ``baseline`` in the same major;
    ``now``: the schemas to judge (by default those the code makes)."""
    if baseline is None:
        return [f"no snapshot in {SNAPSHOTS.relative_to(ROOT)}: run with --snapshot"]
    changes = breaking_changes(load(baseline), schemas() if now is None else now)
    if not changes or version_key(version)[0] > version_key(baseline)[0]:
        return []
    return [
        f"breaking changes since {baseline} but the major version did not move ({version}):",
        *(f"  {change}" for change in changes),
    ]


def snapshot(version: str) -> Path:
    from genres_contracts.schema import write

    directory = SNAPSHOTS / version
    write(directory)
    return directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshot", action="store_true", help="save this version's schemas")
    args = parser.parse_args(argv)
    version = current_version()
    if args.snapshot:
        print(snapshot(version).relative_to(ROOT))
        return 0
    # The release this version is judged against: itself once released, else the one before.
    known = [v for v in snapshots() if version_key(v) <= version_key(version)]
    baseline = known[-1] if known else None
    failures = check(version, baseline)
    for line in failures:
        print(line, file=sys.stderr)
    if not failures:
        print(f"genres-contracts {version}: schemas compatible with {baseline} (semver)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
