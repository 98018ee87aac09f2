/* One row per way a source names a person (a user ref, a GitHub login) and the catalog
user it resolves to: the full ref itself, the github.com/user-login annotation, or the
user's name. A name or login that fits more than one user is left out. Never
published: it exists only to tell whether a reviewer belongs to the author's team.
grain: login */
with users as (
    select u.entity_ref as user_ref, u.name, u.annotations
    from dora_raw.catalog_entities as u
    where u.kind = 'user'
),
candidates as (
    select lower(u.user_ref) as login, u.user_ref, 1 as priority
    from users as u
    union all
    select lower(trim(u.annotations ->> 'github.com/user-login')), u.user_ref, 2
    from users as u
    where coalesce(trim(u.annotations ->> 'github.com/user-login'), '') <> ''
    union all
    select lower(u.name), u.user_ref, 3
    from users as u
),
best as (
    select c.login, min(c.priority) as priority
    from candidates as c
    group by c.login
)
select
    c.login,                                    -- lower-case login or user ref as a source writes it
    min(c.user_ref) as user_ref                 -- the catalog user (never published)
from candidates as c
join best as b
  on b.login = c.login
 and b.priority = c.priority
group by c.login
having count(distinct c.user_ref) = 1
