/* One row per reporting period: the rolling windows [as_of - N days, as_of) for N in
7, 30, 90, and every ISO week (Monday, UTC) from the first event to the week holding
as_of. as_of comes from the run (dora.as_of). */
with as_of as (
    select current_setting('dora.as_of')::timestamptz as as_of
),
first_event as (
    select min(first_event_at) as first_event_at
    from dora_intermediate.int_components
)
select
    'window' as period_kind,                    -- window | week
    w.window_days as period_days,               -- 7, 30 or 90 (7 for weeks)
    a.as_of - make_interval(days => w.window_days) as period_start,  -- inclusive
    a.as_of as period_end                       -- exclusive
from as_of as a
cross join (values (7), (30), (90)) as w(window_days)
union all
select
    'week',
    7,
    (wk.week_start at time zone 'UTC'),
    least((wk.week_start + interval '7 days') at time zone 'UTC', a.as_of)
from as_of as a
cross join first_event as f
cross join lateral generate_series(
    date_trunc('week', f.first_event_at at time zone 'UTC'),
    date_trunc('week', (a.as_of - interval '1 microsecond') at time zone 'UTC'),
    interval '7 days'
) as wk(week_start)
where f.first_event_at is not null
  and f.first_event_at < a.as_of
