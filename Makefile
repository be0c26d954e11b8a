# Tasks, one target per test tier. Every target runs through uv, which installs what it needs.
#   make lint        ruff, format check, mypy (strict), import contracts
#   make unit        the rules and pure code, no servers (seconds)
#   make model       the embedded model, its heads and the audio decoder on real audio
#   make toolchain   the outside tools' checks: wheel build, hadolint, Compose, AsyncAPI CLI,
#                    promtool, the docs site
#   make cluster     the secured three-broker cluster (SASL_SSL, mTLS, ACLs; needs openssl)
#   make fast        everything but the fault suite
#   make test        the whole suite (what CI and README's `uv run pytest` run)
#   make dist        the contracts' wheel and sdist into dist/ (uv build)
#   make dist-check  those checked as the release workflow checks them (twine, fresh venvs)
# The broker is chosen as README says (GENRES_TESTS_BROKER=kafka|tansu|docker forces one).
# A run of whole tiers is spread over pytest-xdist workers (tests/support/parallel.py): 2, one
# broker and PostgreSQL each, tests/cluster whole on one; GENRES_TESTS_WORKERS=N sets how many
# (0: one process, as a run naming files gets).

PYTEST := uv run pytest -p no:cacheprovider

TWINE := uvx twine==7.0.0

.PHONY: lint unit model toolchain integration e2e faults cluster fast test ci dist dist-check

lint:
	uv run ruff check .
	uv run ruff format --check .
	uv run mypy
	uv run lint-imports

unit:
	$(PYTEST) -m unit

model:
	$(PYTEST) -m model

toolchain:
	$(PYTEST) -m toolchain

integration:
	$(PYTEST) -m integration

e2e:
	$(PYTEST) -m e2e

faults:
	$(PYTEST) -m faults

cluster:
	$(PYTEST) -m cluster -n0

fast:
	$(PYTEST) -m "not faults"

test:
	$(PYTEST)

ci:
	bash .ci/run

# genres-contracts for other teams: `pip install dist/genres_contracts-<version>-py3-none-any.whl`.
dist:
	rm -rf dist
	uv build --out-dir dist contracts

# What .github/workflows/release.yml runs before publishing: metadata (twine), the JSON
# Schemas against the last release (semver), and the built files installed by every route
# into fresh virtualenvs, the client example run against the test bed.
dist-check: dist
	$(TWINE) check --strict dist/*
	uv run python scripts/contract_schemas.py
	GENRES_CONTRACTS_DIST=dist $(PYTEST) tests/unit/test_contracts_package.py \
		tests/integration/test_contracts_install.py
