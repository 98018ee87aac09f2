"""GitHub App authentication: installation tokens instead of a personal access token.

As GitHub documents it: the app signs a JSON Web Token with its private key (RS256,
``iss`` = the app id, valid at most ten minutes; ``iat`` is set a minute in the past
against clock drift), finds the installation of an organisation or repository with
``GET /orgs/{org}/installation`` or ``GET /repos/{owner}/{repo}/installation`` (unless
GITHUB_APP_INSTALLATION_ID names it), and exchanges the JWT for an installation token
with ``POST /app/installations/{id}/access_tokens``. That token is then a bearer token
for REST and GraphQL alike. It expires after an hour, so it is renewed five minutes
before its ``expires_at``, and once more when GitHub answers 401 anyway (a token
revoked or expired early): that refused request is one of the call's attempts, so a
call still makes at most ``attempts`` requests; a second 401 in a row is final. A
backfill runs for hours on fresh tokens.

Nothing here logs or raises the key, a JWT or a token: errors name the app, the
installation and the organisation or repository, and say what to fix.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ..config import Settings
from .base import SourceError
from .http import HttpClient, HttpStatusError, RenewableAuth, RetryPolicy

#: GitHub refuses a JWT valid for more than ten minutes; nine leaves room for drift.
JWT_LIFETIME_SECONDS = 540
#: ``iat`` this far in the past, as GitHub recommends against clock drift.
JWT_BACKDATE_SECONDS = 60
#: an installation token is renewed this long before its ``expires_at``.
REFRESH_MARGIN_SECONDS = 300.0


def load_private_key(pem: str) -> rsa.RSAPrivateKey:
    """The app's RSA key from its PEM text; a clear error that never quotes it."""
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise SourceError(
            "github: GITHUB_APP_PRIVATE_KEY is not a readable PEM private key "
            "(download a new one from the app's settings page)"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SourceError("github: GITHUB_APP_PRIVATE_KEY is not an RSA key; GitHub Apps use RSA")
    return key


def app_jwt(app_id: str, key: rsa.RSAPrivateKey, now: float) -> str:
    """The JWT that authenticates as the app itself (RS256)."""
    issued = int(now) - JWT_BACKDATE_SECONDS
    claims = {"iat": issued, "exp": issued + JWT_LIFETIME_SECONDS, "iss": app_id}
    return jwt.encode(claims, key, algorithm="RS256")


@dataclass(frozen=True)
class InstallationToken:
    value: str
    expires_at: float  # epoch seconds


def _expiry(body: Any) -> float:
    try:
        return datetime.fromisoformat(str(body["expires_at"])).timestamp()
    except (KeyError, TypeError, ValueError):
        raise SourceError(
            "github: an installation token answer has no readable expires_at"
        ) from None


class GitHubAppTokens:
    """Installation tokens of one GitHub App, one per installation, shared by every
    thread of an extract. An owner (organisation or user) is mapped to its installation
    once; its token is reused until five minutes before it expires."""

    def __init__(
        self,
        settings: Settings,
        rest_base: str,
        retry: RetryPolicy,
        *,
        orgs: list[str],
        repos: list[str],
        clock: Callable[[], float] = time.time,
        refresh_margin: float = REFRESH_MARGIN_SECONDS,
    ) -> None:
        self.app_id = settings.github_app_id
        self.key = load_private_key(settings.github_app_private_key.get())
        self.fixed_installation = settings.github_app_installation_id
        self.clock = clock
        self.refresh_margin = refresh_margin
        self.client: HttpClient = retry.client(
            settings,
            rest_base,
            name="github-app",
            headers={
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
            },
        )
        # How each owner's installation is found: organisations by their own endpoint,
        # owners of GITHUB_REPOS entries through their first listed repository.
        self.lookup: dict[str, tuple[str, str]] = {}
        for repo in repos:
            self.lookup.setdefault(repo.split("/")[0].lower(), ("repository", repo))
        for org in orgs:
            self.lookup[org.lower()] = ("organisation", org)
        self._installations: dict[str, str] = {}
        self._tokens: dict[str, InstallationToken] = {}
        self._lock = threading.Lock()
        self.tokens_issued = 0

    def token(self, owner: str) -> str:
        """A valid installation token for the owner's repositories."""
        with self._lock:
            installation = self._installation(owner.lower())
            cached = self._tokens.get(installation)
            if cached is None or self.clock() >= cached.expires_at - self.refresh_margin:
                cached = self._tokens[installation] = self._new_token(installation)
            return cached.value

    def invalidate(self, owner: str, token: str) -> None:
        """GitHub refused ``token``: the next ``token()`` call gets a new one."""
        with self._lock:
            installation = self._installations.get(owner.lower(), self.fixed_installation)
            cached = self._tokens.get(installation)
            if cached is not None and cached.value == token:
                del self._tokens[installation]

    # -- the app's own endpoints (JWT) ------------------------------------------------

    def _as_app(self, method: str, path: str) -> Any:
        # The JWT sits in the session headers, so HttpClient masks it in any error body.
        self.client.session.headers["Authorization"] = (
            f"Bearer {app_jwt(self.app_id, self.key, self.clock())}"
        )
        return self.client.json(method, path)

    def _installation(self, owner: str) -> str:
        if self.fixed_installation:
            return self.fixed_installation
        found = self._installations.get(owner)
        if found is None:
            kind, name = self.lookup.get(owner, ("organisation", owner))
            path = (
                f"orgs/{name}/installation"
                if kind == "organisation"
                else f"repos/{name}/installation"
            )
            try:
                body = self._as_app("GET", path)
            except HttpStatusError as exc:
                raise self._refusal(exc, f"{kind} {name!r}") from None
            if not isinstance(body, dict) or not str(body.get("id", "")).isdigit():
                raise SourceError(f"github: GET /{path} answered without an installation id")
            found = self._installations[owner] = str(body["id"])
        return found

    def _new_token(self, installation: str) -> InstallationToken:
        path = f"app/installations/{installation}/access_tokens"
        try:
            body = self._as_app("POST", path)
        except HttpStatusError as exc:
            raise self._refusal(exc, f"installation {installation}") from None
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("token"), str)
            or not body["token"]
        ):
            raise SourceError(f"github: POST /{path} answered without a token")
        self.tokens_issued += 1
        return InstallationToken(body["token"], _expiry(body))

    def _refusal(self, exc: HttpStatusError, what: str) -> SourceError:
        """One line that says which of the app's setup problems GitHub reported."""
        app = f"GitHub App {self.app_id}"
        if exc.status == 401:
            return SourceError(
                f"github: {app} was refused (HTTP 401) while authenticating for {what}: "
                "GITHUB_APP_PRIVATE_KEY is not a current key of this app, or GITHUB_APP_ID is wrong"
            )
        installation = what.startswith("installation")
        if not installation and exc.status == 404:
            return SourceError(
                f"github: {app} is not installed on {what}: install it there "
                "(docs/sources/github.md) or remove it from GITHUB_ORGS/GITHUB_REPOS"
            )
        if installation and exc.status in (403, 404):
            state = "suspended" if exc.status == 403 else "gone (uninstalled or revoked)"
            return SourceError(
                f"github: {app}'s {what} is {state} (HTTP {exc.status}): reinstall the app, "
                "or fix GITHUB_APP_INSTALLATION_ID"
            )
        return SourceError(f"github: {app} could not authenticate for {what}: {exc}")


class InstallationAuth(RenewableAuth):
    """requests auth for one HTTP session (one thread): the current owner's installation
    token on every request. A 401 drops the refused token, and ``HttpClient`` re-sends
    with a new one as the call's next attempt; a 401 right after another (no other
    answer between) is GitHub's final answer, so a dead app never loops."""

    def __init__(
        self, tokens: GitHubAppTokens, session: requests.Session, owner: Callable[[], str]
    ) -> None:
        self.tokens = tokens
        self.session = session
        self.owner = owner
        self._refused_last = False

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        header = f"Bearer {self.tokens.token(self.owner())}"
        request.headers["Authorization"] = header
        # Also in the session headers: HttpClient masks those in error messages.
        self.session.headers["Authorization"] = header
        request.register_hook("response", self._answered)
        return request

    def _answered(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        if response.status_code != 401:
            self._refused_last = False
        return response

    def renewed(self, response: requests.Response) -> bool:
        if self._refused_last:
            return False
        self._refused_last = True
        token = response.request.headers.get("Authorization", "").removeprefix("Bearer ")
        self.tokens.invalidate(self.owner(), token)
        return True
