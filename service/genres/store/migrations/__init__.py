"""Alembic migrations of the service's schema (run with ``genres.store.migrate``)."""
