"""PostgreSQL access (asyncpg pool, queries) and the Alembic migrations of the service's tables."""
