/* One row per survey and group it reports on, with the counts and whether the group's
scores may be published (k = DORA_SURVEY_MIN_RESPONDENTS).
Scope: a survey reports on every group of the catalog tree(s) it received responses
from (the roots above the groups responses were submitted for, and all their
descendants), so a team nobody answered for shows 0 respondents instead of vanishing.
Disclosure, decided bottom-up (a group after all its descendants):
  - fewer than k respondents: suppressed (fewer_than_k);
  - else its residual (respondents not covered by a published descendant group) must be
    0 or >= k, otherwise subtracting the published descendants from it would reveal a
    group smaller than k: suppressed (complementary).
The published groups' residuals are the finest sets any difference of published rows
can isolate, so every derivable aggregate covers 0 or >= k respondents.
index: survey_id, group_ref */
with recursive
params as (
    select current_setting('dora.survey_min_respondents')::int as k
),
closure as (
    select t.ancestor_ref, t.group_ref, t.distance
    from dora_intermediate.int_group_descendants as t
    union all
    select distinct r.group_ref, r.group_ref, 0
    from dora_staging.stg_survey_responses as r
    where not exists (
        select 1 from dora_intermediate.int_group_descendants as t2
        where t2.group_ref = r.group_ref
    )
),
heights as (
    select c.ancestor_ref as group_ref, max(c.distance) as height
    from closure as c
    group by c.ancestor_ref
),
roots as (
    select c.group_ref, c.ancestor_ref as root_ref
    from closure as c
    where not exists (
        select 1 from closure as up
        where up.group_ref = c.ancestor_ref
          and up.distance > 0
    )
),
surveys as (
    select
        r.survey_id,
        min(r.submitted_at) as period_start,
        max(r.submitted_at) as period_end
    from dora_staging.stg_survey_responses as r
    group by r.survey_id
),
survey_roots as (
    select distinct sr.survey_id, ro.root_ref
    from (select distinct survey_id, group_ref from dora_staging.stg_survey_responses) as sr
    join roots as ro
      on ro.group_ref = sr.group_ref
),
scope as (
    select distinct sr.survey_id, c.group_ref
    from survey_roots as sr
    join closure as c
      on c.ancestor_ref = sr.root_ref
),
eligible as (
    select c.ancestor_ref as group_ref, count(distinct m.user_ref) as eligible_members
    from closure as c
    join dora_staging.stg_group_members as m
      on m.group_ref = c.group_ref
    group by c.ancestor_ref
),
respondents as (
    select gr.survey_id, gr.group_ref, count(*) as respondents
    from dora_intermediate.int_survey_group_responses as gr
    group by gr.survey_id, gr.group_ref
),
counts as (
    select
        s.survey_id,
        s.group_ref,
        h.height,
        coalesce(r.respondents, 0) as respondents,
        p.k
    from scope as s
    cross join params as p
    join heights as h
      on h.group_ref = s.group_ref
    left join respondents as r
      on r.survey_id = s.survey_id
     and r.group_ref = s.group_ref
),
-- One row per survey and tree height: the groups published so far. Each step decides
-- the groups one level higher, against the published groups below them.
decided (survey_id, height, published) as (
    select s.survey_id, -1, array[]::text[]
    from surveys as s
    union all
    select
        d.survey_id,
        d.height + 1,
        d.published || array(
            select c.group_ref
            from counts as c
            cross join lateral (
                -- respondents of c already inside a published descendant group
                select count(distinct gr.respondent) as covered
                from dora_intermediate.int_group_descendants as below
                join dora_intermediate.int_survey_group_responses as gr
                  on gr.survey_id = c.survey_id
                 and gr.group_ref = below.group_ref
                where below.ancestor_ref = c.group_ref
                  and below.distance > 0
                  and below.group_ref = any (d.published)
            ) as cov
            where c.survey_id = d.survey_id
              and c.height = d.height + 1
              and c.respondents >= c.k
              and c.respondents - cov.covered not between 1 and c.k - 1
        )
    from decided as d
    where d.height < (select max(c2.height) from counts as c2 where c2.survey_id = d.survey_id)
),
published as (
    select distinct on (d.survey_id) d.survey_id, d.published
    from decided as d
    order by d.survey_id, d.height desc
),
residuals as (
    select
        c.survey_id,
        c.group_ref,
        c.respondents - cov.covered as residual_respondents
    from counts as c
    join published as p
      on p.survey_id = c.survey_id
    cross join lateral (
        select count(distinct gr.respondent) as covered
        from dora_intermediate.int_group_descendants as below
        join dora_intermediate.int_survey_group_responses as gr
          on gr.survey_id = c.survey_id
         and gr.group_ref = below.group_ref
        where below.ancestor_ref = c.group_ref
          and below.distance > 0
          and below.group_ref = any (p.published)
    ) as cov
)
select
    c.survey_id,                                -- the survey
    c.group_ref,                                -- the group reported on
    g.parent_ref,                               -- its parent group; NULL at a root
    s.period_start,                             -- first valid submission of the survey (all groups)
    s.period_end,                               -- last valid submission of the survey (all groups)
    coalesce(e.eligible_members, 0) as eligible_members,  -- catalog users in the group or a descendant
    c.respondents,                              -- respondents counted for the group or a descendant
    r.residual_respondents,                     -- respondents not covered by a published descendant
    not (c.group_ref = any (p.published)) as suppressed,  -- true: scores must not be published
    case
        when c.respondents < c.k then 'fewer_than_k'
        when not (c.group_ref = any (p.published)) then 'complementary'
    end as suppression_reason                   -- fewer_than_k | complementary | NULL
from counts as c
join surveys as s
  on s.survey_id = c.survey_id
join published as p
  on p.survey_id = c.survey_id
join residuals as r
  on r.survey_id = c.survey_id
 and r.group_ref = c.group_ref
left join eligible as e
  on e.group_ref = c.group_ref
left join dora_staging.stg_catalog_groups as g
  on g.group_ref = c.group_ref
