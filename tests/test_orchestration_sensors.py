"""Sensors, evaluated with Dagster's test contexts: the ArgoCD poll against a fake
Kubernetes API, and the run-failure alert against a real local HTTP server."""

from __future__ import annotations

import json

import pytest
from dagster import (
    DagsterEventType,
    SkipReason,
    build_run_status_sensor_context,
    build_sensor_context,
    instance_for_test,
    job,
    op,
)

from dora_pipeline.config import ConfigError, Settings
from dora_pipeline.defs.resources import WarehouseResource
from dora_pipeline.defs.sensors import alert_on_run_failure, argocd_poll_sensor
from dora_pipeline.sources import SourceError

from fakes.k8s_argocd import FakeKubernetes, history_entry, make_application

TOKEN = "ghp_supersecret_token_value"


@pytest.fixture
def k8s():
    fake = FakeKubernetes().start()
    yield fake
    fake.stop()


def _poll(settings, monkeypatch, **env):
    for name in ("ARGOCD_KUBECONFIG", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    sensor = argocd_poll_sensor(Settings.from_env())
    resources = {"warehouse": WarehouseResource(database_url=settings.database_url.get(), home=str(settings.home))}
    return sensor, sensor(build_sensor_context(resources=resources))


def test_argocd_poll_skips_when_argocd_is_not_configured(settings, monkeypatch):
    sensor, result = _poll(settings, monkeypatch)
    assert isinstance(result, SkipReason)
    assert "ArgoCD is not configured" in result.skip_message
    assert sensor.minimum_interval_seconds == 180


def test_argocd_poll_lands_what_argocd_shows_on_its_own_interval(settings, monkeypatch, k8s, tmp_path, conn):
    entries = [(1, "a" * 40, "2025-03-03T10:00:00Z"), (2, "b" * 40, "2025-03-04T08:00:00Z")]
    k8s.applications = [
        make_application("api", "uid-api", history=[history_entry(i, r, t, t) for i, r, t in entries])
    ]
    kubeconfig = k8s.write_kubeconfig(tmp_path / "kubeconfig")
    sensor, result = _poll(settings, monkeypatch, ARGOCD_KUBECONFIG=str(kubeconfig), ARGOCD_POLL_SECONDS="60")
    assert sensor.minimum_interval_seconds == 60
    assert isinstance(result, SkipReason)  # it lands rows; it launches no run
    assert "2 deployments upserted" in result.skip_message
    rows = conn.execute("select external_id from dora_raw.deployments order by 1").fetchall()
    assert rows == [("uid-api:1",), ("uid-api:2",)]
    # Polling again upserts the same natural keys: nothing counted twice.
    sensor(build_sensor_context(resources={"warehouse": WarehouseResource(
        database_url=settings.database_url.get(), home=str(settings.home))}))
    assert conn.execute("select count(*) from dora_raw.deployments").fetchone() == (2,)


@op
def extract_github():
    # A vendor error that (wrongly) carries the token: the alert must not repeat it.
    raise SourceError(f"github: GET /graphql failed with HTTP 502 after 5 retries (token {TOKEN})")


@job(tags={"dagster/partition": "2025-03-09"})
def failing_job():
    extract_github()


@pytest.fixture(scope="module")
def failed_run():
    """A real failed run and the context Dagster gives the run-failure sensor for it."""
    with instance_for_test() as instance:
        result = failing_job.execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type == DagsterEventType.RUN_FAILURE)
        yield build_run_status_sensor_context(
            sensor_name="alert_on_run_failure", dagster_instance=instance,
            dagster_run=result.dagster_run, dagster_event=failure,
        ).for_run_failure()


def test_run_failure_alert_posts_slack_json_without_secrets(httpserver, monkeypatch, failed_run):
    hook_path = "/services/T000/B000/hook-token-XYZ"
    httpserver.expect_oneshot_request(hook_path, method="POST").respond_with_data("ok")
    monkeypatch.setenv("DORA_ALERT_WEBHOOK_URL", httpserver.url_for(hook_path))
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("DORA_DAGSTER_URL", "https://dagster.example.com/")
    alert_on_run_failure(failed_run)
    run_id = failed_run.dagster_run.run_id

    httpserver.check_assertions()
    (request, _response), = httpserver.log
    assert request.headers["Content-Type"] == "application/json"
    body = json.loads(request.get_data())
    assert set(body) == {"text"}
    text = body["text"]
    assert "`failing_job` failed (partitions 2025-03-09)" in text
    assert "step `extract_github`: SourceError: github: GET /graphql failed with HTTP 502" in text
    assert f"https://dagster.example.com/runs/{run_id}" in text
    assert TOKEN not in text and "hook-token-XYZ" not in text and "***" in text


def test_run_failure_alert_is_off_without_a_url(httpserver, monkeypatch, failed_run):
    monkeypatch.delenv("DORA_ALERT_WEBHOOK_URL", raising=False)
    result = alert_on_run_failure(failed_run)
    assert isinstance(result, SkipReason)
    assert httpserver.log == []


def test_run_failure_alert_errors_never_show_the_webhook_url(httpserver, monkeypatch, failed_run):
    httpserver.expect_request("/hook-token-XYZ", method="POST").respond_with_data("no", status=500)
    monkeypatch.setenv("DORA_ALERT_WEBHOOK_URL", httpserver.url_for("/hook-token-XYZ"))
    with pytest.raises(RuntimeError) as failed:
        alert_on_run_failure(failed_run)
    assert "HTTP 500" in str(failed.value) and "hook-token-XYZ" not in str(failed.value)
    httpserver.stop()  # nothing listens any more: unreachable, still without the URL
    with pytest.raises(RuntimeError) as unreachable:
        alert_on_run_failure(failed_run)
    assert "unreachable" in str(unreachable.value) and "hook-token-XYZ" not in str(unreachable.value)
    httpserver.start()


def test_alert_url_must_be_http_and_is_kept_secret():
    with pytest.raises(ConfigError) as bad:
        Settings.from_env({"DORA_ALERT_WEBHOOK_URL": "ftp://hooks.example.com/secret-path"})
    assert "secret-path" not in str(bad.value)
    good = Settings.from_env({"DORA_ALERT_WEBHOOK_URL": "https://hooks.example.com/secret-path"})
    assert "secret-path" not in repr(good)
    assert "https://hooks.example.com/secret-path" in good.secrets()
