"""Where a head's labelled examples come from, and how their labels are named (pure rules).

* A folder per label (the ImageFolder convention): ``folder_examples``.
* Tracks whose stored predictions came from Replicate (the teacher): ``teacher_examples``,
  its top label or its stored score distribution as soft targets.
* The platform's ``track_tags``, restricted to tags used on at least N tracks: ``tag_examples``.

Labels are stored as the teacher would store them: ``label_name`` is the Replicate backend's
own cleaning (``ranking.discogs_name``: ``Electronic---Ambient`` -> ``ambient electronic``,
lowercase, spaces normalised), so a folder named with a Discogs label and a name Replicate
stored meet as one label.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from genres.classify.ranking import discogs_name


def label_name(raw: str) -> str:
    """The stored form of a label (the Replicate backend's cleaning of Discogs names)."""
    return discogs_name(raw)


@dataclass(frozen=True, slots=True)
class Example:
    """One audio source (a path or URL) and its target: label -> probability (sums to 1)."""

    audio: str
    target: Mapping[str, float]

    @property
    def label(self) -> str:
        """The most probable label (ties by name)."""
        return min(self.target, key=lambda label: (-self.target[label], label))


def folder_examples(root: str, audio_extensions: Iterable[str]) -> tuple[list[Example], list[str]]:
    """One example per audio file in each sub-folder of ``root`` (the folder names the label);
    and the files left out (not audio, or outside a label folder), to list.

    Hidden entries are skipped; files in sub-sub-folders belong to their top folder's label.
    """
    extensions = frozenset(e.lower() for e in audio_extensions)
    examples: list[Example] = []
    ignored: list[str] = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            ignored.append(entry.path)
            continue
        label = label_name(entry.name)
        for folder, dirs, files in os.walk(entry.path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                path = os.path.join(folder, name)
                if name.startswith("."):
                    continue
                if os.path.splitext(name)[1].lower() in extensions:
                    examples.append(Example(path, {label: 1.0}))
                else:
                    ignored.append(path)
    return examples, ignored


def teacher_examples(
    rows: Iterable[tuple[str, Sequence[Mapping[str, object]]]], *, soft: bool
) -> list[Example]:
    """Examples from tracks' stored predictions (``[{"name", "confidence"}, ...]``, best first).

    ``soft``: the target is the stored confidences normalised over the stored labels (only the
    top N are stored); else the top label alone. Names are cleaned again (idempotent), so a
    name stored by an older version meets today's. Tracks without a usable prediction are
    skipped.
    """
    examples: list[Example] = []
    for audio, predictions in rows:
        scores: dict[str, float] = {}
        for p in predictions:
            name, confidence = p.get("name"), p.get("confidence")
            if isinstance(name, str) and isinstance(confidence, int | float) and confidence > 0:
                key = label_name(name)
                scores[key] = max(scores.get(key, 0.0), float(confidence))
        if not scores:
            continue
        if soft:
            total = sum(scores.values())
            examples.append(Example(audio, {k: v / total for k, v in scores.items()}))
        else:
            best = min(scores, key=lambda k: (-scores[k], k))
            examples.append(Example(audio, {best: 1.0}))
    return examples


def tag_examples(rows: Iterable[tuple[str, Sequence[str]]], min_tracks: int) -> list[Example]:
    """Examples from tracks' tags, keeping tags used on at least ``min_tracks`` of the tracks;
    a track with several kept tags has them as equal targets."""
    rows = [(audio, sorted({label_name(t) for t in tags})) for audio, tags in rows]
    used = Counter(tag for _, tags in rows for tag in tags)
    examples: list[Example] = []
    for audio, tags in rows:
        kept = [t for t in tags if used[t] >= min_tracks]
        if kept:
            examples.append(Example(audio, {t: 1.0 / len(kept) for t in kept}))
    return examples


def restrict(examples: Sequence[Example], min_examples: int) -> tuple[list[Example], list[str]]:
    """Soft targets cut to the labels that are some example's top label at least
    ``min_examples`` times (renormalised); the labels dropped. For teachers, whose long tail
    of rare labels cannot be learnt; a folder's labels are never dropped (their shortfall is
    an error the user must see)."""
    tops = Counter(e.label for e in examples)
    kept = {label for label, n in tops.items() if n >= min_examples}
    dropped = sorted({label for e in examples for label in e.target} - kept)
    out: list[Example] = []
    for e in examples:
        target = {k: v for k, v in e.target.items() if k in kept}
        total = sum(target.values())
        if total > 0:
            out.append(Example(e.audio, {k: v / total for k, v in target.items()}))
    return out, dropped
