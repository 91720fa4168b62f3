"""Who may call: the admin bearer token, and optional signed user tokens.

Poll admin calls carry ``Authorization: Bearer <EMOSTREAM_ADMIN_TOKEN>``: 401 without the
right token, 403 on a role where no admin token is configured (unlike /v1/stats, which is open
until a token is set: ``auth.require_admin``). Bearer parsing and the constant-time comparison
are auth.py's.

With ``EMOSTREAM_TOKEN_SECRET`` set, reactions and votes need a user token: an HS256 JWT
whose ``sub`` is the user id. The algorithm is pinned (a token claiming ``none`` or any
other algorithm is refused), and ``exp`` and ``aud`` are required and checked, so forged,
expired and wrong-audience tokens are all 401. Without a secret users are anonymous and name
themselves in ``user_id``, as before.
"""

from __future__ import annotations

import jwt

from .auth import bearer_token, same_secret
from .contract import USER_ID, USER_ID_RULE
from .errors import Forbidden, Unauthorized
from .settings import Settings

ALGORITHM = "HS256"


def is_admin(settings: Settings, authorization: str | None) -> bool:
    token = bearer_token(authorization)
    if not settings.admin_token or token is None:
        return False
    return same_secret(token, settings.admin_token)


def require_admin(settings: Settings, authorization: str | None) -> None:
    if not settings.admin_token:
        raise Forbidden("admin calls are disabled here: no EMOSTREAM_ADMIN_TOKEN is set")
    if not is_admin(settings, authorization):
        raise Unauthorized("this call needs Authorization: Bearer <admin token>", "Authorization")


def user_from_token(settings: Settings, authorization: str | None) -> str | None:
    """The user id of a request: the token's ``sub`` when user tokens are on (401 for a
    missing or bad token), None when they are off (the body names the user)."""
    if not settings.token_secret:
        return None
    token = bearer_token(authorization)
    if token is None:
        raise Unauthorized("this call needs Authorization: Bearer <user token>", "Authorization")
    try:
        claims = jwt.decode(
            token,
            settings.token_secret,
            algorithms=[ALGORITHM],
            audience=settings.token_audience,
            options={"require": ["exp", "sub", "aud"]},
        )
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"invalid user token: {exc}", "Authorization") from None
    subject = claims.get("sub")
    if not isinstance(subject, str) or not USER_ID.fullmatch(subject):
        raise Unauthorized(f"the token's sub must be {USER_ID_RULE}", "Authorization")
    return subject
