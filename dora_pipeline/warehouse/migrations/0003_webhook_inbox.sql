-- The CI deploy webhook's inbox: one row per accepted delivery, stored before the
-- receiver answers 202. The "webhook" source turns the rows whose finished_at falls in
-- a partition's UTC day into deployments. A repeated delivery id is stored once.

create table dora_raw.webhook_inbox (
    delivery_id       text        primary key,
    received_at       timestamptz not null default now(),
    finished_at       timestamptz not null,  -- from the payload, for partition selection
    payload           jsonb       not null,  -- the validated, normalised event
    body_sha256       text        not null   -- of the raw body, to tell redeliveries apart
);
create index webhook_inbox_finished_idx on dora_raw.webhook_inbox (finished_at);
