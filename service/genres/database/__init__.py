"""PostgreSQL: the engine, the schema, migrations, statement batching and the shared pace
of Replicate creations. Never imports a role."""
