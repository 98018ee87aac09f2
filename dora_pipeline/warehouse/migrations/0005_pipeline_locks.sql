-- The pipeline's own locks: one row per lock name (migrations, publish, a source's
-- partition), locked with a row lock for the life of a transaction. They replace
-- advisory locks, which any role of the cluster (the read-only one too) can take and
-- hold. dora_lib is not visible to the reader role, so nobody but the pipeline can hold
-- these rows. apply_migrations creates the table before it takes its own lock, so this
-- file only documents it for readers of the schema.

create table if not exists dora_lib.pipeline_locks (
    name  text primary key
);
