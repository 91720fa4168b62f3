"""Bearer tokens: the operator's admin token, and the token a registered client is given.

Tokens are compared in constant time (``hmac.compare_digest``), and a client's token is
stored only as its SHA-256: a token is 256 random bits, so a plain hash is enough, and a
reader of Redis learns nothing it could present.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from .errors import Unauthorized

BEARER = "bearer"


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != BEARER or not token or " " in token:
        return None
    return token


def same_secret(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode())


def require_admin(admin_token: str, authorization: str | None) -> None:
    """Operator endpoints are open while no admin token is configured; once one is, they
    need it (401 otherwise)."""
    if not admin_token:
        return
    given = bearer_token(authorization)
    if given is None or not same_secret(given, admin_token):
        raise Unauthorized("this endpoint needs Authorization: Bearer <EMOSTREAM_ADMIN_TOKEN>")


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
