/* One row per respondent and survey: the latest valid response (invalid ones never
reached dora_raw; they are in dora_raw.quarantine). */
select distinct on (r.survey_id, r.respondent)
    r.survey_id,                                -- the survey
    r.respondent,                               -- keyed pseudonym, never published
    r.group_ref,                                -- the group the response was submitted for
    r.submitted_at,                             -- submission time
    r.satisfaction,                             -- 1-5
    r.flow_state                                -- 1-5
from dora_raw.survey_responses as r
order by r.survey_id, r.respondent, r.submitted_at desc, r.source
