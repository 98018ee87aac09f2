"""The webhook holds against slow, oversized and odd clients (issue 13, findings 5-7).

Real sockets against a real uvicorn server: a slowloris of half-open request heads, idle
connections, a huge head in one write, edge-case JSON; real processes for start-up on a
busy port and for a clean shutdown. Measured figures are printed for the issue note.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from dora_pipeline.webhook.app import create_app, make_server
from dora_pipeline.webhook.events import sign

from conftest import settings_with

SECRET = "test-webhook-secret-0123456789"
SHA = "0123456789abcdef0123456789abcdef01234567"
HEAD_TIMEOUT = 2.0


def _event(delivery_id: str = "d-1", **overrides) -> dict:
    event = {
        "delivery_id": delivery_id,
        "component": "component:default/payments-api",
        "environment": "production",
        "commit_sha": SHA,
        "finished_at": "2025-03-03T10:04:00+00:00",
        "status": "success",
    }
    event.update(overrides)
    return event


def _start(app, **options):
    server = make_server(app, "127.0.0.1", 0, **options)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "webhook server did not start"
        time.sleep(0.01)
    return server, thread, sock.getsockname()[1]


@pytest.fixture
def receiver(settings, warehouse):
    """(host, port) of a running receiver on this test's database, heads due in 2 s."""
    hook_settings = settings_with(settings, DORA_WEBHOOK_SECRET=SECRET)
    server, thread, port = _start(
        create_app(hook_settings, warehouse.url, body_timeout=2.0), head_timeout=HEAD_TIMEOUT
    )
    yield "127.0.0.1", port
    server.should_exit = True
    thread.join(15)


def _post(address, body: bytes) -> requests.Response:
    host, port = address
    return requests.post(
        f"http://{host}:{port}/v1/deployments",
        data=body,
        timeout=10,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign(SECRET, body)},
    )


def _closed_after(conn: socket.socket, started: float, limit: float = 20.0) -> float | None:
    """Seconds from ``started`` until the server closed ``conn`` (None: still open at ``limit``)."""
    conn.settimeout(0.2)
    while time.monotonic() - started < limit:
        try:
            data = conn.recv(4096)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return time.monotonic() - started
        if data == b"" or data.startswith(b"HTTP/1.1 4"):
            return time.monotonic() - started
    return None


def test_a_slowloris_is_cut_off_while_signed_posts_and_healthz_are_served(receiver, capsys):
    host, port = receiver
    loris, started = [], time.monotonic()
    for _ in range(100):
        conn = socket.create_connection((host, port), timeout=5)
        conn.sendall(b"POST /v1/deployments HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        loris.append(conn)

    def trickle() -> None:  # one more byte every 0.3 s: uvicorn alone would wait for ever
        for _ in range(40):
            for conn in loris:
                try:
                    conn.send(b"a")
                except OSError:
                    pass
            time.sleep(0.3)

    threading.Thread(target=trickle, daemon=True).start()
    answers = []
    for i in range(20):
        answers.append(_post(receiver, json.dumps(_event(f"loris-{i}")).encode()).status_code)
        answers.append(requests.get(f"http://{host}:{port}/healthz", timeout=10).status_code)
    with ThreadPoolExecutor(max_workers=100) as pool:
        closed = list(pool.map(lambda c: _closed_after(c, started), loris))
    for conn in loris:
        conn.close()
    with capsys.disabled():
        refused = [c for c in closed if c is not None]
        print(
            f"\nslowloris: 100 half-open heads, {answers.count(202)} of 20 signed POSTs 202 and "
            f"{answers.count(200)} of 20 /healthz 200 meanwhile; heads cut off after "
            f"{min(refused):.1f}..{max(refused):.1f}s (head timeout {HEAD_TIMEOUT}s)"
        )
    assert answers == [202, 200] * 20
    assert None not in closed


def test_more_half_open_heads_than_connections_still_leave_room_for_valid_requests(
    settings, warehouse
):
    hook_settings = settings_with(settings, DORA_WEBHOOK_SECRET=SECRET)
    from dora_pipeline.webhook import app as webhook

    server, thread, port = _start(create_app(hook_settings, warehouse.url), head_timeout=30.0)
    try:
        flood = [
            socket.create_connection(("127.0.0.1", port))
            for _ in range(webhook.MAX_CONNECTIONS + 50)
        ]
        for conn in flood:
            conn.sendall(b"GET /healthz HTTP/1.1\r\n")
        answers = [
            _post(("127.0.0.1", port), json.dumps(_event(f"room-{i}")).encode()).status_code
            for i in range(5)
        ]
        assert answers == [202] * 5
        for conn in flood:
            conn.close()
    finally:
        server.should_exit = True
        thread.join(15)


def test_idle_connections_are_closed_within_the_head_timeout(receiver):
    host, port = receiver
    silent = socket.create_connection((host, port))
    started = time.monotonic()
    assert _closed_after(silent, started) is not None
    kept_alive = socket.create_connection((host, port))
    kept_alive.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert kept_alive.recv(4096).startswith(b"HTTP/1.1 200")
    assert _closed_after(kept_alive, time.monotonic()) is not None
    silent.close()
    kept_alive.close()


def test_a_head_over_16_kib_in_one_write_is_refused(receiver):
    host, port = receiver
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
        answer = conn.recv(4096)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:80]


def test_too_many_requests_in_flight_get_503_with_retry_after(settings, warehouse):
    hook_settings = settings_with(settings, DORA_WEBHOOK_SECRET=SECRET)
    server, thread, port = _start(
        create_app(hook_settings, warehouse.url, body_timeout=5.0), max_in_flight=1
    )
    try:
        with socket.create_connection(("127.0.0.1", port)) as pending:
            # A request whose body has not arrived yet is in flight.
            pending.sendall(
                b"POST /v1/deployments HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n"
            )
            time.sleep(0.3)
            busy = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert busy.status_code == 503
        assert busy.headers["Retry-After"].isdigit()
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (json.dumps(_event(environment="prod\ud800")).encode(), "environment", "surrogate"),
        (b"[" * 30_000 + b"]" * 30_000, "body", "nested too deeply"),
        (
            json.dumps(_event(finished_at="0001-01-01T00:00:00+14:00")).encode(),
            "finished_at",
            "2000-01-01",
        ),
        (
            json.dumps(_event(finished_at="1900-06-01T00:00:00Z")).encode(),
            "finished_at",
            "must be between",
        ),
        (
            json.dumps(_event(started_at="0001-01-01T00:00:00Z")).encode(),
            "started_at",
            "must be between",
        ),
        (
            json.dumps(_event(finished_at="2999-01-01T00:00:00Z")).encode(),
            "finished_at",
            "must be between",
        ),
        (json.dumps(_event(environment="prod\u0000")).encode(), "environment", "NUL"),
    ],
    ids=[
        "lone-surrogate",
        "deep-nesting",
        "year-1",
        "year-1900",
        "started-year-1",
        "year-2999",
        "nul",
    ],
)
def test_permanent_input_errors_are_400_naming_the_field(receiver, conn, body, field, words):
    answer = _post(receiver, body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == field
    assert words in answer.json()["error"]
    assert conn.execute("select count(*) from dora_raw.webhook_inbox").fetchone()[0] == 0


def _cli_env(settings, tmp_path) -> dict[str, str]:
    return {
        **os.environ,
        "DORA_DATABASE_URL": settings.database_url.get(),
        "DORA_HOME": str(tmp_path),
        "DORA_READER_ROLE": settings.reader_role,
        "DORA_WEBHOOK_SECRET": SECRET,
    }


def test_a_busy_port_exits_3_before_saying_it_listens(settings, warehouse, tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "dora_pipeline.cli", "webhook", "--port", str(port)],
            env=_cli_env(settings, tmp_path),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 3, done.stderr
    assert "listening" not in done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "Traceback" not in done.stderr


def test_sigterm_stops_the_receiver_cleanly(settings, warehouse, tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "dora_pipeline.cli", "webhook", "--port", str(port)],
        env=_cli_env(settings, tmp_path),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        for line in process.stderr:
            lines.append(line)
            if "listening" in line:
                break
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, "".join(lines) + rest
    assert "webhook: stopped" in rest and "Traceback" not in rest
