"""End to end: fakes of ArgoCD (Kubernetes API), the CI deploy webhook, PagerDuty and
Opsgenie, plus a catalog, through ``dora-pipeline run`` into ``dora_metrics``; every
published number below is computed by hand in the comments."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from decimal import Decimal

from dora_pipeline import cli
from dora_pipeline.records import CatalogEntity
from dora_pipeline.warehouse.loader import load_partition
from dora_pipeline.webhook.app import Inbox
from dora_pipeline.webhook.events import parse_event

from fakes.k8s_argocd import FakeKubernetes, history_entry, make_application
from fakes.opsgenie_api import API_KEY, FakeOpsgenie, log_entry
from fakes.opsgenie_api import make_incident as opsgenie_incident
from fakes.pagerduty_api import TOKEN, FakePagerDuty
from fakes.pagerduty_api import make_incident as pagerduty_incident

SHA = "0123456789abcdef0123456789abcdef01234567"
OG_SERVICE = "daa0d66f-ad35-4396-b30d-70f0314c697a"
WEBHOOK_SECRET = "e2e-webhook-secret-0123456789"


def _catalog() -> list[CatalogEntity]:
    return [
        CatalogEntity("backstage", "group:default/team-a", "group", "default", "team-a"),
        CatalogEntity("backstage", "component:default/payments-api", "component", "default", "payments-api",
                      owner_ref="group:default/team-a",
                      annotations={"argocd/app-name": "payments", "pagerduty.com/service-id": "PSVC1"}),
        CatalogEntity("backstage", "component:default/checkout", "component", "default", "checkout",
                      owner_ref="group:default/team-a",
                      annotations={"github.com/project-slug": "acme/checkout",
                                   "opsgenie.com/service-id": OG_SERVICE}),
    ]


def test_run_publishes_metrics_from_all_four_sources(
    settings, warehouse, conn, tmp_path, httpserver, monkeypatch, restore_logging
):
    with warehouse.connection() as c:
        load_partition(c, "backstage", date(2025, 3, 7), _catalog(), snapshot_tables=("catalog_entities",))

    # payments-api deploys through ArgoCD: three syncs, one failed operation.
    k8s = FakeKubernetes().start()
    k8s.applications = [make_application(
        "payments", "uid-payments", destination_namespace="production",
        history=[
            history_entry(1, SHA, "2025-03-02T09:55:00Z", "2025-03-02T10:00:00Z"),
            history_entry(2, SHA, "2025-03-04T09:55:00Z", "2025-03-04T10:00:00Z"),
            history_entry(3, SHA, "2025-03-06T09:55:00Z", "2025-03-06T10:00:00Z"),
        ],
        operation_state={"phase": "Failed", "startedAt": "2025-03-05T12:00:00Z",
                         "finishedAt": "2025-03-05T12:03:00Z", "syncResult": {"revision": SHA}},
    )]
    # checkout deploys from CI through the webhook (stored in the inbox by the receiver).
    inbox = Inbox(warehouse.url)
    for delivery, finished, status, env in [
        ("w1", "2025-03-03T09:00:00Z", "success", "production"),
        ("w2", "2025-03-05T09:00:00Z", "failure", "production"),
        ("w3", "2025-03-05T10:00:00Z", "success", "production"),
        ("w4", "2025-03-05T11:00:00Z", "success", "staging"),
    ]:
        body = json.dumps({"delivery_id": delivery, "repository": "acme/checkout", "environment": env,
                           "commit_sha": SHA, "finished_at": finished, "status": status}).encode()
        inbox.store(parse_event(body), hashlib.sha256(body).hexdigest())
    # Incidents: PagerDuty on payments-api's service, Opsgenie on checkout's.
    pagerduty = FakePagerDuty().install(httpserver)
    pagerduty.incidents = [
        pagerduty_incident("PA", "2025-03-04T12:00:00Z", "PSVC1", status="resolved",
                           resolved_at="2025-03-04T12:30:00Z"),
        pagerduty_incident("PB", "2025-03-06T20:00:00Z", "PSVC1", status="resolved",
                           resolved_at="2025-03-06T22:00:00Z"),
        pagerduty_incident("PC", "2025-03-02T12:00:00Z", "PSVC1", status="resolved",
                           resolved_at="2025-03-02T13:00:00Z", incident_type={"name": "not_change"}),
    ]
    opsgenie = FakeOpsgenie().install(httpserver)
    opsgenie.incidents = [opsgenie_incident("og-1", "1", "2025-03-05T15:00:00Z", status="resolved",
                                            impacted_services=[OG_SERVICE])]
    opsgenie.logs = {"og-1": [log_entry("2025-03-05T17:00:00Z", "Incident resolved by jane@example.com")]}

    env = {
        "DORA_DATABASE_URL": settings.database_url.get(),
        "DORA_HOME": str(settings.home),
        "DORA_READER_ROLE": settings.reader_role,
        "DORA_PSEUDONYM_KEY": "e2e-pseudonym-key",
        "ARGOCD_KUBECONFIG": str(k8s.write_kubeconfig(tmp_path / "kubeconfig")),
        "PAGERDUTY_TOKEN": TOKEN,
        "PAGERDUTY_API_URL": httpserver.url_for("/").rstrip("/"),
        "PAGERDUTY_CHANGE_FIELD": "incident_type.name",
        "OPSGENIE_API_KEY": API_KEY,
        "OPSGENIE_API_URL": httpserver.url_for("/").rstrip("/"),
        "DORA_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        code = cli.main([
            "run", "--start", "2025-03-01", "--end", "2025-03-07", "--as-of", "2025-03-08",
            "--source", "argocd", "--source", "webhook", "--source", "pagerduty", "--source", "opsgenie",
        ])
    finally:
        k8s.stop()
    assert code == 0

    columns = ("deployments, deploy_days, deploys_per_day, deployment_frequency_tier, failed_deployments, "
               "change_failure_rate_pct, change_failure_tier, incidents, median_time_to_restore_minutes, "
               "time_to_restore_tier, failed_attempts")
    services = {
        row[0]: row[1:] for row in conn.execute(
            f"select entity_ref, {columns} from dora_metrics.service_metrics where window_days = 7"
        ).fetchall()
    }
    # payments-api: 3 deploys on 3 days (3/7 = 0.4286/day, high). PA (2 h after deploy 2) and
    # PB (10 h after deploy 3) are blamed; PC is marked not_change: 2 of 3 failed = 66.67 %.
    # Restore: PA 30 min, PB 120, PC 60 -> median 60 (high: >= 60). The failed sync is an attempt.
    assert services["component:default/payments-api"] == (
        3, 3, Decimal("0.4286"), "high", 2, Decimal("66.67"), "low", 3, Decimal("60.00"), "high", 1,
    )
    # checkout: w1 and w3 in production (w4 is staging, w2 failed); og-1 opened 5 h after w3:
    # 1 of 2 failed = 50 %; restored after 120 min (from the incident log).
    assert services["component:default/checkout"] == (
        2, 2, Decimal("0.2857"), "high", 1, Decimal("50.00"), "low", 1, Decimal("120.00"), "high", 1,
    )
    assert set(services) == {"component:default/payments-api", "component:default/checkout"}

    team = conn.execute(
        f"select {columns} from dora_metrics.team_metrics where group_ref = 'group:default/team-a' "
        "and window_days = 7"
    ).fetchone()
    # Pooled: 5 deployments on 5 distinct days, 3 failed (60 %), 4 incidents with restore
    # times 30, 60, 120, 120 -> median 90 minutes, 2 failed attempts.
    assert team == (5, 5, Decimal("0.7143"), "high", 3, Decimal("60.00"), "low", 4, Decimal("90.00"),
                    "high", 2)
