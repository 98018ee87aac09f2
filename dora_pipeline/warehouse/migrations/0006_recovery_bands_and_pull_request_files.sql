-- DORA 2023+ and monorepos (docs/metrics.md).
--
-- 1. Failed deployment recovery time is tiered with the time-to-restore bands (DORA
--    publishes them as the same clusters).
-- 2. The files a merged pull request changed, for repositories whose catalog
--    components live in folders (backstage.io/source-location ending in a folder):
--    one row per PR, the paths as an array (a PR's list is replaced whole on re-extract).
-- 3. dora_lib.source_location_folder: the one reading of that annotation, used by the
--    models (which PRs a component gets) and by the GitHub source (which repositories
--    need file lists).

insert into dora_lib.tier_bands values
    ('median_failed_deployment_recovery_minutes', 'elite',  1, 0,     true,  60,    false, 'minutes', 'DORA State of DevOps 2024 (time to restore bands)'),
    ('median_failed_deployment_recovery_minutes', 'high',   2, 60,    true,  1440,  false, 'minutes', 'DORA State of DevOps 2024 (time to restore bands)'),
    ('median_failed_deployment_recovery_minutes', 'medium', 3, 1440,  true,  10080, false, 'minutes', 'DORA State of DevOps 2024 (time to restore bands)'),
    ('median_failed_deployment_recovery_minutes', 'low',    4, 10080, true,  null,  false, 'minutes', 'DORA State of DevOps 2024 (time to restore bands)');

create table dora_raw.pull_request_files (
    repository        text        not null,  -- owner/name, lower-case (as dora_raw.pull_requests)
    number            integer     not null,
    source            text        not null,
    paths             text[]      not null,  -- changed files, repository-relative, as GitHub lists them
    changed_files     integer,               -- GitHub's count (changedFiles); paths is complete when it holds that many
    partition_date    date        not null,
    loaded_at         timestamptz not null default now(),
    primary key (repository, number),
    constraint pull_request_files_number check (number > 0)
);
create index pull_request_files_partition_idx on dora_raw.pull_request_files (partition_date);

-- 'url:https://github.com/acme/mono/tree/main/services/payments/' ->
-- ('acme/mono', 'services/payments'). No row when the location is not a repository
-- tree/blob URL or names no folder (the repository root). The ref is one path segment.
create function dora_lib.source_location_folder(location text)
returns table (repository text, folder text)
language sql immutable parallel safe
as $$
    select
        lower(p[4] || '/' || regexp_replace(p[5], '\.git$', '')),
        btrim(array_to_string(p[8:], '/'), '/')
    from (select string_to_array(regexp_replace(btrim(location), '^url:', ''), '/') as p) as s
    where p[1] ~* '^https?:$'
      and p[2] = ''
      and coalesce(p[4], '') <> ''
      and coalesce(p[5], '') <> ''
      and p[6] in ('tree', 'blob')
      and btrim(array_to_string(p[8:], '/'), '/') <> ''
$$;
