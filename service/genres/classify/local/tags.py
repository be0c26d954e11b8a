"""The embedded model's genre tags: which musicnn MSD and MTT tags are kept, and their names.

The embedded model (``musicnn_genres.onnx``) runs musicnn's two models side by side on the same
log-mel patches and outputs 33 genre scores: MSD's 30 genre tags, then MTT's ``classical``,
``opera`` and ``choral``. ``scripts/convert_musicnn.py`` builds that output from the lists below;
``musicnn_genres.json`` names its columns.

MSD (Million Song Dataset). The MSD model was trained on the 50 most frequent Last.fm tags of
the Million Song Dataset.
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

MTT (MagnaTagATune). MSD has no tag for classical music (classical clips came back as jazz,
ambient or progressive rock); MTT has. Kept, and only these (``MTT_GENRES``):

* ``classical``: the max, per patch, of MTT's ``classical`` and ``classic`` (annotators' two
  spellings of one genre);
* ``opera`` and ``choral``: classical vocal genres MSD cannot name.

Dropped from MTT:

* genres MSD already has (``rock``, ``pop``, ``electronic``, ``dance``, ``metal``, ``ambient``,
  ``country``): MSD's are kept, so a genre is scored once, by the model trained on songs;
* ``techno`` and ``indian``: measured on labelled clips (issue 14), they push real genres out of
  the top 3; ``new age`` was not part of that measured merge and is left out with them;
* everything else, for the MSD reasons above: instruments (``guitar``, ``piano``, ``violin``,
  ``sitar``, ``harpsichord``...), who sings (``female``, ``male vocal``, ``choir``,
  ``no vocals``...), tempo and loudness (``slow``, ``fast``, ``loud``, ``quiet``, ``soft``),
  and descriptions (``weird``, ``solo``, ``beat``...).
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

MTT_GENRES: dict[str, tuple[str, ...]] = {
    "classical": ("classical", "classic"),
    "opera": ("opera",),
    "choral": ("choral",),
}
"""Stored genre name -> the MTT tags merged into it (max per patch), in output order."""


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
