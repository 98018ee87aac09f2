"""The CI deploy webhook, served by a real uvicorn server on a free port."""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import UTC, date, datetime

import pytest
import requests

from dora_pipeline.config import ConfigError
from dora_pipeline.pipeline import extract_partition
from dora_pipeline.sources import get_source
from dora_pipeline.webhook.app import create_app, make_server, serve
from dora_pipeline.webhook.events import parse_event, sign

from conftest import settings_with

SECRET = "test-webhook-secret-0123456789"
LIMIT = 2048
SHA = "0123456789abcdef0123456789abcdef01234567"


def _event(**overrides) -> dict:
    event = {
        "delivery_id": "gha-1001-1",
        "component": "component:default/payments-api",
        "environment": "production",
        "commit_sha": SHA.upper(),
        "started_at": "2025-03-03T10:00:00Z",
        "finished_at": "2025-03-03T10:04:00+00:00",
        "status": "success",
    }
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not None}


@pytest.fixture
def receiver(settings, warehouse):
    """(base URL, settings) of a running receiver on this test's database."""
    hook_settings = settings_with(
        settings, DORA_WEBHOOK_SECRET=SECRET, DORA_WEBHOOK_MAX_BODY_BYTES=str(LIMIT)
    )
    server = make_server(create_app(hook_settings, warehouse.url, body_timeout=0.5), "127.0.0.1", 0)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "webhook server did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", hook_settings
    server.should_exit = True
    thread.join(10)


def _post(base: str, body: bytes, signature: str | None = "auto") -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if signature == "auto":
        signature = sign(SECRET, body)
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return requests.post(f"{base}/v1/deployments", data=body, headers=headers, timeout=10)


def _raw(base: str, data: bytes) -> tuple[int, dict]:
    """Send raw bytes (for bodies requests would not send as we need) and read the answer."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(data)
        response = b""
        while b"\r\n\r\n" not in response or not _complete(response):
            chunk = conn.recv(65536)
            if not chunk:
                break
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body or b"{}")


def _complete(response: bytes) -> bool:
    head, _, body = response.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def _inbox(conn):
    return conn.execute("select delivery_id, payload from dora_raw.webhook_inbox order by 1").fetchall()


def test_refuses_to_start_without_a_secret(settings, warehouse):
    with pytest.raises(ConfigError, match="DORA_WEBHOOK_SECRET is not set"):
        serve(settings, "127.0.0.1", 0)
    with pytest.raises(ConfigError, match="DORA_WEBHOOK_SECRET is not set"):
        create_app(settings, warehouse.url)
    with pytest.raises(ConfigError, match="too short"):
        create_app(settings_with(settings, DORA_WEBHOOK_SECRET="short"), warehouse.url)


def test_health(receiver):
    base, _ = receiver
    assert requests.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}


def test_signed_delivery_is_stored_before_202_and_a_repeat_is_stored_once(receiver, conn):
    base, _ = receiver
    body = json.dumps(_event()).encode()

    first = _post(base, body)
    assert (first.status_code, first.json()) == (202, {"status": "accepted", "delivery_id": "gha-1001-1"})
    # 202 means committed: the row is visible to another connection right away.
    rows = _inbox(conn)
    assert [r[0] for r in rows] == ["gha-1001-1"]
    assert rows[0][1]["commit_sha"] == SHA  # normalised to lower case
    assert rows[0][1]["finished_at"] == "2025-03-03T10:04:00+00:00"

    again = _post(base, body)
    assert (again.status_code, again.json()["status"]) == (202, "duplicate")
    assert len(_inbox(conn)) == 1


@pytest.mark.parametrize(
    "signature",
    [None, "sha256=" + "0" * 64, "sha1=abc", "auto-wrong-secret", "auto-tampered"],
)
def test_bad_or_missing_signature_is_401_and_nothing_is_stored(receiver, conn, signature):
    base, _ = receiver
    body = json.dumps(_event()).encode()
    if signature == "auto-wrong-secret":
        signature = sign("another-secret-of-some-length", body)
    elif signature == "auto-tampered":
        signature = sign(SECRET, body)
        body = body.replace(b"production", b"staging")
    response = _post(base, body, signature)
    assert response.status_code == 401
    assert SECRET not in response.text
    assert _inbox(conn) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        (b"[1, 2]", "body"),
        (json.dumps(_event(environment=None)).encode(), "environment"),
        (json.dumps(_event(finished_at="2025-03-03T10:04:00")).encode(), "finished_at"),
        (json.dumps(_event(finished_at="yesterday")).encode(), "finished_at"),
        (json.dumps(_event(commit_sha="not-a-sha")).encode(), "commit_sha"),
        (json.dumps(_event(status="cancelled")).encode(), "status"),
        (json.dumps(_event(component=None)).encode(), "component"),
        (json.dumps(_event(component="group:default/team-a")).encode(), "component"),
        (json.dumps(_event(component=None, repository="not a repo")).encode(), "repository"),
        (json.dumps(_event(started_at="2025-03-03T11:00:00Z")).encode(), "started_at"),
        (json.dumps(_event(delivery_id=42)).encode(), "delivery_id"),
    ],
)
def test_invalid_json_or_fields_are_400_naming_the_field(receiver, conn, body, field):
    base, _ = receiver
    response = _post(base, body)
    assert response.status_code == 400
    assert response.json()["field"] == field
    assert response.json()["error"].startswith(f"{field}:")
    assert _inbox(conn) == []


def test_oversized_body_is_refused_by_content_length_before_reading(receiver):
    base, _ = receiver
    # Only the head is sent: the receiver answers from Content-Length alone.
    status, body = _raw(base, (
        b"POST /v1/deployments HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 50000000\r\n\r\n"
    ))
    assert status == 413
    assert "2048" in body["error"]


def test_oversized_chunked_body_is_refused_while_streaming(receiver, conn):
    base, _ = receiver
    chunk = b"x" * 1000
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(3))
    status, _ = _raw(base, (
        b"POST /v1/deployments HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    ))
    assert status == 413
    assert _inbox(conn) == []


def test_body_that_never_arrives_times_out(receiver):
    base, _ = receiver
    status, body = _raw(base, (
        b"POST /v1/deployments HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"delivery_id\""
    ))
    assert status == 408


def test_stored_events_become_deployments_in_the_partition_run(receiver, warehouse, conn):
    base, _ = receiver
    events = [
        _event(),
        _event(delivery_id="gha-1002-1", component=None, repository="Acme/Checkout",
               status="failure", started_at=None, finished_at="2025-03-03T23:59:59Z"),
        _event(delivery_id="gha-1003-1", finished_at="2025-03-04T00:00:00Z"),
    ]
    for event in events:
        assert _post(base, json.dumps(event).encode()).status_code == 202

    result = extract_partition(warehouse, get_source("webhook"), date(2025, 3, 3))

    assert (result.rows, result.quarantined) == ({"deployments": 2}, 0)
    rows = conn.execute(
        """
        select external_id, service_key_type, service_key, repository, environment, commit_sha,
               started_at, finished_at, failed, partition_date
        from dora_raw.deployments order by external_id
        """
    ).fetchall()
    assert rows == [
        ("gha-1001-1", "entity_ref", "component:default/payments-api", None, "production", SHA,
         datetime(2025, 3, 3, 10, tzinfo=UTC), datetime(2025, 3, 3, 10, 4, tzinfo=UTC),
         False, date(2025, 3, 3)),
        ("gha-1002-1", "github_repo", "acme/checkout", "acme/checkout", "production", SHA,
         None, datetime(2025, 3, 3, 23, 59, 59, tzinfo=UTC), True, date(2025, 3, 3)),
    ]
    # Re-running the partition yields the same rows.
    extract_partition(warehouse, get_source("webhook"), date(2025, 3, 3))
    assert conn.execute("select count(*) from dora_raw.deployments").fetchone() == (2,)


def test_parse_event_normalises_shorthand_component_refs():
    event = parse_event(json.dumps(_event(component="Payments-API")).encode())
    assert event.component == "component:default/payments-api"
