"""The SQL model engine: dependency discovery, clear errors, comments, atomic builds."""

from __future__ import annotations

from pathlib import Path

import pytest

from dora_pipeline.models import (
    ModelError,
    build_graph,
    build_model,
    load_models,
    parse_model,
    publish,
)


def model(text: str, name: str = "m", layer: str = "intermediate"):
    return parse_model(Path(f"sql_models/{layer}/{name}.sql"), layer, text)


def test_dependencies_exclude_ctes_and_include_subqueries_joins_and_laterals():
    m = model(
        """
        /* A model. */
        with recursive tree (a, b) as (
            select g.group_ref, g.group_ref from dora_staging.stg_catalog_groups as g
            union
            select t.a, g.group_ref from tree as t join dora_staging.stg_catalog_groups as g on g.parent_ref = t.b
        ),
        recent as (select * from dora_raw.deployments)
        select t.a, r.external_id, x.n
        from tree as t
        join recent as r on r.service_key = t.a
        left join lateral (
            select count(*) as n from dora_intermediate.int_production_deployments as p where p.entity_ref = t.a
        ) as x on true
        cross join generate_series(1, 2) as g(i)
        where exists (select 1 from dora_raw.incidents as i where i.external_id = r.external_id)
          and t.a in (select group_ref from dora_staging.stg_group_members)
        """
    )
    assert m.depends_on == {
        "dora_staging.stg_catalog_groups",
        "dora_raw.deployments",
        "dora_intermediate.int_production_deployments",
        "dora_raw.incidents",
        "dora_staging.stg_group_members",
    }


def test_description_column_comments_and_indexes_are_read():
    m = model(
        """/* One row per thing.
        index: a, b
        index: c */
        select
            1 as a,  -- the a
            2 as b,
            3 as c   -- the c
        """
    )
    assert m.description == "One row per thing."
    assert m.indexes == (("a", "b"), ("c",))
    assert m.column_comments == {"a": "the a", "c": "the c"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("select from where", "intermediate/bad.sql: does not parse"),
        ("select 1; select 2", "must hold exactly one SELECT, found 2"),
        ("delete from dora_raw.deployments", "must be a SELECT, found DELETE"),
        ("select * from deployments", "table 'deployments' must be referenced as schema.table"),
    ],
)
def test_bad_models_fail_with_file_and_reason(text, message):
    with pytest.raises(ModelError, match=message.replace("(", r"\(").replace(")", r"\)")):
        model(text, name="bad")


def test_unknown_table_and_cycle_name_the_file():
    with pytest.raises(ModelError, match=r"intermediate/a.sql: references unknown table dora_raw.nope"):
        build_graph([model("select * from dora_raw.nope", "a")])
    with pytest.raises(ModelError, match=r"a.sql: dependency cycle .*int_a -> dora_intermediate.int_b -> dora_intermediate.int_a"):
        build_graph([
            model("select * from dora_intermediate.int_b", "int_a"),
            model("select * from dora_intermediate.int_a", "int_b"),
        ])
    with pytest.raises(ModelError, match="marts read other marts as dora_marts.x"):
        build_graph([model("select * from dora_metrics.x", "y", layer="marts")])


def test_project_models_load_in_dependency_order():
    graph = load_models()
    position = {q: i for i, q in enumerate(graph.order)}
    for m in graph.ordered():
        for up in graph.upstream_models(m):
            assert position[up.qualified] < position[m.qualified]
    assert {m.name for m in graph.marts} >= {
        "service_metrics", "service_metrics_weekly", "team_metrics", "team_metrics_weekly", "benchmarks",
        "data_quality",
    }


def test_build_writes_comments_and_failed_build_keeps_previous_table(conn, settings):
    good = model("/* Grain: one row.\nindex: a */\nselect 1 as a -- the a\n", "int_demo")
    assert build_model(conn, good, {}) == 1
    assert conn.execute("select obj_description('dora_intermediate.int_demo'::regclass)").fetchone() == ("Grain: one row.",)
    assert conn.execute(
        "select col_description('dora_intermediate.int_demo'::regclass, 1)"
    ).fetchone() == ("the a",)
    broken = model("select 1 / 0 as a", "int_demo")
    with pytest.raises(ModelError, match="intermediate/int_demo.sql: failed to build: division by zero"):
        build_model(conn, broken, {})
    assert conn.execute("select a from dora_intermediate.int_demo").fetchall() == [(1,)]


def test_publish_is_atomic_and_a_failed_publish_leaves_old_tables(warehouse):
    from builders import at, build, component, deploy, group, load

    load(warehouse, [group("t"), component("api", "t"), deploy("api", at(3))])
    build(warehouse)
    with warehouse.connection() as conn:
        before = conn.execute("select entity_ref, deployments from dora_metrics.service_metrics order by 1, 2").fetchall()
        graph = load_models()
        marts = graph.marts
        # Simulate a mart vanishing mid-publish: the whole publish must roll back.
        conn.execute("drop table dora_marts.team_metrics")
        conn.commit()
        with pytest.raises(ModelError, match=r"publish: dora_marts.team_metrics not built"):
            publish(conn, marts, warehouse.settings.reader_role)
        conn.rollback()
        after = conn.execute("select entity_ref, deployments from dora_metrics.service_metrics order by 1, 2").fetchall()
        assert after == before
        assert conn.execute("select count(*) from dora_metrics.team_metrics").fetchone()[0] > 0


def test_grain_is_declared_in_the_header_and_must_name_columns():
    m = model("/* One row per a and b.\ngrain: a, b */\nselect 1 as a, 2 as b, 3 as c", "int_g")
    assert m.grain == ("a", "b")
    assert m.description == "One row per a and b."
    with pytest.raises(ModelError, match=r"intermediate/int_g.sql: grain names x, not a column of the model"):
        model("/* grain: a, x */\nselect 1 as a", "int_g")
    with pytest.raises(ModelError, match="int_g.sql: declares its grain 2 times"):
        model("/* grain: a\ngrain: a */\nselect 1 as a", "int_g")


def test_a_broken_grain_fails_the_build_names_the_file_and_keeps_the_previous_table(conn):
    good = model("/* grain: k */\nselect k from (values (1), (2)) as v(k)", "int_grain")
    assert build_model(conn, good, {}) == 2
    broken = model("/* grain: k */\nselect k from (values (1), (2), (2), (3), (3)) as v(k)", "int_grain")
    with pytest.raises(ModelError, match=r"intermediate/int_grain.sql: grain \(k\) violated: 2 key\(s\) on more than one row, e\.g\. \(2\); \(3\)"):
        build_model(conn, broken, {})
    conn.rollback()
    assert conn.execute("select k from dora_intermediate.int_grain order by k").fetchall() == [(1,), (2,)]


def test_a_failed_grain_audit_publishes_nothing(warehouse):
    """A mart whose grain breaks stops build_all before publish: readers keep the old rows."""
    from dora_pipeline.models import build_all, build_graph, model_parameters
    from dora_pipeline.pipeline import build_and_publish

    from builders import at, build, component, deploy, group, load

    load(warehouse, [group("t"), component("api", "t"), deploy("api", at(3))])
    build(warehouse)
    graph = load_models()
    doubled = [
        parse_model(m.path, m.layer, m.sql.replace("from dora_lib.tier_bands as b", "from dora_lib.tier_bands as b cross join (values (1), (2)) as twice(n)"))
        if m.name == "benchmarks" else m
        for m in graph.ordered()
    ]
    broken = build_graph(doubled)
    with warehouse.connection() as conn:
        before = conn.execute("select count(*) from dora_metrics.benchmarks").fetchone()[0]
        with pytest.raises(ModelError, match=r"marts/benchmarks.sql: grain \(metric, tier\) violated"):
            build_all(conn, broken, model_parameters(warehouse.settings, at(10)))
        conn.rollback()
    with pytest.raises(ModelError, match="benchmarks.sql: grain"):
        build_and_publish(warehouse, at(10), graph=broken)
    with warehouse.connection() as conn:
        assert conn.execute("select count(*) from dora_metrics.benchmarks").fetchone()[0] == before


def test_models_build_on_two_connections_and_a_failure_starts_no_dependent(warehouse):
    """DORA_MODEL_THREADS: build_all runs models on connections of its own besides the
    caller's; a model that fails stops every model that reads it (directly or not), the
    error names its file, and nothing is published."""
    import threading

    from dora_pipeline.models import build_all, build_graph, model_parameters
    from dora_pipeline.pipeline import build_and_publish

    from builders import at, component, deploy, group, load

    load(warehouse, [group("t"), component("api", "t"), deploy("api", at(3))])
    graph = load_models()
    params = model_parameters(warehouse.settings, at(10))
    built_by: dict[str, str] = {}

    def on_model(model, rows, seconds):
        built_by[model.qualified] = threading.current_thread().name

    with warehouse.connection() as conn:
        build_all(conn, graph, params, on_model=on_model, connect=warehouse.connection, threads=2)
    assert set(built_by) == {m.qualified for m in graph.ordered()}
    assert set(built_by.values()) == {threading.main_thread().name, "dora-model-1"}
    published = build_and_publish(warehouse, at(10))[1]

    def state() -> dict[str, object]:
        with warehouse.connection() as conn:
            return dict(conn.execute("select model, built_at from dora_lib.model_state").fetchall())

    broken = build_graph(
        [parse_model(m.path, m.layer, "/* Broken. */ select d.* from dora_raw.deployments as d where 1 / 0 = 1")
         if m.name == "stg_deployments" else m
         for m in graph.ordered()]
    )
    readers = {q for q, m in broken.models.items() if "dora_staging.stg_deployments" in m.depends_on}
    while True:  # everything downstream of stg_deployments
        more = {q for q, m in broken.models.items() if m.depends_on & readers} - readers
        if not more:
            break
        readers |= more
    before = state()
    with pytest.raises(ModelError, match=r"staging/stg_deployments.sql: failed to build: division by zero"):
        build_and_publish(warehouse, at(11), graph=broken)
    after = state()
    assert readers and all(after[q] == before[q] for q in readers), "a model read a failed input"
    assert after["dora_staging.stg_deployments"] == before["dora_staging.stg_deployments"]
    with warehouse.connection() as conn:
        window_ends = conn.execute("select distinct window_end from dora_metrics.service_metrics").fetchall()
    assert published and window_ends == [(at(10),)], "the failed build published"


def test_loads_leave_statistics_to_the_build_which_analyzes_what_grew(warehouse):
    """The loader runs no ANALYZE (a backfill would pay one per partition); the build
    analyzes a raw table it reads that was never analyzed or doubled since, once."""
    from datetime import date

    from dora_pipeline.warehouse import analyze_grown

    from builders import at, build, component, deploy, group, load

    def deploy_stats() -> tuple[float, int]:
        with warehouse.connection() as conn:
            return conn.execute(
                "select reltuples, relpages from pg_class where oid = 'dora_raw.deployments'::regclass"
            ).fetchone()

    load(warehouse, [group("t"), component("api", "t"), deploy("api", at(3))])
    assert deploy_stats()[0] < 0, "the load analyzed"
    build(warehouse)
    assert deploy_stats() == (1, 1)
    # A small partition: no new statistics; a large one (far more than doubled): new ones.
    load(warehouse, [deploy("api", at(4))], day=date(2025, 3, 2))
    with warehouse.connection() as conn:
        assert analyze_grown(conn, ["dora_raw.deployments", "dora_raw.incidents"]) == []
    load(warehouse, [deploy("api", at(5, h / 100)) for h in range(2000)], day=date(2025, 3, 3))
    build(warehouse)
    tuples, pages = deploy_stats()
    assert tuples == 2002 and pages > 10
    with warehouse.connection() as conn:
        assert analyze_grown(conn, ["dora_raw.deployments"]) == []


def test_in_dagster_the_grain_is_an_asset_check_and_the_sql_hash_the_code_version(warehouse):
    """The model asset carries the SQL's hash as code_version and its grain as a check: a
    build that passes records a passed check; one that breaks the grain records a failed
    check, fails the run and keeps the previous table."""
    import dagster

    from dora_pipeline.defs.assets import AS_OF_TAG, GRAIN_CHECK, build_assets, model_key
    from dora_pipeline.defs.resources import WarehouseResource

    def assets_for(text: str):
        m = model(text, "int_grain_dagster")
        return m, [a for a in build_assets(warehouse.settings, build_graph([m])) if model_key(m) in a.keys]

    good, assets = assets_for("/* grain: k */\nselect k from (values (1), (2)) as v(k)")
    assert assets[0].code_versions_by_key[model_key(good)] == good.code_version
    resource = WarehouseResource(database_url=warehouse.settings.database_url.get(), home=str(warehouse.settings.home))
    instance = dagster.DagsterInstance.ephemeral()
    tags = {AS_OF_TAG: "2026-03-01"}
    ran = dagster.materialize(assets, resources={"warehouse": resource}, instance=instance, tags=tags)
    [passed] = ran.get_asset_check_evaluations()
    assert (passed.check_name, passed.passed, passed.metadata["duplicate_keys"].value) == (GRAIN_CHECK, True, 0)

    broken, assets = assets_for("/* grain: k */\nselect k from (values (1), (2), (2)) as v(k)")
    assert broken.code_version != good.code_version
    failed_run = dagster.materialize(
        assets, resources={"warehouse": resource}, instance=instance, tags=tags, raise_on_error=False
    )
    assert not failed_run.success
    [failed] = failed_run.get_asset_check_evaluations()
    assert (failed.passed, failed.metadata["duplicate_keys"].value) == (False, 1)
    assert "(2)" in failed.metadata["examples"].value
    with warehouse.connection() as conn:
        assert conn.execute("select k from dora_intermediate.int_grain_dagster order by k").fetchall() == [(1,), (2,)]


def test_every_mart_declares_its_grain_and_every_project_model_holds_it():
    graph = load_models()
    assert [m.name for m in graph.marts if not m.grain] == []


def test_undeclared_parameter_fails_at_parse_time_with_the_file():
    ok = model("select current_setting('dora.as_of')::timestamptz as t", "int_p")
    assert ok.parameters == {"dora.as_of"}
    with pytest.raises(ModelError, match=r"intermediate/int_p.sql: reads undeclared parameter\(s\) dora.as_off"):
        model("select current_setting('dora.as_off')::timestamptz as t", "int_p")
    with pytest.raises(ModelError, match="int_p.sql: current_setting\\(\\) must name its setting as a string literal"):
        model("select current_setting('dora.' || 'as_of') as t", "int_p")


def test_project_models_read_only_declared_parameters_and_every_declared_one_is_read():
    from dora_pipeline.models import DIRTY_SINCE, MODEL_PARAMETERS

    read = set().union(*(m.parameters for m in load_models().ordered()))
    assert read == set(MODEL_PARAMETERS) | {DIRTY_SINCE}


def test_code_version_is_the_hash_of_the_sql():
    a = model("select 1 as a", "int_v")
    assert a.code_version == model("select 1 as a", "int_v").code_version
    assert a.code_version != model("select 2 as a", "int_v").code_version


def test_build_tables_are_unlogged_and_published_tables_are_logged(warehouse):
    """Tables rebuilt from raw need no WAL (an incremental one a crash emptied is rebuilt
    in full); the published ones are what readers rely on: logged."""
    from builders import at, build, component, deploy, group, load

    load(warehouse, [group("t"), component("api", "t"), deploy("api", at(3))])
    build(warehouse)
    with warehouse.connection() as conn:
        persistence = dict(
            conn.execute(
                """
                select n.nspname || '.' || c.relname, c.relpersistence::text
                from pg_class as c join pg_namespace as n on n.oid = c.relnamespace
                where c.relkind = 'r' and n.nspname in ('dora_staging', 'dora_intermediate', 'dora_marts', 'dora_metrics')
                """
            ).fetchall()
        )
    models = load_models().ordered()
    assert {m.qualified: persistence[m.qualified] for m in models} == {m.qualified: "u" for m in models}
    assert {v for k, v in persistence.items() if k.startswith("dora_metrics.")} == {"p"}


def _doc_sections(text: str) -> dict[str, str]:
    """docs/published-schema.md split by its table headings (## or ### `name`)."""
    import re

    parts = re.split(r"^#{2,3} `(\w+)`\s*$", text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def _documented(body: str, sections: dict[str, str], seen: frozenset[str] = frozenset()) -> set[str]:
    """Column names a doc section names: in backticks, as the first cell of a table row
    (``| a, b | type | ...``), or through "the measures of `other_table`"."""
    import re

    names = set(re.findall(r"`(\w+)`", body))
    for cell in re.findall(r"^\|\s*([\w ,]+?)\s*\|", body, flags=re.M):
        names.update(c.strip() for c in cell.split(","))
    for stem, first, last in re.findall(r"(\w+)_(\d+) … \1_(\d+)", body):  # x_1 … x_5
        names.update(f"{stem}_{i}" for i in range(int(first), int(last) + 1))
    for other in re.findall(r"measures of\s+`(\w+)`", body):
        if other in sections and other not in seen:
            names |= _documented(sections[other], sections, seen | {other})
    return names


def test_published_schema_doc_documents_every_published_table_and_column():
    """docs/published-schema.md cannot drift from the marts: every published table has a
    section, and every column the mart's SELECT names is documented there."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "published-schema.md").read_text(encoding="utf-8")
    sections = _doc_sections(doc)
    marts = load_models().marts
    assert [m.name for m in marts if m.name not in sections] == []
    undocumented = {}
    for mart in marts:
        assert mart.columns, f"{mart.name}: the published SELECT must name its columns"
        absent = [c for c in mart.columns if c not in _documented(sections[mart.name], sections)]
        if absent:
            undocumented[mart.name] = absent
    assert undocumented == {}
