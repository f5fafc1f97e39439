-- Development and test mirror of the scraper's `products` table. The scraper owns the real one:
-- production never runs this file (migrations do not touch `products`).
CREATE TABLE IF NOT EXISTS products (
    id            bigserial PRIMARY KEY,
    title         text NOT NULL DEFAULT '',
    url           text,
    img_url       text,
    price         bigint,          -- won
    content       text,
    odo           integer,         -- km, as the odometer reads
    mileage       integer,         -- km
    brand         text,
    year          integer,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    is_conversion boolean NOT NULL DEFAULT false  -- true = in Qdrant with its current content
);
-- The index docs/database.md asks the scraper team for: /status and /metrics count the pending
-- listings and find the oldest of them from it, without reading the table.
CREATE INDEX IF NOT EXISTS products_pending ON products (updated_at) WHERE NOT is_conversion;
