"""The ``genres`` command line (the console script ``genres = genres.cli:main``).

Start-up is part of the interface: ``genres --help`` and every mistake in the arguments or the
settings are answered before the service is imported (``python -m bench startup``). So parsing
(``table``, ``arguments``) and each command's first steps (``commands``, ``common``) import the
standard library only, and parse with argparse: typer (0.29) imports pydantic to parse, which
alone took longer than the whole budget. Each command checks the settings it needs, then
imports what it runs: the service, or this package's heavier modules (``classify``, ``batch``,
``learn``, ``demo``, ``dev``, and ``sandbox``, what ``demo`` and ``dev`` share).
"""

from genres.cli.table import BUS_ROLES, COMMANDS, GRANT_ROLES, ROLES, build_parser, main

__all__ = ["BUS_ROLES", "COMMANDS", "GRANT_ROLES", "ROLES", "build_parser", "main"]
