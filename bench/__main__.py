"""``python -m bench NAME [options]``: one of ``BENCHES``."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import sys

BENCHES = {
    "pipeline": "bench.pipeline",
    "cap": "bench.cap",
    "compression": "bench.compression",
    "projector": "bench.projector",
    "recommend": "bench.recommend",
    "local-model": "bench.local_model",
    "startup": "bench.startup",
    "folder": "bench.folder",
    "cascade": "bench.cascade",
    "learn": "bench.learn",
    "plots": "bench.plots",
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in BENCHES:
        print(f"usage: python -m bench {{{','.join(BENCHES)}}} [options]", file=sys.stderr)
        raise SystemExit(2)
    name = sys.argv[1]
    # Each bench parses sys.argv itself, as when run as ``python -m bench.NAME``.
    sys.argv = [f"bench {name}", *sys.argv[2:]]
    result = importlib.import_module(BENCHES[name]).main()
    if inspect.iscoroutine(result):
        asyncio.run(result)


if __name__ == "__main__":
    main()
