"""Which of musicnn's 50 MSD (Last.fm) tags are genres, and their stored names.

The MSD model was trained on the 50 most frequent Last.fm tags of the Million Song Dataset.
Thirty of them name genres and are kept; names are lowercased (``Hip-Hop`` -> ``hip-hop``,
``Progressive rock`` -> ``progressive rock``, ``House`` -> ``house``), ``rnb`` is kept as spelled.
Genre-like tags that Last.fm users use as genres are kept too: ``chillout`` (the chill-out /
downtempo genre, unlike the mood ``chill``), ``easy listening`` and ``experimental``.

The other twenty are dropped, because a genre tag would be wrong for them:

* decades, not genres: ``60s``, ``70s``, ``80s``, ``90s``, ``00s``; and ``oldies`` (an era
  label: "old songs", whatever the style);
* moods and judgements: ``beautiful``, ``Mellow``, ``chill``, ``party``, ``sexy``, ``catchy``,
  ``sad``, ``happy``;
* who sings: ``female vocalists``, ``female vocalist``, ``male vocalists``;
* instrumentation and production, which cut across genres: ``instrumental``, ``guitar``,
  ``acoustic``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

DROPPED_TAGS: frozenset[str] = frozenset(
    {
        # decades and eras
        "60s",
        "70s",
        "80s",
        "90s",
        "00s",
        "oldies",
        # moods and judgements
        "beautiful",
        "mellow",
        "chill",
        "party",
        "sexy",
        "catchy",
        "sad",
        "happy",
        # who sings
        "female vocalists",
        "female vocalist",
        "male vocalists",
        # instrumentation and production
        "instrumental",
        "guitar",
        "acoustic",
    }
)
"""Lowercased MSD tags that are not genres (see the module's docstring for why)."""


def genre_name(tag: str) -> str:
    """The stored name of an MSD tag: lowercase, spaces normalised."""
    return " ".join(tag.lower().split())


def is_genre(tag: str) -> bool:
    return genre_name(tag) not in DROPPED_TAGS


def genre_indices(tags: Sequence[str]) -> tuple[tuple[int, str], ...]:
    """(output index, stored name) of every genre tag among the model's ``tags``."""
    return tuple((i, genre_name(tag)) for i, tag in enumerate(tags) if is_genre(tag))


def genre_names(tags: Iterable[str]) -> frozenset[str]:
    """The stored names of the genre tags among ``tags``."""
    return frozenset(genre_name(tag) for tag in tags if is_genre(tag))
