# Tasks, one target per test tier. Every target runs through uv, which installs what it needs.
#   make lint        ruff, format check, mypy (strict), import contracts
#   make unit        the rules and pure code, no servers (seconds)
#   make toolchain   the outside tools' checks: wheel build, hadolint, Compose, AsyncAPI CLI
#   make cluster     the secured three-broker cluster (SASL_SSL, mTLS, ACLs; needs openssl)
#   make fast        everything but the fault suite
#   make test        the whole suite (what CI and README's `uv run pytest` run)
# The broker is chosen as README says (GENRES_TESTS_BROKER=kafka|tansu|docker forces one).
# A run of whole tiers is spread over pytest-xdist workers (tests/support/parallel.py): 2, one
# broker and PostgreSQL each, tests/cluster whole on one; GENRES_TESTS_WORKERS=N sets how many
# (0: one process, as a run naming files gets).

PYTEST := uv run pytest -p no:cacheprovider

.PHONY: lint unit toolchain integration e2e faults cluster fast test ci

lint:
	uv run ruff check .
	uv run ruff format --check .
	uv run mypy
	uv run lint-imports

unit:
	$(PYTEST) -m unit

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
