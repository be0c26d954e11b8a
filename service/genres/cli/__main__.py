"""``python -m genres.cli``: the ``genres`` command without its console script."""

from genres.cli import main

main()
