"""``python -m bench NAME [options]``: pipeline, projector, recommend, local-model."""

from __future__ import annotations

import importlib
import sys

BENCHES = {
    "pipeline": "bench.pipeline",
    "projector": "bench.projector",
    "recommend": "bench.recommend",
    "local-model": "bench.local_model",
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in BENCHES:
        print(f"usage: python -m bench {{{','.join(BENCHES)}}} [options]", file=sys.stderr)
        raise SystemExit(2)
    module = importlib.import_module(BENCHES[sys.argv[1]])
    module.main(sys.argv[2:])


if __name__ == "__main__":
    main()
