"""The HTTP layer every vendor source shares.

Timeouts on every request; retries with capped exponential backoff and jitter for
connection errors, timeouts and 5xx; ``Retry-After`` and the rate-limit headers honoured
for 429 and rate-limited 403; a hook for vendors whose rate limit is not an HTTP status
(GitHub GraphQL answers 200 with an error body). When the retries run out the request
fails with ``SourceError`` naming the method, the URL path and the last status, never a
header or a token, so the partition fails whole and nothing partial is loaded.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import requests

from .sources.base import SourceError

if TYPE_CHECKING:
    from .config import Settings

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({500, 502, 503, 504, 520, 521, 522, 524})
# Transport failures worth another attempt. A body cut off mid-transfer (the connection
# dropped after the headers) surfaces as ChunkedEncodingError, not ConnectionError.
_TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)
# Headers that never carry a credential; every other header value is masked in messages.
_PLAIN_HEADERS = frozenset({"user-agent", "accept", "accept-encoding", "connection", "content-type",
                            "x-github-api-version"})
# A vendor hook: given a response that otherwise looks fine, seconds to wait before
# retrying (rate limited), or None to accept it.
RetryHook = Callable[[requests.Response], float | None]


def _retry_after_seconds(response: requests.Response, now: float) -> float | None:
    """Seconds the server asked us to wait: Retry-After (delta or HTTP date), else the
    rate-limit reset headers (GitHub ``x-ratelimit-reset``, epoch seconds)."""
    value = response.headers.get("Retry-After")
    if value:
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            parsed = email.utils.parsedate_to_datetime(value)
            return max(0.0, parsed.timestamp() - now)
        except (TypeError, ValueError):
            pass
    remaining = response.headers.get("x-ratelimit-remaining")
    reset = response.headers.get("x-ratelimit-reset")
    if remaining == "0" and reset and reset.strip().isdigit():
        return max(0.0, float(reset) - now)
    return None


class HttpStatusError(SourceError):
    """An HTTP error answer (4xx) that is not retried; ``status`` lets a caller tell
    one refusal from another (GitHub App auth: 401 wrong key, 404 not installed)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class HttpClient:
    """A base URL, default headers, and the retry policy."""

    def __init__(
        self,
        base_url: str,
        *,
        name: str,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        max_wait: float = 900.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.name = name
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_wait = max_wait
        self.sleep = sleep
        self.session = requests.Session()
        self.session.headers.update({"User-Agent": "dora-pipeline", **(headers or {})})
        self.requests_sent = 0

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return urljoin(self.base_url, path.lstrip("/"))

    def _backoff(self, attempt: int) -> float:
        delay = min(self.backoff_cap, self.backoff_base * (2**attempt))
        return delay * (0.5 + random.random() / 2)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        json_body: Any = None,
        retry_hook: RetryHook | None = None,
    ) -> requests.Response:
        url = self.url(path)
        where = f"{self.name}: {method} {urlsplit(url).path}"
        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            wait: float | None = None
            try:
                self.requests_sent += 1
                response = self.session.request(
                    method, url, params=params, json=json_body, timeout=self.timeout
                )
            except _TRANSIENT_ERRORS as exc:
                last = type(exc).__name__
                wait = self._backoff(attempt)
            else:
                status = response.status_code
                if status == 429 or (status == 403 and _is_rate_limited(response)):
                    last = f"HTTP {status} (rate limited)"
                    wait = _retry_after_seconds(response, time.time())
                    if wait is None:
                        wait = max(60.0 if status == 403 else 1.0, self._backoff(attempt))
                elif status in RETRY_STATUSES:
                    last = f"HTTP {status}"
                    wait = self._backoff(attempt)
                elif status >= 400:
                    snippet = _snippet(response, _credentials(self.session.headers))
                    raise HttpStatusError(f"{where} failed with HTTP {status}: {snippet}", status)
                elif retry_hook is not None and (hook_wait := retry_hook(response)) is not None:
                    last = "rate limited (vendor error body)"
                    wait = hook_wait
                else:
                    return response
            if attempt == self.max_retries:
                break
            if wait > self.max_wait:
                raise SourceError(
                    f"{where}: asked to wait {wait:.0f}s, longer than the {self.max_wait:.0f}s allowed; "
                    "the partition will be retried by the next run"
                )
            log.info("%s: %s, retrying in %.1fs (attempt %d of %d)", where, last, wait, attempt + 1, self.max_retries)
            self.sleep(wait)
        raise SourceError(f"{where} failed after {self.max_retries + 1} attempts: {last}")

    def get_json(self, path: str, **kwargs: Any) -> Any:
        return self.json("GET", path, **kwargs)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """The response body as JSON. A body that is not valid JSON (a truncated page)
        is retried like a broken connection, then fails with a clear message."""
        last_error = ""
        for attempt in range(self.max_retries + 1):
            response = self.request(method, path, **kwargs)
            try:
                return response.json()
            except (ValueError, json.JSONDecodeError) as exc:
                last_error = f"{exc.__class__.__name__}: {exc}"
                if attempt < self.max_retries:
                    self.sleep(self._backoff(attempt))
        raise SourceError(
            f"{self.name}: {method} {urlsplit(self.url(path)).path} returned invalid JSON "
            f"after {self.max_retries + 1} attempts ({last_error})"
        )


def _is_rate_limited(response: requests.Response) -> bool:
    if response.headers.get("Retry-After") or response.headers.get("x-ratelimit-remaining") == "0":
        return True
    text = response.text[:2000].lower()
    return "rate limit" in text or "abuse" in text


def _credentials(headers: Mapping[str, str]) -> list[str]:
    """Header values that may hold a credential, and their tokens (``Token token=X``:
    ``X``), longest first, so an error body quoting one can be redacted."""
    found: set[str] = set()
    for name, value in headers.items():
        if name.lower() in _PLAIN_HEADERS or not isinstance(value, str):
            continue
        found.add(value)
        found.update(part for part in re.split(r"[\s=]+", value) if len(part) >= 8)
    return sorted(found, key=len, reverse=True)


def _snippet(response: requests.Response, secrets: list[str] = ()) -> str:
    """The start of an error body for the message; vendors sometimes quote the
    credential they refused, so header credentials are masked."""
    text = response.text.strip().replace("\n", " ")
    for secret in secrets:
        text = text.replace(secret, "***")
    return text[:300] or "(empty body)"


@dataclass(frozen=True)
class RetryPolicy:
    """How a vendor source's HTTP client waits and retries. ``timeout``/``max_retries``
    default to DORA_HTTP_TIMEOUT_SECONDS/DORA_HTTP_MAX_RETRIES; tests pass small values
    and a recording ``sleep`` instead of patching anything."""

    timeout: float | None = None
    max_retries: int | None = None
    backoff_base: float = 0.5
    max_wait: float = 900.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    def client(self, settings: Settings, base_url: str, *, name: str, headers: Mapping[str, str]) -> HttpClient:
        return HttpClient(
            base_url,
            name=name,
            headers=headers,
            timeout=self.timeout if self.timeout is not None else settings.http_timeout_seconds,
            max_retries=self.max_retries if self.max_retries is not None else settings.http_max_retries,
            backoff_base=self.backoff_base,
            max_wait=self.max_wait,
            sleep=self.sleep,
        )
