-- A model's row count after its last build: an incremental build adds what it inserted
-- and subtracts what it deleted instead of counting the whole table again
-- (docs/performance.md, "Incremental models").
alter table dora_lib.model_state add column rows bigint;  -- NULL: unknown (state written before 0010)
