-- Raw landing tables. One row per source record, keyed by the source's natural key,
-- so re-running a partition upserts the same rows instead of adding new ones.
-- Component identity is kept as the source knows it (service_key_type, service_key);
-- the staging models resolve it against the Backstage catalog.

create schema if not exists dora_raw;
create schema if not exists dora_lib;

create table dora_raw.deployments (
    source            text        not null,
    external_id       text        not null,
    service_key_type  text        not null,  -- entity_ref | github_repo | argocd_app | name
    service_key       text        not null,
    repository        text,                  -- owner/name when known
    environment       text        not null,
    commit_sha        text,
    started_at        timestamptz,
    finished_at       timestamptz not null,
    failed            boolean     not null default false,
    partition_date    date        not null,
    loaded_at         timestamptz not null default now(),
    primary key (source, external_id),
    constraint deployments_sha_hex check (commit_sha is null or commit_sha ~ '^[0-9a-f]{7,64}$'),
    constraint deployments_times check (started_at is null or started_at <= finished_at)
);
create index deployments_partition_idx on dora_raw.deployments (partition_date);

create table dora_raw.pull_requests (
    repository        text        not null,  -- owner/name, lower-case
    number            integer     not null,
    source            text        not null,
    title             text,
    author            text,
    base_branch       text,
    opened_at         timestamptz not null,
    merged_at         timestamptz,
    first_commit_at   timestamptz,
    first_review_at   timestamptz,
    first_reviewer    text,
    merge_commit_sha  text,
    head_sha          text,
    additions         integer,
    deletions         integer,
    partition_date    date        not null,
    loaded_at         timestamptz not null default now(),
    primary key (repository, number),
    constraint pull_requests_number check (number > 0),
    constraint pull_requests_sha_hex check (
        (merge_commit_sha is null or merge_commit_sha ~ '^[0-9a-f]{7,64}$')
        and (head_sha is null or head_sha ~ '^[0-9a-f]{7,64}$')),
    constraint pull_requests_times check (merged_at is null or merged_at >= opened_at)
);
create index pull_requests_partition_idx on dora_raw.pull_requests (partition_date);

create table dora_raw.incidents (
    source            text        not null,
    external_id       text        not null,
    title             text,
    opened_at         timestamptz not null,
    resolved_at       timestamptz,
    caused_by_change  boolean,               -- NULL: the source does not say
    partition_date    date        not null,
    loaded_at         timestamptz not null default now(),
    primary key (source, external_id),
    constraint incidents_times check (resolved_at is null or resolved_at >= opened_at)
);
create index incidents_partition_idx on dora_raw.incidents (partition_date);

create table dora_raw.incident_components (
    source            text        not null,
    external_id       text        not null,
    service_key_type  text        not null,  -- entity_ref | pagerduty_service | opsgenie_service | name
    service_key       text        not null,
    primary key (source, external_id, service_key_type, service_key),
    foreign key (source, external_id) references dora_raw.incidents (source, external_id) on delete cascade
);

create table dora_raw.survey_responses (
    source            text        not null,
    survey_id         text        not null,
    respondent        text        not null,  -- keyed pseudonym, never the user ref
    group_ref         text        not null,
    submitted_at      timestamptz not null,
    satisfaction      smallint    not null check (satisfaction between 1 and 5),
    flow_state        smallint    not null check (flow_state between 1 and 5),
    blockers_text     text,
    partition_date    date        not null,
    loaded_at         timestamptz not null default now(),
    primary key (source, survey_id, respondent, submitted_at)
);
create index survey_responses_partition_idx on dora_raw.survey_responses (partition_date);

-- The catalog is a snapshot, replaced whole on every extract.
create table dora_raw.catalog_entities (
    entity_ref        text        primary key,  -- kind:namespace/name, lower-case
    kind              text        not null,     -- component | group | user | system | api | resource
    namespace         text        not null,
    name              text        not null,
    title             text,
    owner_ref         text,                      -- normalised group/user ref
    parent_ref        text,                      -- groups: the parent group
    spec_type         text,
    lifecycle         text,
    annotations       jsonb       not null default '{}'::jsonb,
    source            text        not null,
    loaded_at         timestamptz not null default now()
);

create table dora_raw.group_memberships (
    group_ref         text        not null,
    user_ref          text        not null,
    source            text        not null,
    loaded_at         timestamptz not null default now(),
    primary key (group_ref, user_ref)
);

-- Records a source could not accept, with the reason; never silently dropped.
create table dora_raw.quarantine (
    id                bigserial   primary key,
    source            text        not null,
    partition_date    date,
    record_type       text        not null,
    record_key        text,
    reason            text        not null,
    payload           text        not null,
    quarantined_at    timestamptz not null default now()
);
create index quarantine_source_idx on dora_raw.quarantine (source, partition_date);

-- One row per source and partition that landed: the audit trail of what was extracted when.
create table dora_raw.extract_log (
    source            text        not null,
    partition_date    date        not null,
    rows_loaded       jsonb       not null,
    rows_quarantined  integer     not null,
    extracted_at      timestamptz not null default now(),
    primary key (source, partition_date)
);
