-- The same rule as 0001's SHA checks (lower-case hex, 7 to 64 characters), written so
-- PostgreSQL checks it in about 1 µs instead of about 25: its regex engine expands the
-- bounded repetition {7,64} into 64 states per character. With two SHAs per pull
-- request that check was most of the server's time in a load (docs/performance.md).
alter table dora_raw.deployments
    drop constraint deployments_sha_hex,
    add constraint deployments_sha_hex check (
        commit_sha is null or (commit_sha ~ '^[0-9a-f]+$' and length(commit_sha) between 7 and 64));

alter table dora_raw.pull_requests
    drop constraint pull_requests_sha_hex,
    add constraint pull_requests_sha_hex check (
        (merge_commit_sha is null
         or (merge_commit_sha ~ '^[0-9a-f]+$' and length(merge_commit_sha) between 7 and 64))
        and (head_sha is null
         or (head_sha ~ '^[0-9a-f]+$' and length(head_sha) between 7 and 64)));
