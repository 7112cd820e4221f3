"""Configuration: defaults, env and flag precedence, and errors that name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from authsvc.config import Settings, load_settings
from authsvc.errors import ConfigError


def test_defaults() -> None:
    s = load_settings(env={})
    assert s.listen == "127.0.0.1:50051"
    assert s.uses_embedded_redis and s.redis_url == ""
    assert (s.access_ttl_seconds, s.refresh_ttl_seconds) == (900, 14 * 24 * 3600)
    assert s.refresh_grace_seconds == 10 and s.signing_alg == "EdDSA"
    assert (s.argon2_memory_kib, s.argon2_time_cost, s.argon2_parallelism) == (19456, 2, 1)


def test_env_then_flags() -> None:
    env = {
        "AUTHSVC_LISTEN": "0.0.0.0:6000",
        "AUTHSVC_ACCESS_TTL_SECONDS": "60",
        "AUTHSVC_AUDIENCES": "billing, search",
        "AUTHSVC_SIGNING_ALG": "es256",
        "AUTHSVC_DATA_DIR": "/srv/authsvc",
    }
    s = load_settings(env=env, overrides={"listen": "127.0.0.1:7000", "workers": "2"})
    assert s.listen == "127.0.0.1:7000" and s.workers == 2 and s.access_ttl_seconds == 60
    assert s.allowed_audiences == {"authsvc", "billing", "search"}
    assert s.signing_alg == "ES256" and s.data_dir == Path("/srv/authsvc")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AUTHSVC_LISTEN", "50051"),
        ("AUTHSVC_REDIS_URL", "http://localhost"),
        ("AUTHSVC_ACCESS_TTL_SECONDS", "0"),
        ("AUTHSVC_ACCESS_TTL_SECONDS", "ten"),
        ("AUTHSVC_REFRESH_GRACE_SECONDS", "61"),
        ("AUTHSVC_REFRESH_GRACE_SECONDS", "-1"),
        ("AUTHSVC_SIGNING_ALG", "RS256"),
        ("AUTHSVC_LOG_LEVEL", "LOUD"),
        ("AUTHSVC_ARGON2_MEMORY_KIB", "1024"),
        ("AUTHSVC_ISSUER", " "),
        ("AUTHSVC_TYPO", "1"),
    ],
)
def test_bad_values_fail_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings(env={name: value})


def test_bad_flag_names_the_flag() -> None:
    with pytest.raises(ConfigError, match="--workers"):
        load_settings(env={}, overrides={"workers": "0"})


def test_settings_are_immutable() -> None:
    with pytest.raises(AttributeError):
        Settings().listen = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    "name",
    ["AUTHSVC_HEALTH_INTERVAL_SECONDS", "AUTHSVC_LOGIN_THROTTLE_BASE_SECONDS",
     "AUTHSVC_REDIS_SOCKET_TIMEOUT"],
)  # fmt: skip
def test_zero_is_refused_where_it_would_disable_a_safeguard(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings(env={name: "0"})


def test_a_bad_redis_url_is_named_but_never_echoed() -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(env={"AUTHSVC_REDIS_URL": "http://user:hunter2@redis"})
    assert "AUTHSVC_REDIS_URL" in str(excinfo.value) and "hunter2" not in str(excinfo.value)
