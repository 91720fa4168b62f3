from __future__ import annotations

import os

import pytest

from emostream.errors import ConfigError
from emostream.settings import Settings, default_data_dir


def test_defaults_follow_the_contract() -> None:
    s = Settings.from_env({})
    assert (s.redis_url, s.window_s, s.top_n, s.scale) == (None, 2.0, 5, 1000)
    assert (s.flush_interval_ms, s.flush_max, s.window_ms) == (500, 20000, 2000)


def test_environment_is_cast_and_overrides_win() -> None:
    env = {
        "EMOSTREAM_WINDOW_S": "1.5",
        "EMOSTREAM_TOP_N": "3",
        "EMOSTREAM_ALLOWED_EMOJIS": "🔥, 😂,",
        "EMOSTREAM_PORT": "9000",
    }
    s = Settings.from_env(env, port=9100, host=None)
    assert (s.window_ms, s.top_n, s.allowed_emojis, s.port) == (1500, 3, ("🔥", "😂"), 9100)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EMOSTREAM_TOP_N", "five"),
        ("EMOSTREAM_TOP_N", "0"),
        ("EMOSTREAM_WINDOW_S", "0.01"),
        ("EMOSTREAM_FLUSH_MAX", "-1"),
        ("EMOSTREAM_REPLAY_MAX", "0"),
        ("EMOSTREAM_CLOSE_MAX_DELAY_MS", "0"),
        ("EMOSTREAM_PORT", "0"),
        ("EMOSTREAM_PORT", "70000"),
        ("EMOSTREAM_SEND_TIMEOUT_S", "0"),
        ("EMOSTREAM_SERVER", "gunicorn"),
        ("EMOSTREAM_MAX_HEADER_BYTES", "100"),
        ("EMOSTREAM_BODY_TIMEOUT_S", "0"),
        ("EMOSTREAM_REGISTRATION_BURST", "0"),
    ],
)
def test_bad_values_fail_loudly_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match="EMOSTREAM_"):
        Settings.from_env({name: value})


def test_repr_hides_the_redis_password() -> None:
    s = Settings.from_env({"EMOSTREAM_REDIS_URL": "redis://user:s3cret@host:6379/0"})
    assert "s3cret" not in repr(s)
    assert "***" in repr(s)


def test_the_data_dir_is_per_user_unless_set() -> None:
    assert default_data_dir({"XDG_DATA_HOME": "/srv/xdg"}) == "/srv/xdg/emostream"
    home = os.path.expanduser("~")
    assert default_data_dir({}) == os.path.join(home, ".local", "share", "emostream")
    assert Settings.from_env({"EMOSTREAM_DATA_DIR": "/data"}).data_dir == "/data"
    assert Settings.from_env({"EMOSTREAM_DATA_DIR": "/data"}, data_dir="/elsewhere").data_dir == (
        "/elsewhere"
    )
