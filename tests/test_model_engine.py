"""The SQL model engine: dependency discovery, clear errors, comments, atomic builds."""

from __future__ import annotations

from pathlib import Path

import psycopg
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
        with pytest.raises(psycopg.errors.UndefinedTable):
            publish(conn, marts, warehouse.settings.reader_role)
        conn.rollback()
        after = conn.execute("select entity_ref, deployments from dora_metrics.service_metrics order by 1, 2").fetchall()
        assert after == before
        assert conn.execute("select count(*) from dora_metrics.team_metrics").fetchone()[0] > 0
