"""Who may call: the admin token and signed user tokens (HS256, algorithm pinned, exp and aud
required). Every bad token is a 401 with the one error shape."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from emostream.errors import ConfigError, Forbidden, Unauthorized
from emostream.identity import require_admin, user_from_token
from emostream.settings import Settings

SECRET = "a-token-secret-long-enough-for-hs512-" + "x" * 32
TOKENS = Settings(token_secret=SECRET)


def token(key: str = SECRET, algorithm: str = "HS256", **claims: Any) -> str:
    payload = {"sub": "viewer-1", "aud": "emostream", "exp": int(time.time()) + 60, **claims}
    return "Bearer " + jwt.encode(payload, key, algorithm=algorithm)


def test_admin_calls_need_the_configured_token() -> None:
    with pytest.raises(Forbidden):
        require_admin(Settings(), "Bearer anything")
    configured = Settings(admin_token="t0k3n")
    for header in [None, "", "Bearer", "Basic t0k3n", "Bearer t0k3", "Bearer t0k3n2"]:
        with pytest.raises(Unauthorized):
            require_admin(configured, header)
    require_admin(configured, "Bearer t0k3n")


def test_the_user_is_the_subject_of_a_valid_token() -> None:
    assert user_from_token(TOKENS, token()) == "viewer-1"
    assert user_from_token(Settings(), None) is None  # anonymous by default


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer not-a-jwt",
        token(key="another-secret-" + "y" * 64),  # forged
        token(exp=int(time.time()) - 10),  # expired
        token(aud="someone-else"),  # wrong audience
        token(exp=None),  # no expiry at all
        token(sub="has space"),  # a subject that is no user id
        "Bearer " + jwt.encode({"sub": "x", "aud": "emostream", "exp": 2**40}, "", "none"),
        token(algorithm="HS512"),  # the algorithm is pinned to HS256
    ],
)
def test_bad_user_tokens_are_refused(authorization: str | None) -> None:
    with pytest.raises(Unauthorized) as caught:
        user_from_token(TOKENS, authorization)
    assert caught.value.status == 401 and caught.value.code == "unauthorized"


def test_a_short_token_secret_is_refused() -> None:
    # RFC 7518: an HS256 key is at least as long as the hash (32 bytes).
    with pytest.raises(ConfigError, match="EMOSTREAM_TOKEN_SECRET"):
        Settings(token_secret="short")


def test_secrets_stay_out_of_the_settings_repr() -> None:
    shown = repr(Settings(admin_token="admin-secret", token_secret=SECRET))
    assert "admin-secret" not in shown and SECRET not in shown
