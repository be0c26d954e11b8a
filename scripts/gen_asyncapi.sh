#!/usr/bin/env bash
# Regenerate docs/asyncapi.json from the code (tests/unit/test_asyncapi.py checks it is current)
# and, when the AsyncAPI CLI is installed (npm ci --prefix tools/asyncapi), validate it.
set -euo pipefail
cd "$(dirname "$0")/.."

uv run python -m genres.asyncapi docs/asyncapi.json
cli=tools/asyncapi/node_modules/.bin/asyncapi
if [[ -x "$cli" ]]; then
    metrics="$(mktemp)"
    trap 'rm -f "$metrics"' EXIT
    echo '{"analyticsEnabled":"false","infoMessageShown":"true","userID":"genres"}' >"$metrics"
    ASYNCAPI_METRICS_CONFIG_PATH="$metrics" "$cli" validate docs/asyncapi.json --fail-severity warn
fi
