#!/bin/sh
# The postgres image runs this once, when it initialises an empty data directory: the two roles of
# docs/database.md ("Roles and grants") with their passwords from Docker secrets, then the grants.
# The grants on products need the scraper's table: on a database without it they are left out,
# and `finally-indexer grants | psql` gives them once the scraper has created it.
set -eu
psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" \
    -v service_password="$(cat /run/secrets/indexer_db_password)" \
    -v migrate_password="$(cat /run/secrets/migrate_db_password)" <<'SQL'
CREATE ROLE finally_indexer LOGIN PASSWORD :'service_password';
CREATE ROLE finally_indexer_migrate LOGIN PASSWORD :'migrate_password';
SQL
grants=/opt/finally-indexer/grants.sql
if [ "$(psql -U "$POSTGRES_USER" -d "$POSTGRES_DB" -tAc "SELECT to_regclass('public.products') IS NOT NULL")" = t ]; then
    psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -f "$grants"
else
    grep -v '"products"' "$grants" | psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB"
    echo "finally-indexer: no public.products yet; run its two grants once the scraper has created it"
fi
