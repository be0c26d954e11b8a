"""Write the JSON Schema of every message model: ``genres-contracts-schema [DIR]``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from genres_contracts.events import (
    ClassificationFailed,
    ClassificationRequested,
    GenresClassified,
    TrackUploaded,
)
from genres_contracts.requests import RecommendedTags, RecommendedTagsRequest

MODELS: tuple[type[BaseModel], ...] = (
    TrackUploaded,
    ClassificationRequested,
    GenresClassified,
    ClassificationFailed,
    RecommendedTagsRequest,
    RecommendedTags,
)


def schemas() -> dict[str, dict[str, object]]:
    """The JSON Schema of each model, by model name."""
    return {model.__name__: model.model_json_schema() for model in MODELS}


def write(directory: Path) -> list[Path]:
    """Write ``<Model>.schema.json`` files into ``directory``; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in schemas().items():
        path = directory / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    for path in write(Path(args[0] if args else "schemas")):
        print(path)


if __name__ == "__main__":
    main()
