-- An incremental build records the week of the earliest row it changed, added or
-- removed, a re-extracted event's old place included (the loader updates a moved event
-- in place, so raw keeps no trace of where it was): every incremental model built after
-- it rebuilds from there (docs/performance.md, "Incremental models", moved events).
alter table dora_lib.model_state add column changed_since timestamptz;  -- NULL: a full build, or nothing changed
