"""``python -m genres.asyncapi [PATH]``: write the document (``docs/asyncapi.json``)."""

from genres.asyncapi.document import main

main()
