/* One row per subject (component or group) and period (rolling window or ISO week):
every DORA measure, computed once for services and teams alike. Events are assigned
to a period by their own time: deployments by when they finished (with the failure
an incident later blames on them, its recovery and whether it was rework), changes by the deployment that shipped them,
incidents by when they opened. Tiers come from dora_lib.tier_bands and are decided on the exact values;
the published numbers are rounded (4 decimals for deploys_per_day, 2 elsewhere).
Weeks run from the subject's first event; windows exist for every subject.
Incremental: a run computes only the periods ending at or after dora.dirty_since (the
windows and the weeks that new data can change); the engine keeps the older weeks.
index: subject_ref
incremental: period_end */
with periods as (
    select * from dora_intermediate.int_periods
    where period_end >= current_setting('dora.dirty_since')::timestamptz
),
-- Events before the earliest period this build computes (the 90-day window's start, or
-- the first week of the slice) cannot count in it: every event branch starts there.
span as materialized (
    select
        min(p.period_start) as since,
        min(p.period_start) filter (where p.period_kind = 'week') as weeks_since  -- NULL: no week
    from periods as p
),
-- Changes per subject are computed here, in flight, rather than materialised in a
-- table of their own (four rows per PR: component, team, department, organisation),
-- and only as far as each period kind needs: the window branch filters first.
-- Direct changes (commits pushed to the default branch, DESIGN §7) join the PRs here:
-- they count in lead_time_changes and the median, and have no PR stages.
all_changes as not materialized (
    select
        p.pr_id,
        p.entity_ref,
        p.deployment_id,
        p.deployed_at,
        p.slice_at,
        p.change_started_at,
        -- double precision, as percentile_cont takes them anyway: 8 bytes by value in the
        -- sorts instead of numerics (the same cast, done before the rows are sorted).
        p.lead_time_hours::float8 as lead_time_hours,
        (extract(epoch from p.opened_at - p.change_started_at) / 3600.0)::float8 as coding_hours,
        (extract(epoch from p.first_review_at - p.opened_at) / 3600.0)::float8 as review_wait_hours,
        (extract(epoch from p.merged_at - coalesce(p.first_review_at, p.opened_at)) / 3600.0)::float8
            as review_hours,
        (extract(epoch from p.deployed_at - p.merged_at) / 3600.0)::float8 as release_hours,
        false as is_direct
    from dora_intermediate.int_pull_requests_deployed as p
    where p.deployment_id is not null
    union all
    select
        dc.change_id,
        dc.entity_ref,
        dc.deployment_id,
        dc.deployed_at,
        dc.deployed_at,
        dc.change_started_at,
        dc.lead_time_hours::float8,
        null::float8,
        null::float8,
        null::float8,
        null::float8,
        true
    from dora_intermediate.int_direct_changes_deployed as dc
    where dc.deployment_id is not null
),
-- The changes deployed in the span (slice_at >= deployed_at: the index on it finds them).
pr_changes as not materialized (
    select c.*
    from all_changes as c
    where c.deployed_at >= (select since from span)
      and c.slice_at >= (select since from span)
),
-- PRs of repositories that map to several components: the only ones a group can see
-- twice (it counts them once, shipped by the earliest of their deployments). A change's
-- rows are all deployed at or after it started: one that started in the span has all its
-- rows here; one that started before may have a row deployed before the span (probed).
shared_prs as materialized (
    select c.pr_id
    from pr_changes as c
    group by c.pr_id
    having count(*) > 1
    union
    select c.pr_id
    from pr_changes as c
    where c.change_started_at < (select since from span)
      and exists (select 1 from all_changes as o
                  where o.pr_id = c.pr_id and o.entity_ref <> c.entity_ref
                    and o.deployed_at < (select since from span))
),
-- Every row of those (a few), also before the span, by key (an index lookup per PR): a
-- group's row is its earliest.
shared_changes as materialized (
    select c.*
    from all_changes as c
    where c.pr_id = any(array(select s.pr_id from shared_prs as s))
),
subject_changes as not materialized (
    select
        'component' as subject_kind,
        c.entity_ref as subject_ref,
        c.deployed_at,
        c.lead_time_hours,
        c.coding_hours,
        c.review_wait_hours,
        c.review_hours,
        c.release_hours,
        c.is_direct
    from pr_changes as c
    union all
    select
        'group',
        gc.group_ref,
        c.deployed_at,
        c.lead_time_hours,
        c.coding_hours,
        c.review_wait_hours,
        c.review_hours,
        c.release_hours,
        c.is_direct
    from dora_intermediate.int_group_components as gc
    join pr_changes as c
      on c.entity_ref = gc.entity_ref
    where not exists (select 1 from shared_prs as s where s.pr_id = c.pr_id)
    union all
    select
        'group',
        pooled.group_ref,
        pooled.deployed_at,
        pooled.lead_time_hours,
        pooled.coding_hours,
        pooled.review_wait_hours,
        pooled.review_hours,
        pooled.release_hours,
        pooled.is_direct
    from (
        select distinct on (gc.group_ref, c.pr_id)
            gc.group_ref,
            c.deployed_at,
            c.lead_time_hours,
            c.coding_hours,
            c.review_wait_hours,
            c.review_hours,
            c.release_hours,
            c.is_direct
        from dora_intermediate.int_group_components as gc
        join shared_changes as c
          on c.entity_ref = gc.entity_ref
        order by gc.group_ref, c.pr_id, c.deployed_at, c.deployment_id
    ) as pooled
),
-- The three rolling windows on their own: an event is matched against 3 rows, not
-- against every week, and only events after the earliest window start are looked at.
windows as (
    select p.period_kind, p.period_days, p.period_start, p.period_end
    from dora_intermediate.int_periods as p
    where p.period_kind = 'window'
),
subjects as (
    select
        s.subject_kind,
        s.subject_ref,
        min(c.first_event_at) as first_event_at,
        bool_or(c.has_production_deployments) as has_production_deployments
    from dora_intermediate.int_subjects as s
    join dora_intermediate.int_components as c
      on c.entity_ref = s.entity_ref
    group by s.subject_kind, s.subject_ref
),
grid as (
    select s.subject_kind, s.subject_ref, s.has_production_deployments,
           p.period_kind, p.period_days, p.period_start, p.period_end
    from subjects as s
    join periods as p
      on p.period_kind = 'window'
      or (p.period_kind = 'week'
          and s.first_event_at is not null
          and p.period_end > s.first_event_at)
),
deploy_periods as (
    select
        d.subject_kind,
        d.subject_ref,
        (d.finished_at at time zone 'UTC')::date as deploy_day,
        d.caused_failure,
        d.shipped_change,
        d.is_rework,
        p.period_kind,
        p.period_days,
        p.period_start
    from dora_intermediate.int_subject_deployments as d
    join periods as p
      on p.period_kind = 'week'
     and p.period_start = date_trunc('week', d.finished_at at time zone 'UTC') at time zone 'UTC'
     and d.finished_at < p.period_end
    where d.finished_at >= (select weeks_since from span)
    union all
    select
        d.subject_kind,
        d.subject_ref,
        (d.finished_at at time zone 'UTC')::date,
        d.caused_failure,
        d.shipped_change,
        d.is_rework,
        w.period_kind,
        w.period_days,
        w.period_start
    from dora_intermediate.int_subject_deployments as d
    join windows as w
      on d.finished_at >= w.period_start
     and d.finished_at < w.period_end
    where d.finished_at >= (select min(period_start) from windows)
),
-- Per subject, period and UTC day first, then per period: deploy_days is then a plain
-- count, and both steps can hash instead of sorting every deployment by subject.
deploy_days as (
    select
        subject_kind, subject_ref, period_kind, period_days, period_start, deploy_day,
        count(*) as deployments,
        count(*) filter (where caused_failure) as failed_deployments,
        count(*) filter (where shipped_change) as deployments_with_changes,
        count(*) filter (where is_rework) as rework_deployments
    from deploy_periods
    group by subject_kind, subject_ref, period_kind, period_days, period_start, deploy_day
),
deploys as (
    select
        subject_kind, subject_ref, period_kind, period_days, period_start,
        sum(deployments)::bigint as deployments,
        count(*) as deploy_days,
        sum(failed_deployments)::bigint as failed_deployments,
        sum(deployments_with_changes)::bigint as deployments_with_changes,
        sum(rework_deployments)::bigint as rework_deployments
    from deploy_days
    group by subject_kind, subject_ref, period_kind, period_days, period_start
),
-- Failed deployments on their own (a small share of all), in the deployment's period
-- as for CFR: finished -> latest resolution of its blamed incidents, NULL until all
-- are resolved (counted as failed, left out of the median).
failure_periods as (
    select
        d.subject_kind, d.subject_ref,
        (extract(epoch from d.recovered_at - d.finished_at) / 60.0)::float8 as recovery_minutes,
        p.period_kind, p.period_days, p.period_start
    from dora_intermediate.int_subject_deployments as d
    join periods as p
      on p.period_kind = 'week'
     and p.period_start = date_trunc('week', d.finished_at at time zone 'UTC') at time zone 'UTC'
     and d.finished_at < p.period_end
    where d.finished_at >= (select weeks_since from span)
      and d.caused_failure
    union all
    select
        d.subject_kind, d.subject_ref,
        (extract(epoch from d.recovered_at - d.finished_at) / 60.0)::float8,
        w.period_kind, w.period_days, w.period_start
    from dora_intermediate.int_subject_deployments as d
    join windows as w
      on d.finished_at >= w.period_start
     and d.finished_at < w.period_end
    where d.caused_failure
      and d.finished_at >= (select min(period_start) from windows)
),
recoveries as (
    select
        subject_kind, subject_ref, period_kind, period_days, period_start,
        count(recovery_minutes) as recovered_deployments,
        percentile_cont(0.5) within group (order by recovery_minutes)
            filter (where recovery_minutes is not null) as median_recovery_minutes
    from failure_periods
    group by subject_kind, subject_ref, period_kind, period_days, period_start
),
change_periods as (
    select c.subject_kind, c.subject_ref, c.lead_time_hours, c.coding_hours, c.review_wait_hours, c.review_hours, c.release_hours, c.is_direct, p.period_kind, p.period_days, p.period_start
    from subject_changes as c
    join periods as p
      on p.period_kind = 'week'
     and p.period_start = date_trunc('week', c.deployed_at at time zone 'UTC') at time zone 'UTC'
     and c.deployed_at < p.period_end
    where c.deployed_at >= (select weeks_since from span)
    union all
    select c.subject_kind, c.subject_ref, c.lead_time_hours, c.coding_hours, c.review_wait_hours, c.review_hours, c.release_hours, c.is_direct, w.period_kind, w.period_days, w.period_start
    from subject_changes as c
    join windows as w
      on c.deployed_at >= w.period_start
     and c.deployed_at < w.period_end
    where c.deployed_at >= (select min(period_start) from windows)
),
changes as (
    select
        subject_kind, subject_ref, period_kind, period_days, period_start,
        count(*) as lead_time_changes,
        percentile_cont(0.5) within group (order by lead_time_hours) as median_lead_time_hours,
        percentile_cont(0.5) within group (order by coding_hours) as median_coding_hours,
        percentile_cont(0.5) within group (order by review_wait_hours) as median_review_wait_hours,
        percentile_cont(0.5) within group (order by review_hours) as median_review_hours,
        percentile_cont(0.5) within group (order by release_hours) as median_release_hours,
        count(*) filter (where is_direct) as direct_changes
    from change_periods
    group by subject_kind, subject_ref, period_kind, period_days, period_start
),
incident_periods as (
    select i.subject_kind, i.subject_ref, i.resolved_at, i.restore_minutes, p.period_kind, p.period_days, p.period_start
    from dora_intermediate.int_subject_incidents as i
    join periods as p
      on p.period_kind = 'week'
     and p.period_start = date_trunc('week', i.opened_at at time zone 'UTC') at time zone 'UTC'
     and i.opened_at < p.period_end
    where i.opened_at >= (select weeks_since from span)
    union all
    select i.subject_kind, i.subject_ref, i.resolved_at, i.restore_minutes, w.period_kind, w.period_days, w.period_start
    from dora_intermediate.int_subject_incidents as i
    join windows as w
      on i.opened_at >= w.period_start
     and i.opened_at < w.period_end
    where i.opened_at >= (select min(period_start) from windows)
),
incidents as (
    select
        subject_kind, subject_ref, period_kind, period_days, period_start,
        count(*) as incidents,
        count(*) filter (where resolved_at is null) as open_incidents,
        percentile_cont(0.5) within group (order by restore_minutes)
            filter (where restore_minutes is not null) as median_time_to_restore_minutes
    from incident_periods
    group by subject_kind, subject_ref, period_kind, period_days, period_start
),
attempt_periods as (
    select a.subject_kind, a.subject_ref, p.period_kind, p.period_days, p.period_start
    from dora_intermediate.int_subject_failed_attempts as a
    join periods as p
      on p.period_kind = 'week'
     and p.period_start = date_trunc('week', a.finished_at at time zone 'UTC') at time zone 'UTC'
     and a.finished_at < p.period_end
    where a.finished_at >= (select weeks_since from span)
    union all
    select a.subject_kind, a.subject_ref, w.period_kind, w.period_days, w.period_start
    from dora_intermediate.int_subject_failed_attempts as a
    join windows as w
      on a.finished_at >= w.period_start
     and a.finished_at < w.period_end
    where a.finished_at >= (select min(period_start) from windows)
),
attempts as (
    select subject_kind, subject_ref, period_kind, period_days, period_start,
           count(*) as failed_attempts
    from attempt_periods
    group by subject_kind, subject_ref, period_kind, period_days, period_start
),
measures as (
    select
        g.subject_kind,
        g.subject_ref,
        g.period_kind,
        g.period_days,
        g.period_start,
        g.period_end,
        g.has_production_deployments,
        coalesce(d.deployments, 0) as deployments,
        coalesce(d.deploy_days, 0) as deploy_days,
        coalesce(d.deployments, 0)::numeric / g.period_days as deploys_per_day,
        ch.median_lead_time_hours::numeric as median_lead_time_hours,
        coalesce(ch.lead_time_changes, 0) as lead_time_changes,
        100.0 * d.deployments_with_changes / nullif(d.deployments, 0) as lead_time_coverage_pct,
        100.0 * d.failed_deployments / nullif(d.deployments, 0) as change_failure_rate_pct,
        coalesce(d.failed_deployments, 0) as failed_deployments,
        i.median_time_to_restore_minutes::numeric as median_time_to_restore_minutes,
        coalesce(i.incidents, 0) as incidents,
        coalesce(i.open_incidents, 0) as open_incidents,
        coalesce(a.failed_attempts, 0) as failed_attempts,
        ch.median_coding_hours::numeric as median_coding_hours,
        ch.median_review_wait_hours::numeric as median_review_wait_hours,
        ch.median_review_hours::numeric as median_review_hours,
        ch.median_release_hours::numeric as median_release_hours,
        r.median_recovery_minutes::numeric as median_failed_deployment_recovery_minutes,
        coalesce(r.recovered_deployments, 0) as recovered_deployments,
        coalesce(d.rework_deployments, 0) as rework_deployments,
        100.0 * d.rework_deployments / nullif(d.deployments, 0) as rework_rate_pct,
        coalesce(ch.direct_changes, 0) as direct_changes
    from grid as g
    left join deploys as d using (subject_kind, subject_ref, period_kind, period_days, period_start)
    left join changes as ch using (subject_kind, subject_ref, period_kind, period_days, period_start)
    left join incidents as i using (subject_kind, subject_ref, period_kind, period_days, period_start)
    left join attempts as a using (subject_kind, subject_ref, period_kind, period_days, period_start)
    left join recoveries as r using (subject_kind, subject_ref, period_kind, period_days, period_start)
),
tiers as (
    select
        m.subject_kind, m.subject_ref, m.period_kind, m.period_days, m.period_start,
        max(b.tier) filter (where v.metric = 'deploys_per_day') as deployment_frequency_tier,
        max(b.tier) filter (where v.metric = 'median_lead_time_hours') as lead_time_tier,
        max(b.tier) filter (where v.metric = 'change_failure_rate_pct') as change_failure_tier,
        max(b.tier) filter (where v.metric = 'median_time_to_restore_minutes') as time_to_restore_tier,
        max(b.tier) filter (where v.metric = 'median_failed_deployment_recovery_minutes')
            as failed_deployment_recovery_tier
    from measures as m
    cross join lateral (
        values
            ('deploys_per_day', case when m.has_production_deployments then m.deploys_per_day end),
            ('median_lead_time_hours', m.median_lead_time_hours),
            ('change_failure_rate_pct', m.change_failure_rate_pct),
            ('median_time_to_restore_minutes', m.median_time_to_restore_minutes),
            ('median_failed_deployment_recovery_minutes', m.median_failed_deployment_recovery_minutes)
    ) as v(metric, value)
    join dora_lib.tier_bands as b
      on b.metric = v.metric
     and (b.lower_bound is null or v.value > b.lower_bound or (b.lower_inclusive and v.value = b.lower_bound))
     and (b.upper_bound is null or v.value < b.upper_bound or (b.upper_inclusive and v.value = b.upper_bound))
    group by m.subject_kind, m.subject_ref, m.period_kind, m.period_days, m.period_start
)
select
    m.subject_kind,                             -- component | group
    m.subject_ref,                              -- component or group ref
    m.period_kind,                              -- window | week
    m.period_days,                              -- window length in days (7 for weeks)
    m.period_start,                             -- inclusive
    m.period_end,                               -- exclusive
    m.deployments,
    m.deploy_days,
    round(m.deploys_per_day, 4) as deploys_per_day,  -- deployments / period_days
    t.deployment_frequency_tier,
    round(m.median_lead_time_hours, 2) as median_lead_time_hours,
    m.lead_time_changes,
    round(m.lead_time_coverage_pct, 2) as lead_time_coverage_pct,
    t.lead_time_tier,
    round(m.change_failure_rate_pct, 2) as change_failure_rate_pct,
    m.failed_deployments,
    t.change_failure_tier,
    round(m.median_time_to_restore_minutes, 2) as median_time_to_restore_minutes,
    m.incidents,
    m.open_incidents,
    t.time_to_restore_tier,
    m.failed_attempts,
    round(m.median_coding_hours, 2) as median_coding_hours,
    round(m.median_review_wait_hours, 2) as median_review_wait_hours,
    round(m.median_review_hours, 2) as median_review_hours,
    round(m.median_release_hours, 2) as median_release_hours,
    round(m.median_failed_deployment_recovery_minutes, 2) as median_failed_deployment_recovery_minutes,
    m.recovered_deployments,
    t.failed_deployment_recovery_tier,
    m.rework_deployments,
    round(m.rework_rate_pct, 2) as rework_rate_pct,
    m.direct_changes                            -- of lead_time_changes, commits pushed without a PR
from measures as m
left join tiers as t using (subject_kind, subject_ref, period_kind, period_days, period_start)
