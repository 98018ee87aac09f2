/* Where lead time goes, per ISO week (Monday, UTC): the median of each stage of the PRs
that reached production in the week, per component and per group (pooled over its
components as in team_metrics). One row per entity and week from its first event to the
week holding as_of. Stages: coding = first commit -> PR opened, review_wait = opened ->
first review (reviewed PRs), review = first review (or opened, when unreviewed) ->
merged, release = merged -> production deploy. Medians of stages do not add up to the
median lead time.
grain: entity_ref, week_start 
incremental: week_start */
select
    m.subject_ref as entity_ref,                -- component or group ref
    m.subject_kind as entity_kind,              -- component | group
    case
        when m.subject_kind = 'group' then m.subject_ref
        else c.owner_ref
    end as group_ref,                           -- the owning group (a group row: the group itself); NULL for fallback refs
    (m.period_start at time zone 'UTC')::date as week_start,  -- ISO Monday, UTC
    m.lead_time_changes - m.direct_changes as prs,  -- PRs that reached production in the week (direct changes have no PR stages)
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
where m.period_kind = 'week'
  and m.period_start >= current_setting('dora.dirty_since')::timestamptz
