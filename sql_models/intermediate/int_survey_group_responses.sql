/* One row per survey, group and respondent counted for it: a response (the latest
valid one per respondent and survey) counts for the group it was submitted for and
for every ancestor of that group. A group the catalog does not know counts its own
responses only. Pseudonyms stay in this private schema; nothing here is published.
index: survey_id, group_ref */
select
    r.survey_id,                                -- the survey
    coalesce(t.ancestor_ref, r.group_ref) as group_ref,  -- a group the response counts for
    r.group_ref as submitted_group_ref,         -- the group it was submitted for
    r.respondent,                               -- keyed pseudonym, never published
    r.submitted_at,                             -- submission time
    r.satisfaction,                             -- 1-5
    r.flow_state                                -- 1-5
from dora_staging.stg_survey_responses as r
left join dora_intermediate.int_group_descendants as t
  on t.group_ref = r.group_ref
