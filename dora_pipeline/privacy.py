"""Respondent pseudonyms: a keyed hash, so a pseudonym cannot be recomputed from a
user ref without the key (a plain hash of ``user:default/jane`` could)."""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from hashlib import sha256

from .config import Settings

log = logging.getLogger(__name__)


def pseudonym_key(settings: Settings) -> bytes:
    """DORA_PSEUDONYM_KEY, else a random key kept in $DORA_HOME/pseudonym.key (created once).

    The key must stay the same across runs, or the same person counts twice in a survey.
    """
    if settings.pseudonym_key:
        return settings.pseudonym_key.get().encode()
    path = settings.home / "pseudonym.key"
    if not path.exists():
        settings.home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
        log.warning(
            "DORA_PSEUDONYM_KEY is not set; generated a key in %s. Set DORA_PSEUDONYM_KEY in "
            "production so pseudonyms survive a new DORA_HOME.", path
        )
    return path.read_text().strip().encode()


def pseudonymise(user_ref: str, key: bytes) -> str:
    """The respondent's pseudonym: HMAC-SHA256 of the normalised user ref."""
    return hmac.new(key, user_ref.strip().lower().encode(), sha256).hexdigest()[:32]
