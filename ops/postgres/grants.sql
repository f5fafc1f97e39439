-- finally-indexer grants printed by finally-indexer grants --database finally (docs/database.md)
GRANT CONNECT ON DATABASE "finally" TO "finally_indexer", "finally_indexer_migrate";
CREATE SCHEMA IF NOT EXISTS "finally_indexer" AUTHORIZATION "finally_indexer_migrate";
ALTER SCHEMA "finally_indexer" OWNER TO "finally_indexer_migrate";
GRANT USAGE ON SCHEMA "finally_indexer" TO "finally_indexer";
ALTER DEFAULT PRIVILEGES FOR ROLE "finally_indexer_migrate" IN SCHEMA "finally_indexer" GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "finally_indexer";
ALTER DEFAULT PRIVILEGES FOR ROLE "finally_indexer_migrate" IN SCHEMA "finally_indexer" GRANT USAGE, SELECT ON SEQUENCES TO "finally_indexer";
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "finally_indexer" TO "finally_indexer";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA "finally_indexer" TO "finally_indexer";
GRANT USAGE ON SCHEMA "public" TO "finally_indexer";
GRANT SELECT ("id", "title", "url", "img_url", "price", "content", "odo", "mileage", "brand", "year", "updated_at", "is_conversion") ON "public"."products" TO "finally_indexer";
GRANT UPDATE ("is_conversion") ON "public"."products" TO "finally_indexer";
