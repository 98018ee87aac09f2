/* Where lead time goes over rolling windows: one row per component or group and
window_days in (7, 30, 90), the window being [as_of - window_days, as_of), with the
median of each stage of the PRs that reached production in the window (a group pooled
over its components as in team_metrics). Stages and caveats as in
lead_time_breakdown_weekly; this is what the Backstage card shows.
grain: entity_ref, window_days */
select
    m.subject_ref as entity_ref,                -- component or group ref
    m.subject_kind as entity_kind,              -- component | group
    case
        when m.subject_kind = 'group' then m.subject_ref
        else c.owner_ref
    end as group_ref,                           -- the owning group (a group row: the group itself); NULL for fallback refs
    m.period_days as window_days,               -- 7, 30 or 90
    m.period_start as window_start,             -- inclusive
    m.period_end as window_end,                 -- exclusive (the as_of of the run)
    m.lead_time_changes - m.direct_changes as prs,  -- PRs that reached production in the window (direct changes have no PR stages)
    m.median_lead_time_hours,                   -- median first commit -> production, hours
    m.median_coding_hours,                      -- median first commit -> PR opened, hours
    m.median_review_wait_hours,                 -- median opened -> first review, hours
    m.median_review_hours,                      -- median first review -> merged, hours
    m.median_release_hours,                     -- median merged -> production, hours
    case
        when m.lead_time_changes = m.direct_changes then null
        when coalesce(m.median_coding_hours, -1) >= greatest(coalesce(m.median_review_wait_hours, -1), coalesce(m.median_review_hours, -1), coalesce(m.median_release_hours, -1)) then 'coding'
        when coalesce(m.median_review_wait_hours, -1) >= greatest(coalesce(m.median_review_hours, -1), coalesce(m.median_release_hours, -1)) then 'review_wait'
        when coalesce(m.median_review_hours, -1) >= coalesce(m.median_release_hours, -1) then 'review'
        else 'release'
    end as dominant_stage,                      -- the stage with the longest median; NULL without PRs
    now() as computed_at                        -- when this row was built
from dora_intermediate.int_subject_period_metrics as m
left join dora_intermediate.int_components as c
  on c.entity_ref = m.subject_ref
 and m.subject_kind = 'component'
where m.period_kind = 'window'
