"""ArgoCD source against a fake Kubernetes API server, loaded into the real test database."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import yaml

from dora_pipeline.config import ConfigError, Settings
from dora_pipeline.defs.sensors import poll_argocd
from dora_pipeline.pipeline import extract_partition
from dora_pipeline.sources import SourceError, get_source
from dora_pipeline.sources.argocd import ArgoCDSource, application_records
from dora_pipeline.warehouse import Warehouse

from conftest import REFERENCE, settings_with
from fakes.k8s_argocd import FakeKubernetes, history_entry, make_application

REFERENCE_APP = REFERENCE / "argocd-application-example.yaml"
SHA1 = "a" * 40
SHA2 = "b" * 40
DAY1 = date(2025, 3, 3)
DAY2 = date(2025, 3, 4)


@pytest.fixture
def k8s():
    fake = FakeKubernetes().start()
    yield fake
    fake.stop()


def _source() -> ArgoCDSource:
    return ArgoCDSource(page_size=2, backoff_base=0.001, timeout=5)


def _warehouse(settings, k8s, tmp_path, **env) -> Warehouse:
    kubeconfig = k8s.write_kubeconfig(tmp_path / "kubeconfig")
    return Warehouse(settings_with(settings, ARGOCD_KUBECONFIG=str(kubeconfig), **env))


def _deployments(conn):
    return conn.execute(
        """
        select external_id, service_key_type, service_key, environment, commit_sha,
               started_at, finished_at, failed, partition_date
        from dora_raw.deployments order by finished_at, external_id
        """
    ).fetchall()


def _app(name: str, uid: str, entries: list[tuple[int, str, str]], **kwargs) -> dict:
    history = [history_entry(i, rev, at, at) for i, rev, at in entries]
    return make_application(name, uid, history=history, **kwargs)


def test_registered_and_skipped_without_configuration(warehouse):
    source = get_source("argocd")
    assert isinstance(source, ArgoCDSource)
    assert source.skip_reason(warehouse.settings) == (
        "ARGOCD_KUBECONFIG is not set and not running in a Kubernetes pod"
    )
    assert extract_partition(warehouse, source, DAY1) is None
    assert poll_argocd(warehouse) == {"skipped": source.skip_reason(warehouse.settings)}
    in_pod = Settings.from_env({"KUBERNETES_SERVICE_HOST": "10.0.0.1"})
    assert source.skip_reason(in_pod) is None
    turned_off = Settings.from_env({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "ARGOCD_KUBECONFIG": "off"})
    assert source.skip_reason(turned_off) == "ARGOCD_KUBECONFIG is 'off' (ArgoCD turned off)"


def test_environment_setting_is_validated():
    assert Settings.from_env({}).argocd_environment_from == "namespace"
    assert Settings.from_env({}).argocd_poll_seconds == 180
    assert Settings.from_env({"ARGOCD_ENVIRONMENT_FROM": "label:env"}).argocd_environment_from == "label:env"
    with pytest.raises(ConfigError, match="ARGOCD_ENVIRONMENT_FROM"):
        Settings.from_env({"ARGOCD_ENVIRONMENT_FROM": "cluster"})


@pytest.mark.skipif(not REFERENCE_APP.exists(), reason="reference ArgoCD application not available")
def test_reference_application_parses_into_the_right_rows(settings, k8s, tmp_path, conn):
    app = yaml.safe_load(REFERENCE_APP.read_text())
    k8s.applications = [app]
    wh = _warehouse(settings, k8s, tmp_path)

    first = extract_partition(wh, _source(), date(2024, 3, 4))
    second = extract_partition(wh, _source(), date(2024, 3, 5))

    assert (first.rows, first.quarantined) == ({"deployments": 7}, 0)
    assert (second.rows, second.quarantined) == ({"deployments": 3}, 0)
    rows = _deployments(conn)
    uid = "94978696-4fd4-40b3-a1de-38d9df9e9316"
    assert [r[0] for r in rows] == [f"{uid}:{i}" for i in range(14, 24)]
    assert rows[0] == (
        f"{uid}:14", "argocd_app", "velero-test", "test-lla",
        "ea8759964626a583667a2bfd08f334ec2070040a",
        datetime(2024, 3, 4, 22, 0, 5, tzinfo=UTC),
        datetime(2024, 3, 4, 22, 0, 6, tzinfo=UTC),
        False, date(2024, 3, 4),
    )
    assert rows[-1][6] == datetime(2024, 3, 5, 7, 33, 4, tzinfo=UTC)
    # The operation in the reference succeeded: no failed attempt.
    assert not any(r[7] for r in rows)
    # The same application, other environment strategies.
    assert {r.environment for r in application_records(app, "project")} == {"sre"}
    assert {r.environment for r in application_records(app, "label:cluster_name")} == {
        "gke-alpha-01-europe-west1"
    }


def test_pages_through_all_namespaces(settings, k8s, tmp_path, conn):
    k8s.applications = [
        _app(f"svc-{n}", f"uid-{n}", [(1, SHA1, "2025-03-03T10:00:00Z")], namespace=ns)
        for n, ns in enumerate(["argocd", "argocd", "team-a", "team-a", "team-b"])
    ]
    result = extract_partition(_warehouse(settings, k8s, tmp_path), _source(), DAY1)

    assert result.rows == {"deployments": 5}
    assert k8s.list_paths() == ["/apis/argoproj.io/v1alpha1/applications"] * 3
    assert [q.get("limit") for _, q in k8s.requests] == ["2", "2", "2"]
    assert [r[2] for r in _deployments(conn)] == [f"svc-{n}" for n in range(5)]


def test_lists_only_the_configured_namespaces(settings, k8s, tmp_path, conn):
    k8s.applications = [
        _app(f"svc-{n}", f"uid-{n}", [(1, SHA1, "2025-03-03T10:00:00Z")], namespace=ns)
        for n, ns in enumerate(["argocd", "team-a", "team-a", "team-a", "team-b"])
    ]
    wh = _warehouse(settings, k8s, tmp_path, ARGOCD_NAMESPACES="team-a, team-b")
    result = extract_partition(wh, _source(), DAY1)

    assert result.rows == {"deployments": 4}
    prefix = "/apis/argoproj.io/v1alpha1/namespaces"
    assert k8s.list_paths() == [f"{prefix}/team-a/applications"] * 2 + [f"{prefix}/team-b/applications"]


def test_expired_continue_token_restarts_the_list(settings, k8s, tmp_path, conn):
    k8s.applications = [
        _app(f"svc-{n}", f"uid-{n}", [(1, SHA1, "2025-03-03T10:00:00Z")]) for n in range(5)
    ]
    k8s.expire_next_continue = 1
    result = extract_partition(_warehouse(settings, k8s, tmp_path), _source(), DAY1)

    assert result.rows == {"deployments": 5}
    starts = [q for _, q in k8s.requests if "continue" not in q]
    assert len(starts) == 2  # the first list was abandoned at the 410 and started over
    assert sorted(r[0] for r in _deployments(conn)) == [f"uid-{n}:1" for n in range(5)]


def test_token_that_keeps_expiring_fails_the_partition_whole(settings, k8s, tmp_path, conn):
    k8s.applications = [_app(f"svc-{n}", f"uid-{n}", [(1, SHA1, "2025-03-03T10:00:00Z")]) for n in range(5)]
    k8s.expire_next_continue = 100
    with pytest.raises(SourceError, match="410 Gone"):
        extract_partition(_warehouse(settings, k8s, tmp_path), _source(), DAY1)
    assert _deployments(conn) == []


def test_transient_errors_are_retried_and_forbidden_explains_rbac(settings, k8s, tmp_path, conn):
    k8s.applications = [_app("svc", "uid-1", [(1, SHA1, "2025-03-03T10:00:00Z")])]
    k8s.fail_next = [503, 500, 429]
    wh = _warehouse(settings, k8s, tmp_path)
    assert extract_partition(wh, _source(), DAY1).rows == {"deployments": 1}

    k8s.fail_next = [403]
    with pytest.raises(SourceError, match="applications.argoproj.io"):
        extract_partition(wh, _source(), DAY1)


def test_failed_operation_is_a_failed_attempt(settings, k8s, tmp_path, conn):
    failed_op = {
        "phase": "Failed",
        "message": "one or more objects failed to apply",
        "startedAt": "2025-03-03T11:00:00Z",
        "finishedAt": "2025-03-03T11:02:30Z",
        "operation": {"sync": {"revision": SHA2.upper()}},
        "syncResult": {"revision": SHA2, "resources": []},
    }
    helm_history = [history_entry(7, "1.4.2", "2025-03-03T09:00:00Z", "2025-03-03T09:01:00Z")]
    k8s.applications = [
        _app("api", "uid-api", [(3, SHA1, "2025-03-03T10:00:00Z")], operation_state=failed_op),
        make_application("chart", "uid-chart", history=helm_history,
                         operation_state={**failed_op, "phase": "Error", "startedAt": "2025-03-03T12:00:00Z",
                                          "finishedAt": "2025-03-03T12:00:05Z"}),
    ]
    result = extract_partition(_warehouse(settings, k8s, tmp_path), _source(), DAY1)

    assert (result.rows, result.quarantined) == ({"deployments": 4}, 0)
    rows = {r[0]: r for r in _deployments(conn)}
    failed = rows["uid-api:op:2025-03-03T11:00:00Z"]
    assert failed[4] == SHA2 and failed[7] is True
    assert failed[5:7] == (datetime(2025, 3, 3, 11, tzinfo=UTC),
                           datetime(2025, 3, 3, 11, 2, 30, tzinfo=UTC))
    assert rows["uid-chart:op:2025-03-03T12:00:00Z"][7] is True
    assert rows["uid-api:3"][7] is False
    # A Helm chart version is not a commit: the deployment lands without a SHA.
    assert rows["uid-chart:7"][4] is None


def test_missing_environment_label_is_quarantined_with_the_reason(settings, k8s, tmp_path, conn):
    k8s.applications = [
        _app("api", "uid-api", [(1, SHA1, "2025-03-03T10:00:00Z")], labels={"env": "production"}),
        _app("web", "uid-web", [(1, SHA1, "2025-03-03T10:00:00Z")]),
    ]
    wh = _warehouse(settings, k8s, tmp_path, ARGOCD_ENVIRONMENT_FROM="label:env")
    result = extract_partition(wh, _source(), DAY1)

    assert (result.rows, result.quarantined) == ({"deployments": 1}, 1)
    assert [r[3] for r in _deployments(conn)] == ["production"]
    assert conn.execute("select record_key, reason from dora_raw.quarantine").fetchall() == [
        ("argocd:uid-web:1", "environment: is missing")
    ]


def test_history_rolling_off_between_polls_loses_nothing_and_counts_nothing_twice(
    settings, k8s, tmp_path, conn
):
    entries = [
        (1, SHA1, "2025-03-03T10:00:00Z"),
        (2, SHA2, "2025-03-03T23:30:00Z"),
        (3, SHA1, "2025-03-04T08:00:00Z"),
    ]
    k8s.applications = [_app("api", "uid-api", entries)]
    wh = _warehouse(settings, k8s, tmp_path)

    first = poll_argocd(wh, _source())
    assert first == {"applications": 1, "days": 2, "rows": 3, "quarantined": 0}

    # ArgoCD keeps only the last revisionHistoryLimit entries: 1 and 2 roll off, 4 and 5 arrive.
    k8s.applications = [_app("api", "uid-api", entries[2:] + [
        (4, SHA2, "2025-03-04T09:00:00Z"),
        (5, SHA1, "2025-03-04T10:00:00Z"),
    ])]
    second = poll_argocd(wh, _source())
    assert second["rows"] == 3

    expected = [("uid-api:1", DAY1), ("uid-api:2", DAY1), ("uid-api:3", DAY2),
                ("uid-api:4", DAY2), ("uid-api:5", DAY2)]
    assert [(r[0], r[8]) for r in _deployments(conn)] == expected
    # Polls are partial: the record of complete partition extracts is the partition runs'.
    assert conn.execute("select count(*) from dora_raw.extract_log").fetchone() == (0,)

    # The nightly partition run after the roll-off sees only part of day 1: nothing is lost.
    extract_partition(wh, _source(), DAY1)
    extract_partition(wh, _source(), DAY2)
    assert [(r[0], r[8]) for r in _deployments(conn)] == expected
    assert conn.execute(
        "select partition_date, rows_loaded->>'deployments' from dora_raw.extract_log order by 1"
    ).fetchall() == [(DAY1, None), (DAY2, "3")]


def test_polls_replace_quarantine_rows_only_for_what_they_see(settings, k8s, tmp_path, conn):
    k8s.applications = [_app("web", "uid-web", [(1, SHA1, "2025-03-03T10:00:00Z")])]
    wh = _warehouse(settings, k8s, tmp_path, ARGOCD_ENVIRONMENT_FROM="label:env")
    poll_argocd(wh, _source())
    poll_argocd(wh, _source())
    quarantine = "select record_key, reason from dora_raw.quarantine order by 1"
    assert conn.execute(quarantine).fetchall() == [("argocd:uid-web:1", "environment: is missing")]

    # Another entry of the same day, seen by a later poll after the first rolled off:
    # the first entry's quarantine row stays (the poll only saw part of the day).
    k8s.applications = [_app("web", "uid-web", [(2, SHA1, "2025-03-03T11:00:00Z")],
                             labels={"env": "production"})]
    assert poll_argocd(wh, _source())["rows"] == 1
    assert conn.execute(quarantine).fetchall() == [("argocd:uid-web:1", "environment: is missing")]

    # Once the label is fixed upstream, the entry lands and its quarantine row goes.
    k8s.applications = [_app("web", "uid-web", [(1, SHA1, "2025-03-03T10:00:00Z")],
                             labels={"env": "production"})]
    poll_argocd(wh, _source())
    assert conn.execute(quarantine).fetchall() == []
    assert [r[0] for r in _deployments(conn)] == ["uid-web:1", "uid-web:2"]
