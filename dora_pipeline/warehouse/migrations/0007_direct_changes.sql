-- Changes without a pull request (DESIGN §7): commits on a repository's default branch
-- that no merged pull request contains, as trunk-based teams push them. One row per
-- repository and commit; the partition is the UTC day of the commit's committed time.

create table dora_raw.direct_changes (
    repository        text        not null,  -- owner/name, lower-case
    sha               text        not null,
    source            text        not null,
    authored_at       timestamptz not null,  -- start of the change's lead time
    committed_at      timestamptz not null,  -- when it was committed to the trunk
    partition_date    date        not null,
    loaded_at         timestamptz not null default now(),
    primary key (repository, sha),
    constraint direct_changes_sha_hex check (sha ~ '^[0-9a-f]+$' and length(sha) between 7 and 64)
);
create index direct_changes_partition_idx on dora_raw.direct_changes (partition_date);
