/* One row per group and user that is a direct member of it (User spec.memberOf and
Group spec.members together, as Backstage's relations). */
select distinct
    m.group_ref,                                -- the group
    m.user_ref                                  -- a member (never published)
from dora_raw.group_memberships as m
