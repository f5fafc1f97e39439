-- Audit reports count apart the drifted listings that changed while the audit ran: their row or
-- point is newer than `in_flight_after`, a watermark taken from the rows' own `updated_at` (no
-- clock is compared with another). Their sync was presumably still on its way when the audit read
-- them. They stay in `counts` (no verdict is hidden); an audit of a building generation does not let
-- them hold the switch (docs/pipeline.md, Generations).
ALTER TABLE audit_reports
    ADD COLUMN newest_row_at   timestamptz,                -- max(products.updated_at) when the audit started
    ADD COLUMN in_flight_after timestamptz,                -- the watermark the audit judged "changed since" by
    ADD COLUMN in_flight       bigint NOT NULL DEFAULT 0;  -- drifted listings whose row or point is newer
