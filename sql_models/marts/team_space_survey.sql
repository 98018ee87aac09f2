/* SPACE survey results per group and survey: one row per survey and group of the
catalog tree(s) the survey received responses from. A response counts for the group it
was submitted for and for that group's ancestors (a parent's numbers include its
teams'). Counts are always published; every score (means, distribution buckets, change
against the previous survey) is NULL when suppressed: fewer than k =
DORA_SURVEY_MIN_RESPONDENTS respondents, or a parent whose published descendants could
be subtracted from it to recover fewer than k respondents (see
docs/published-schema.md). Free text and respondent identities are never
published.
grain: group_ref, survey_id */
with scores as (
    select
        gr.survey_id,
        gr.group_ref,
        avg(gr.satisfaction) as satisfaction_mean,
        avg(gr.flow_state) as flow_state_mean,
        count(*) filter (where gr.satisfaction = 1) as satisfaction_1,
        count(*) filter (where gr.satisfaction = 2) as satisfaction_2,
        count(*) filter (where gr.satisfaction = 3) as satisfaction_3,
        count(*) filter (where gr.satisfaction = 4) as satisfaction_4,
        count(*) filter (where gr.satisfaction = 5) as satisfaction_5,
        count(*) filter (where gr.flow_state = 1) as flow_state_1,
        count(*) filter (where gr.flow_state = 2) as flow_state_2,
        count(*) filter (where gr.flow_state = 3) as flow_state_3,
        count(*) filter (where gr.flow_state = 4) as flow_state_4,
        count(*) filter (where gr.flow_state = 5) as flow_state_5
    from dora_intermediate.int_survey_group_responses as gr
    group by gr.survey_id, gr.group_ref
),
results as (
    select
        d.survey_id,
        d.group_ref,
        d.parent_ref,
        d.period_start,
        d.period_end,
        d.eligible_members,
        d.respondents,
        round(100.0 * d.respondents / nullif(d.eligible_members, 0), 1) as response_rate_pct,
        d.suppressed,
        d.suppression_reason,
        -- Scores only where disclosure allows; nothing below reads the raw ones.
        case when not d.suppressed then round(s.satisfaction_mean, 2) end as satisfaction_mean,
        case when not d.suppressed then round(s.flow_state_mean, 2) end as flow_state_mean,
        case when not d.suppressed then s.satisfaction_1 end as satisfaction_1,
        case when not d.suppressed then s.satisfaction_2 end as satisfaction_2,
        case when not d.suppressed then s.satisfaction_3 end as satisfaction_3,
        case when not d.suppressed then s.satisfaction_4 end as satisfaction_4,
        case when not d.suppressed then s.satisfaction_5 end as satisfaction_5,
        case when not d.suppressed then s.flow_state_1 end as flow_state_1,
        case when not d.suppressed then s.flow_state_2 end as flow_state_2,
        case when not d.suppressed then s.flow_state_3 end as flow_state_3,
        case when not d.suppressed then s.flow_state_4 end as flow_state_4,
        case when not d.suppressed then s.flow_state_5 end as flow_state_5
    from dora_intermediate.int_survey_group_disclosure as d
    left join scores as s
      on s.survey_id = d.survey_id
     and s.group_ref = d.group_ref
),
with_previous as (
    select
        r.*,
        lag(r.survey_id) over w as previous_survey_id,
        lag(r.response_rate_pct) over w as previous_response_rate_pct,
        lag(r.satisfaction_mean) over w as previous_satisfaction_mean,
        lag(r.flow_state_mean) over w as previous_flow_state_mean
    from results as r
    window w as (partition by r.group_ref order by r.period_start, r.survey_id)
)
select
    p.group_ref,                                -- group:namespace/name
    p.parent_ref,                               -- parent group; NULL at a root
    p.survey_id,                                -- the survey
    p.period_start,                             -- first valid submission of the survey (timestamptz, all groups)
    p.period_end,                               -- last valid submission of the survey (timestamptz, all groups)
    p.eligible_members,                         -- catalog users who are members of the group or a descendant group
    p.respondents,                              -- respondents (latest valid response each) counted for the group
    p.response_rate_pct,                        -- respondents / eligible_members, percent; NULL without members
    p.satisfaction_mean,                        -- mean satisfaction 1-5; NULL when suppressed
    p.flow_state_mean,                          -- mean flow state 1-5; NULL when suppressed
    p.suppressed,                               -- true: below k respondents, or would reveal a smaller group
    p.suppression_reason,                       -- fewer_than_k | complementary | NULL
    p.satisfaction_1,                           -- respondents answering satisfaction 1; NULL when suppressed
    p.satisfaction_2,                           -- ... answering 2
    p.satisfaction_3,                           -- ... answering 3
    p.satisfaction_4,                           -- ... answering 4
    p.satisfaction_5,                           -- ... answering 5
    p.flow_state_1,                             -- respondents answering flow state 1; NULL when suppressed
    p.flow_state_2,                             -- ... answering 2
    p.flow_state_3,                             -- ... answering 3
    p.flow_state_4,                             -- ... answering 4
    p.flow_state_5,                             -- ... answering 5
    p.previous_survey_id,                       -- the group's previous survey (by period_start); NULL for the first
    p.response_rate_pct - p.previous_response_rate_pct as response_rate_change_pts,  -- percentage points vs the previous survey
    p.satisfaction_mean - p.previous_satisfaction_mean as satisfaction_change,  -- vs the previous survey; NULL if either is suppressed
    p.flow_state_mean - p.previous_flow_state_mean as flow_state_change,  -- vs the previous survey; NULL if either is suppressed
    now() as computed_at                        -- when this row was built
from with_previous as p
