-- The events outbox: the events of a batch (or a plan, or a dead letter) are written here in the
-- transaction that commits what they report, then relayed to the events stream and deleted.
-- A crash between the commit and the XADD therefore delays the events, never loses them.
CREATE TABLE event_outbox (
    id          bigserial PRIMARY KEY,             -- also the event's `outbox_id`: consumers de-duplicate on it
    event       jsonb NOT NULL,                    -- the Event (schemas/messages.py), as JSON
    created_at  timestamptz NOT NULL DEFAULT now()
);
