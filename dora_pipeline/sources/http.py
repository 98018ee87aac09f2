"""The HTTP layer every vendor source shares, and the one retry loop behind it.

``RetryLoop.run`` is the only place a source retries: a call makes at most
``max_retries + 1`` attempts (one request each), whatever fails, a refused credential
included: a 401 that a ``RenewableAuth`` (a GitHub App's installation token) answers
with a new credential is one more failed attempt, re-sent at once. Timeouts on every
request; capped exponential backoff with jitter for connection errors, timeouts, 5xx
and bodies that are not valid JSON; ``Retry-After`` and the rate-limit headers honoured
for 429 and rate-limited 403; a hook for vendors whose rate limit is not an HTTP status
(GitHub GraphQL answers 200 with an error body). A wait longer than ``max_wait`` is
refused at once, without sleeping. When the attempts run out the call fails with
``SourceError`` naming the method, the URL path and the last failure, never a header or
a token, so the partition fails whole and nothing partial is loaded. Sources that do not
speak through ``HttpClient`` (ArgoCD's Kubernetes client) run their calls through
``RetryLoop`` too.
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urljoin, urlsplit

import requests

from .base import Source, SourceError

if TYPE_CHECKING:
    from ..config import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

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
# A vendor hook: given an answer that otherwise looks fine and its JSON body, seconds to
# wait before retrying (rate limited), or None to accept it.
RetryHook = Callable[[requests.Response, Any], float | None]


@dataclass(frozen=True)
class Retry:
    """An attempt that failed in a way another attempt may fix.

    ``reason`` ends the failure message when the attempts run out. ``wait`` is what the
    server asked for; None means back off exponentially, but at least ``at_least``.
    """

    reason: str
    wait: float | None = None
    at_least: float = 0.0

    def exhausted(self, where: str, attempts: int) -> str:
        return f"{where} failed after {attempts} attempts: {self.reason}"


class InvalidJson(Retry):
    """A body that is not valid JSON (a truncated page): fetched again like a broken connection."""

    def exhausted(self, where: str, attempts: int) -> str:
        return f"{where} returned invalid JSON after {attempts} attempts ({self.reason})"


@dataclass(frozen=True)
class RetryLoop:
    """The one retry loop: ``run(where, attempt)`` calls ``attempt()`` until it returns
    something other than a ``Retry``, at most ``max_retries + 1`` times, sleeping between
    attempts. ``attempt`` raises to fail at once (a 401 is not worth another try)."""

    max_retries: int = 5
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    max_wait: float = 900.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    @property
    def attempts(self) -> int:
        return self.max_retries + 1

    def backoff(self, attempt: int) -> float:
        """Exponential in the attempt, capped, jittered into [half, full] so parallel
        clients do not retry in step."""
        delay = min(self.backoff_cap, self.backoff_base * (2**attempt))
        return delay * (0.5 + random.random() / 2)

    def run(self, where: str, attempt: Callable[[], T | Retry]) -> T:
        last = Retry("no attempt")
        for number in range(self.attempts):
            outcome = attempt()
            if not isinstance(outcome, Retry):
                return outcome
            last = outcome
            if number == self.max_retries:
                break
            wait = outcome.wait if outcome.wait is not None else max(outcome.at_least, self.backoff(number))
            if wait > self.max_wait:
                # An hour-long sleep inside a run holds a worker and a lock for nothing.
                raise SourceError(
                    f"{where}: asked to wait {wait:.0f}s, longer than the {self.max_wait:.0f}s allowed; "
                    "the partition will be retried by the next run"
                )
            log.info("%s: %s, retrying in %.1fs (attempt %d of %d)",
                     where, outcome.reason, wait, number + 1, self.max_retries)
            self.sleep(wait)
        raise SourceError(last.exhausted(where, self.attempts))


def rate_limit_wait(headers: Mapping[str, str], now: float, *, limited: bool = False) -> float | None:
    """Seconds an answer's (case-insensitive) headers ask us to wait: ``Retry-After``
    (delta or HTTP date), else until the rate-limit reset (``x-ratelimit-reset``, epoch
    seconds) when the limit is spent (``x-ratelimit-remaining: 0``, or ``limited``: the
    body said so). None when the answer names no wait."""
    value = (headers.get("Retry-After") or "").strip()
    if value.isdigit():
        return float(value)
    if value:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError):
            pass
    reset = (headers.get("x-ratelimit-reset") or "").strip()
    if reset.isdigit() and (limited or headers.get("x-ratelimit-remaining") == "0"):
        # One second past the reset: the window turns over on the vendor's clock, not ours.
        return max(0.0, float(reset) - now) + 1.0
    return None


class RenewableAuth(requests.auth.AuthBase):
    """requests auth whose credential can be renewed when the server refuses it.

    ``HttpClient`` asks ``renewed(response)`` about every 401: True when a new credential
    is in place, so the next attempt (counted like any other) may succeed; False when
    the refusal is final and the call fails with the 401."""

    def renewed(self, response: requests.Response) -> bool:
        return False


class HttpStatusError(SourceError):
    """An HTTP error answer (4xx) that is not retried; ``status`` lets a caller tell
    one refusal from another (GitHub App auth: 401 wrong key, 404 not installed)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class HttpClient:
    """A base URL, default headers, and the retry loop every call goes through."""

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
        self.retry = RetryLoop(max_retries=max_retries, backoff_base=backoff_base, backoff_cap=backoff_cap,
                               max_wait=max_wait, sleep=sleep)
        self.session = requests.Session()
        self.session.headers.update({"User-Agent": "dora-pipeline", **(headers or {})})
        self.requests_sent = 0

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return urljoin(self.base_url, path.lstrip("/"))

    def json_response(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        json_body: Any = None,
        retry_hook: RetryHook | None = None,
    ) -> tuple[Any, requests.Response]:
        """The body as JSON and the answer (for headers such as ``Link``). A body that is
        not valid JSON is fetched again within the same attempts as any other failure."""
        url = self.url(path)
        response, body = self.retry.run(
            self._where(method, url), lambda: self._attempt(method, url, params, json_body, retry_hook)
        )
        return body, response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.json_response(method, path, **kwargs)[0]

    def get_json(self, path: str, **kwargs: Any) -> Any:
        return self.json("GET", path, **kwargs)

    def _where(self, method: str, url: str) -> str:
        return f"{self.name}: {method} {urlsplit(url).path}"

    def _attempt(
        self, method: str, url: str, params: Any, json_body: Any, hook: RetryHook | None
    ) -> tuple[requests.Response, Any] | Retry:
        """One request: the answer and its JSON body, or why to try again."""
        try:
            self.requests_sent += 1
            response = self.session.request(method, url, params=params, json=json_body, timeout=self.timeout)
        except _TRANSIENT_ERRORS as exc:
            return Retry(type(exc).__name__)
        status = response.status_code
        if status == 429 or (status == 403 and _is_rate_limited(response)):
            # Without a wait named, secondary limits (403) want at least a minute.
            return Retry(f"HTTP {status} (rate limited)", rate_limit_wait(response.headers, time.time()),
                         at_least=60.0 if status == 403 else 1.0)
        if status in RETRY_STATUSES:
            return Retry(f"HTTP {status}")
        auth = self.session.auth
        if status == 401 and isinstance(auth, RenewableAuth) and auth.renewed(response):
            return Retry("HTTP 401 (credential renewed)", wait=0.0)
        if status >= 400:
            snippet = _snippet(response, _credentials(self.session.headers))
            raise HttpStatusError(f"{self._where(method, url)} failed with HTTP {status}: {snippet}", status)
        try:
            body = response.json()
        except ValueError as exc:
            return InvalidJson(f"{type(exc).__name__}: {exc}")
        if hook is not None and (wait := hook(response, body)) is not None:
            return Retry("rate limited (vendor error body)", wait)
        return response, body


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
    backoff_cap: float = 30.0

    def timeout_for(self, settings: Settings) -> float:
        return self.timeout if self.timeout is not None else settings.http_timeout_seconds

    def loop(self, settings: Settings) -> RetryLoop:
        """The retry loop for a source that does not call through ``HttpClient``."""
        return RetryLoop(
            max_retries=self.max_retries if self.max_retries is not None else settings.http_max_retries,
            backoff_base=self.backoff_base,
            backoff_cap=self.backoff_cap,
            max_wait=self.max_wait,
            sleep=self.sleep,
        )

    def client(self, settings: Settings, base_url: str, *, name: str, headers: Mapping[str, str]) -> HttpClient:
        loop = self.loop(settings)
        return HttpClient(
            base_url,
            name=name,
            headers=headers,
            timeout=self.timeout_for(settings),
            max_retries=loop.max_retries,
            backoff_base=loop.backoff_base,
            backoff_cap=loop.backoff_cap,
            max_wait=loop.max_wait,
            sleep=loop.sleep,
        )


class PagedApiSource(Source):
    """A vendor source reading one paged REST API through ``HttpClient``: its page size and
    its retry policy (tests pass small waits and a recording ``sleep``)."""

    def __init__(
        self,
        *,
        page_size: int = 100,
        backoff_base: float = 0.5,
        max_wait: float = 900.0,
        timeout: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.page_size = page_size
        self.retry = RetryPolicy(timeout, None, backoff_base, max_wait, sleep)
