"""PostgreSQL: schema, queries and migrations."""
