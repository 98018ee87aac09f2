"""The catalog guard of DESIGN §8 (issue 13, finding 9), against the Backstage fake.

A Backstage that restarts serves its in-memory catalog while it is still loading: a few
entities first, then more. Such a snapshot must not replace the stored one. Orphaned
entities own nothing, a component owned by a User counts for the user's groups, and
data_quality says what could not be attributed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date

import pytest

from dora_pipeline.pipeline import build_and_publish, extract_partition
from dora_pipeline.sources import SourceError
from dora_pipeline.sources.backstage import BackstageSource, shrink_refusal
from dora_pipeline.warehouse import Warehouse

from builders import AS_OF
from conftest import settings_with
from fakes.backstage_fake import FakeBackstage, component, group, user

DAY = date(2025, 3, 3)
ORPHAN = {"backstage.io/orphan": "true"}


def full_catalog(components: int = 40, groups: int = 8) -> list[dict]:
    entities = [group(f"team-{g}") for g in range(groups)]
    entities += [component(f"svc-{c}", f"team-{c % groups}") for c in range(components)]
    return entities + [user("jane", member_of=["team-0"])]


def _source() -> BackstageSource:
    return BackstageSource(
        page_size=100, backoff_base=0.001, max_retries=1, timeout=5.0, sleep=lambda s: None
    )


def _warehouse(settings, httpserver, **env) -> Warehouse:
    return Warehouse(
        settings_with(settings, BACKSTAGE_URL=httpserver.url_for("/").rstrip("/"), **env)
    )


def _stored(warehouse) -> dict[str, int]:
    with warehouse.connection() as conn:
        return dict(
            conn.execute(
                "select kind, count(*) from dora_raw.catalog_entities group by kind"
            ).fetchall()
        )


def _whole_catalog_stored(settings, httpserver) -> tuple[FakeBackstage, Warehouse]:
    """The fake serving the whole catalog, and a warehouse that stored it."""
    fake = FakeBackstage(None, full_catalog())
    fake.install(httpserver)
    warehouse = _warehouse(settings, httpserver)
    warehouse.migrate()
    extract_partition(warehouse, _source(), DAY)
    return fake, warehouse


def test_a_restarting_catalog_is_refused_until_it_is_whole_again(settings, httpserver):
    fake, warehouse = _whole_catalog_stored(settings, httpserver)
    whole = _stored(warehouse)
    assert whole == {"component": 40, "group": 8, "user": 1}
    # What issue 13 saw: 7, 87, 168... entities land while the backend loads.
    for components, groups in ((2, 1), (20, 8), (40, 3), (31, 8)):
        fake.entities = full_catalog(components, groups)
        with pytest.raises(SourceError) as excinfo:
            extract_partition(warehouse, _source(), DAY)
        message = str(excinfo.value)
        assert "--accept-catalog-shrink" in message and "dora/accept_catalog_shrink" in message
        assert "DORA_CATALOG_MAX_SHRINK_PCT is 20" in message
        assert _stored(warehouse) == whole
    fake.entities = full_catalog(33, 8)  # 17.5 % fewer components: within the limit
    extract_partition(warehouse, _source(), DAY)
    assert _stored(warehouse)["component"] == 33


def test_an_empty_catalog_is_refused(settings, httpserver):
    fake, warehouse = _whole_catalog_stored(settings, httpserver)
    fake.entities = [user("jane")]
    with pytest.raises(SourceError, match="no Components or Groups.*--accept-catalog-shrink"):
        extract_partition(warehouse, _source(), DAY)
    assert _stored(warehouse)["component"] == 40


def test_a_real_shrink_is_accepted_when_the_run_says_so(settings, httpserver):
    fake, warehouse = _whole_catalog_stored(settings, httpserver)
    fake.entities = full_catalog(10, 2)
    accepting = _warehouse(settings, httpserver, DORA_CATALOG_MAX_SHRINK_PCT="50")
    with pytest.raises(SourceError, match="75% fewer"):
        extract_partition(accepting, _source(), DAY)
    from dataclasses import replace

    accepting = Warehouse(replace(accepting.settings, accept_catalog_shrink=True))
    extract_partition(accepting, _source(), DAY)
    assert _stored(warehouse) == {"component": 10, "group": 2, "user": 1}


def test_shrink_refusal_rule():
    assert shrink_refusal({}, {"component": 1, "group": 0}, 20) is None  # first snapshot
    assert shrink_refusal({"component": 10, "group": 2}, {"component": 8, "group": 2}, 20) is None
    assert "component" in shrink_refusal(
        {"component": 10, "group": 2}, {"component": 7, "group": 2}, 20
    )
    assert "group" in shrink_refusal(
        {"component": 10, "group": 5}, {"component": 10, "group": 3}, 20
    )
    assert shrink_refusal({"component": 10}, {"component": 0, "group": 0}, 100) is not None


@pytest.mark.slow  # two real `dora-pipeline run` processes, one of them builds every model
def test_the_cli_exits_4_with_the_way_out_and_accepts_with_the_flag(settings, httpserver, tmp_path):
    fake, warehouse = _whole_catalog_stored(settings, httpserver)
    fake.entities = full_catalog(4, 1)
    env = {
        **os.environ,
        "DORA_DATABASE_URL": settings.database_url.get(),
        "DORA_HOME": str(tmp_path),
        "DORA_READER_ROLE": settings.reader_role,
        "BACKSTAGE_URL": httpserver.url_for("/").rstrip("/"),
        "DORA_PSEUDONYM_KEY": "k",
    }
    command = [
        sys.executable,
        "-m",
        "dora_pipeline.cli",
        "run",
        "--source",
        "backstage",
        "--end",
        "2025-03-03",
    ]
    refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 4, refused.stderr
    assert "--accept-catalog-shrink" in refused.stderr and "Traceback" not in refused.stderr
    assert _stored(warehouse)["component"] == 40
    accepted = subprocess.run(
        command + ["--accept-catalog-shrink"], env=env, capture_output=True, text=True, timeout=300
    )
    assert accepted.returncode == 0, accepted.stderr
    assert _stored(warehouse)["component"] == 4


def test_orphans_own_nothing_and_user_owned_components_count_for_the_users_groups(
    settings, httpserver
):
    entities = [
        group("team-a"),
        group("team-b"),
        {**group("team-gone"), "metadata": {"name": "team-gone", "annotations": ORPHAN}},
        component("pay", "team-a"),
        component("kept-orphan", "team-a", annotations=ORPHAN),
        component("ghost-owned", "team-gone"),
        component("janes-tool", "user:jane"),
        component("loners-tool", "user:loner"),
        component("nobodys"),
        component("unknown-owned", "team-unknown"),
        user("jane", member_of=["team-b", "team-a"]),
        user("loner"),
    ]
    FakeBackstage(None, entities).install(httpserver)
    warehouse = _warehouse(settings, httpserver)
    warehouse.migrate()
    extract_partition(warehouse, _source(), DAY)
    build_and_publish(warehouse, AS_OF)
    with warehouse.connection() as conn:
        owners = dict(
            conn.execute(
                "select entity_ref, owner_ref from dora_metrics.service_metrics where window_days = 30"
            ).fetchall()
        )
        pools = conn.execute(
            "select group_ref, entity_ref from dora_intermediate.int_group_components order by 1, 2"
        ).fetchall()
        groups = {
            r[0] for r in conn.execute("select distinct group_ref from dora_metrics.team_metrics")
        }
        quality = dict(
            conn.execute(
                "select check_name, value from dora_metrics.data_quality where check_name like 'ownership:%'"
            ).fetchall()
        )
    assert owners == {
        "component:default/pay": "group:default/team-a",
        "component:default/kept-orphan": None,
        "component:default/ghost-owned": None,
        "component:default/janes-tool": "group:default/team-a",  # first of her groups in ref order
        "component:default/loners-tool": None,
        "component:default/nobodys": None,
        "component:default/unknown-owned": "group:default/team-unknown",
    }
    assert pools == [
        ("group:default/team-a", "component:default/janes-tool"),
        ("group:default/team-a", "component:default/pay"),
        ("group:default/team-unknown", "component:default/unknown-owned"),
    ]
    assert "group:default/team-gone" not in groups
    assert quality == {
        "ownership:user": 2,
        "ownership:user_without_group": 1,
        "ownership:unknown_group": 1,
        "ownership:none": 1,
        "ownership:orphaned": 1,
        "ownership:orphaned_owner": 1,
    }


def test_in_dagster_the_run_tag_or_resource_config_accepts_a_shrink(settings, httpserver):
    import dagster
    from dagster import AssetKey, materialize

    from dora_pipeline.defs.assets import ACCEPT_CATALOG_SHRINK_TAG, build_assets
    from dora_pipeline.defs.resources import WarehouseResource

    fake, warehouse = _whole_catalog_stored(settings, httpserver)
    fake.entities = full_catalog(5, 1)
    asset = [
        a for a in build_assets(warehouse.settings) if AssetKey(["dora_raw", "backstage"]) in a.keys
    ]
    instance = dagster.DagsterInstance.ephemeral()
    env = {
        "DORA_DATABASE_URL": settings.database_url.get(),
        "DORA_HOME": str(settings.home),
        "DORA_READER_ROLE": settings.reader_role,
        "BACKSTAGE_URL": httpserver.url_for("/").rstrip("/"),
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        refused = materialize(
            asset,
            resources={"warehouse": WarehouseResource()},
            instance=instance,
            raise_on_error=False,
        )
        assert not refused.success and _stored(warehouse)["component"] == 40
        tagged = materialize(
            asset,
            resources={"warehouse": WarehouseResource()},
            instance=instance,
            tags={ACCEPT_CATALOG_SHRINK_TAG: "true"},
        )
        assert tagged.success and _stored(warehouse)["component"] == 5
        fake.entities = full_catalog(1, 1)
        configured = materialize(
            asset,
            instance=instance,
            resources={"warehouse": WarehouseResource(accept_catalog_shrink=True)},
        )
        assert configured.success and _stored(warehouse)["component"] == 1
