"""What a person reads of predictions and recommended tags, in one vocabulary.

``genres classify``, ``genres demo`` and ``genres recommend`` print the same table with the
contracts' words: a ``name`` and its ``confidence`` (a recommended tag's ``score`` is the
confidence of the prediction it came from), ranked. A reply with nothing to rank says why in
words, not as an empty table.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    from rich.console import Console

    from genres_contracts import RecommendedTags

WAIT_HINT_MS = 10_000


def ranked(rows: Iterable[tuple[str, float]], *, title: str | None = None) -> Table:
    """``#``, ``name``, ``confidence``: best first, as given."""
    table = Table(title=title)
    table.add_column("#", justify="right")
    table.add_column("name")
    table.add_column("confidence", justify="right")
    for rank, (name, confidence) in enumerate(rows, 1):
        table.add_row(str(rank), name, f"{confidence:.4f}")
    return table


def without_tags(reply: RecommendedTags) -> str | None:
    """What to say instead of a table when the reply holds no tags (``None``: it holds some)."""
    track = reply.track_id
    if reply.tags:
        return None
    if not reply.available:
        return f"track {track}: no classifier is configured (available: false)"
    if reply.pending:
        return (
            f"track {track}: classification pending: it was requested and is not done yet; ask "
            f"again, or wait for it: genres recommend {track} --wait-ms {WAIT_HINT_MS}"
        )
    return (
        f"track {track}: no recommended tags (its predictions are all tags it already has, "
        "or it could not be classified)"
    )


def print_recommended(console: Console, reply: RecommendedTags) -> None:
    """The tags as a ranked table under a line naming the track, or the reason there are none."""
    reason = without_tags(reply)
    if reason is not None:
        console.print(reason, highlight=False, markup=False, soft_wrap=True)
        return
    # The title on a line of its own: as the table's title it wraps to the table's width.
    console.print(f"recommended tags for track {reply.track_id}", highlight=False)
    console.print(ranked((tag.name, tag.score) for tag in reply.tags))
