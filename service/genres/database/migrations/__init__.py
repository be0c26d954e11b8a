"""Alembic migrations of the service's schema (run with ``genres.database.migrate``)."""
