/* One row per Component of the Backstage catalog, owner normalised to a full group ref.
index: entity_ref */
select
    c.entity_ref,                               -- component:namespace/name
    c.name,                                     -- the component's name
    c.owner_ref,                                -- owning group (full, lower-case ref)
    c.spec_type,                                -- service, website, library...
    c.lifecycle,                                -- production, experimental...
    c.annotations                               -- the catalog annotations, used to map events
from dora_raw.catalog_entities as c
where c.kind = 'component'
