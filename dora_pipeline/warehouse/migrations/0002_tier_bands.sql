-- The DORA performance bands in force. The published `benchmarks` table and every
-- tier column are derived from this one table; an operator who adopts other bands
-- updates rows here and rebuilds.
-- Bands are intervals of the metric's value; *_inclusive says whether the bound
-- itself belongs to the band (DORA's "at least once a day" is [1, inf),
-- "less than one day" is [0, 24), "0-5 %" is [0, 5]).

create table dora_lib.tier_bands (
    metric            text    not null,   -- deploys_per_day | median_lead_time_hours | change_failure_rate_pct | median_time_to_restore_minutes
    tier              text    not null check (tier in ('elite', 'high', 'medium', 'low')),
    tier_rank         smallint not null,  -- 1 = elite .. 4 = low
    lower_bound       numeric,            -- NULL: unbounded
    lower_inclusive   boolean not null,
    upper_bound       numeric,            -- NULL: unbounded
    upper_inclusive   boolean not null,
    unit              text    not null,
    source            text    not null,
    primary key (metric, tier)
);

insert into dora_lib.tier_bands values
    ('deploys_per_day', 'elite',  1, 1,            true,  null,         false, 'deployments per day', 'DORA State of DevOps 2024'),
    ('deploys_per_day', 'high',   2, 1.0 / 7,      true,  1,            false, 'deployments per day', 'DORA State of DevOps 2024'),
    ('deploys_per_day', 'medium', 3, 1.0 / 30,     true,  1.0 / 7,      false, 'deployments per day', 'DORA State of DevOps 2024'),
    ('deploys_per_day', 'low',    4, 0,            true,  1.0 / 30,     false, 'deployments per day', 'DORA State of DevOps 2024'),
    ('median_lead_time_hours', 'elite',  1, 0,     true,  24,           false, 'hours', 'DORA State of DevOps 2024'),
    ('median_lead_time_hours', 'high',   2, 24,    true,  168,          false, 'hours', 'DORA State of DevOps 2024'),
    ('median_lead_time_hours', 'medium', 3, 168,   true,  720,          false, 'hours', 'DORA State of DevOps 2024'),
    ('median_lead_time_hours', 'low',    4, 720,   true,  null,         false, 'hours', 'DORA State of DevOps 2024'),
    ('change_failure_rate_pct', 'elite',  1, 0,    true,  5,            true,  'percent', 'DORA State of DevOps 2023'),
    ('change_failure_rate_pct', 'high',   2, 5,    false, 10,           true,  'percent', 'DORA State of DevOps 2023'),
    ('change_failure_rate_pct', 'medium', 3, 10,   false, 15,           true,  'percent', 'DORA State of DevOps 2023'),
    ('change_failure_rate_pct', 'low',    4, 15,   false, null,         false, 'percent', 'DORA State of DevOps 2023'),
    ('median_time_to_restore_minutes', 'elite',  1, 0,     true,  60,    false, 'minutes', 'DORA State of DevOps 2024'),
    ('median_time_to_restore_minutes', 'high',   2, 60,    true,  1440,  false, 'minutes', 'DORA State of DevOps 2024'),
    ('median_time_to_restore_minutes', 'medium', 3, 1440,  true,  10080, false, 'minutes', 'DORA State of DevOps 2024'),
    ('median_time_to_restore_minutes', 'low',    4, 10080, true,  null,  false, 'minutes', 'DORA State of DevOps 2024');
