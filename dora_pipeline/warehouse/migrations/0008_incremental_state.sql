-- What the model engine needs to rebuild only what new data can change
-- (docs/performance.md, "Incremental models").
-- One row per model, written in the transaction that builds it: the inputs it was built
-- from (a hash of its SQL, its parameters, its upstream models' inputs and the content
-- of the snapshot tables it reads), how fresh those inputs were (raw rows loaded after
-- fresh_as_of may not be in it) and the as_of of that build.
create table dora_lib.model_state (
    model        text        primary key,   -- schema.table
    inputs       text        not null,
    fresh_as_of  timestamptz not null,
    as_of        timestamptz,                -- the run's dora.as_of (NULL: built without one)
    dirty_since  timestamptz,                -- NULL: the last build was a full one
    built_at     timestamptz not null default now()
);

-- Rows loaded (or changed) after a model's fresh_as_of are found by these.
create index deployments_loaded_idx on dora_raw.deployments (loaded_at);
create index pull_requests_loaded_idx on dora_raw.pull_requests (loaded_at);
create index incidents_loaded_idx on dora_raw.incidents (loaded_at);
create index survey_responses_loaded_idx on dora_raw.survey_responses (loaded_at);
create index pull_request_files_loaded_idx on dora_raw.pull_request_files (loaded_at);
create index direct_changes_loaded_idx on dora_raw.direct_changes (loaded_at);
