"""How ``genres`` parses: one-line mistakes, bounded numbers, principals (standard library only).

``genres --help`` and every mistake in the arguments are answered before the service is
imported (``python -m bench startup``), so nothing here imports more than argparse.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NoReturn


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, not argparse's usage and message on two."""
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def bounded(kind: Callable[[str], Any], low: float | None, high: float | None) -> Any:
    """An argparse ``type``: ``kind`` of the text, between ``low`` and ``high`` (``None``: open)."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if (low is not None and value < low) or (high is not None and value > high):
            limits = f">= {low:g}" if high is None else f"between {low:g} and {high:g}"
            raise argparse.ArgumentTypeError(f"{text} is not {limits}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def number_option(
    parser: argparse.ArgumentParser,
    flag: str,
    kind: Callable[[str], float],
    bounds: tuple[float | None, float | None],
    default: float,
    metavar: str,
    help: str,
) -> None:
    """A number from ``bounds`` (``None``: open), its default said at the end of ``help``."""
    parser.add_argument(
        flag,
        type=bounded(kind, *bounds),
        default=default,
        metavar=metavar,
        help=f"{help} (default {default:g})",
    )


def principal(text: str) -> str:
    """An argparse ``type``: a Kafka principal, ``User:NAME``."""
    kind, _, name = text.partition(":")
    if kind != "User" or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not of the form User:NAME")
    return text


def cluster_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cluster",
        default="my-cluster",
        metavar="NAME",
        help="strimzi: the Kafka resource's name, the label strimzi.io/cluster (default "
        "my-cluster)",
    )
