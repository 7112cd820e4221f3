"""Configuration: defaults, env and flag precedence, and errors that name the setting.

The tests over `SETTINGS` cover every declared setting, so a new one is tested (and
must get an example below) as soon as it is declared.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest

from authsvc.config import SETTINGS, Setting, Settings, add_flags, flag_values, load_settings
from authsvc.errors import ConfigError

README = Path(__file__).resolve().parents[1] / "README.md"
# Readable files: the TLS settings only check that (the server loads the PEM later).
READABLE, OTHER_READABLE = str(Path(__file__).resolve()), str(README)
# A file that a writable directory could hold (the audit trail; only checked, not created).
NEW_FILE = str(Path(__file__).resolve().parent / "audit-example.log")
# The TLS settings are valid only together, so each setting is tried with them all set.
BASE_ENV = {
    "AUTHSVC_TLS_CERT_FILE": READABLE,
    "AUTHSVC_TLS_KEY_FILE": READABLE,
    "AUTHSVC_TLS_CLIENT_CA_FILE": READABLE,
}

#: field -> (raw text, its value (not the default), a bad raw text or None if none is).
EXAMPLES: dict[str, tuple[str, Any, str | None]] = {
    "listen": ("0.0.0.0:6000", "0.0.0.0:6000", "6000"),
    "redis_url": ("rediss://:pw@redis.internal:6380/1", "rediss://:pw@redis.internal:6380/1",
                  "http://user:hunter2@redis"),
    "data_dir": ("/srv/authsvc", Path("/srv/authsvc"), " "),
    "issuer": ("https://auth.example", "https://auth.example", " "),
    "default_audience": ("orders", "orders", ""),
    "audiences": ("billing, search", ("billing", "search"), None),
    "validate_require_audience": ("yes", True, "yes please"),
    "access_ttl_seconds": ("60", 60, "0"),
    "refresh_ttl_seconds": ("3600", 3600, "59"),
    "session_max_seconds": ("86400", 86400, "ten"),
    "refresh_grace_seconds": ("0", 0, "61"),
    "leeway_seconds": ("0", 0, "-1"),
    "signing_alg": ("es256", "ES256", "RS256"),
    "signing_key_file": ("/etc/authsvc/key.pem", "/etc/authsvc/key.pem", None),
    "verify_key_files": ("a.pem,b.pem", ("a.pem", "b.pem"), None),
    "key_encryption_key_file": (OTHER_READABLE, OTHER_READABLE, "/nonexistent/kek"),
    "key_rotation_seconds": ("2592000", 2592000, "-1"),
    "jwks_cache_seconds": ("300", 300, "0"),
    "log_level": ("debug", "DEBUG", "LOUD"),
    "tls_cert_file": (OTHER_READABLE, OTHER_READABLE, "/nonexistent/cert.pem"),
    "tls_key_file": (OTHER_READABLE, OTHER_READABLE, "/nonexistent/key.pem"),
    "tls_client_ca_file": (OTHER_READABLE, OTHER_READABLE, "/nonexistent/ca.pem"),
    "redis_socket_timeout": ("0.5", 0.5, "0"),
    "redis_connect_timeout": ("5", 5.0, "nan"),
    "redis_pool_size": ("8", 8, "0"),
    "redis_retries": ("0", 0, "11"),
    "argon2_memory_kib": ("65536", 65536, "1024"),
    "argon2_time_cost": ("3", 3, "0"),
    "argon2_parallelism": ("4", 4, "65"),
    "hash_threads": ("200", 200, "0"),
    "login_max_failures": ("5", 5, "0"),
    "login_throttle_base_seconds": ("0.25", 0.25, "0"),
    "login_throttle_max_seconds": ("60", 60.0, "inf"),
    "login_source_max_failures": ("20", 20, "0"),
    "login_source_window_seconds": ("60", 60.0, "0"),
    "login_global_max_failures": ("5000", 5000, "0"),
    "login_global_window_seconds": ("3600", 3600.0, "-5"),
    "login_queue_size": ("8", 8, "0"),
    "login_wait_seconds": ("0.5", 0.5, "0"),
    "health_interval_seconds": ("0.2", 0.2, "0"),
    "revocation_view": ("false", False, "maybe"),
    "workers": ("4", 4, "0"),
    "grace_shutdown_seconds": ("30", 30.0, "-1"),
    "admin_scope": ("ops:admin", "ops:admin", " "),
    "admin_identities": ("spiffe://a, b", ("spiffe://a", "b"), None),
    "metrics_listen": ("[::1]:9464", "[::1]:9464", "9464"),
    "audit_log": (NEW_FILE, NEW_FILE, "/nonexistent/audit.log"),
    "allow_plaintext": ("true", True, "maybe"),
    "reflection": ("off", False, "2"),
    "redis_min_replicas_ack": ("2", 2, "-1"),
    "shutdown_drain_seconds": ("0", 0.0, "61"),
}  # fmt: skip


def example(setting: Setting) -> tuple[str, Any, str | None]:
    assert setting.name in EXAMPLES, f"add an example for the new setting {setting.name}"
    return EXAMPLES[setting.name]


def flags(*argv: str) -> dict[str, str | None]:
    """The flag values of `authsvc serve ARGV` (the CLI adds its flags with `add_flags`)."""
    parser = argparse.ArgumentParser()
    add_flags(parser)
    return flag_values(parser.parse_args(argv))


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_every_setting_parses_from_its_variable_and_from_its_flag(setting: Setting) -> None:
    raw, value, _ = example(setting)
    base = getattr(load_settings(env=BASE_ENV), setting.name)
    assert value != base, "the example must differ from the default"
    from_env = load_settings(env={**BASE_ENV, setting.env: raw})
    from_flag = load_settings(env=BASE_ENV, flags=flags(setting.flag, raw))
    assert getattr(from_env, setting.name) == value == getattr(from_flag, setting.name)
    # The flag wins over the variable.
    both = load_settings(
        env={**BASE_ENV, setting.env: raw}, flags=flags(setting.flag, setting.text(base))
    )
    assert getattr(both, setting.name) == base


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_every_default_is_a_value_its_own_parser_accepts(setting: Setting) -> None:
    assert setting.parser(setting.text(setting.default)) == setting.default


@pytest.mark.parametrize(
    "setting", [s for s in SETTINGS if example(s)[2] is not None], ids=lambda s: s.name
)
def test_a_bad_value_names_the_variable_or_flag_and_what_it_accepts(setting: Setting) -> None:
    bad = example(setting)[2]
    assert bad is not None
    with pytest.raises(ConfigError, match=re.escape(setting.env)) as from_env:
        load_settings(env={**BASE_ENV, setting.env: bad})
    with pytest.raises(ConfigError, match=re.escape(setting.flag)) as from_flag:
        load_settings(env=BASE_ENV, flags=flags(setting.flag, bad))
    for excinfo in (from_env, from_flag):
        assert setting.parser.accepts in str(excinfo.value)
        if setting.secret:
            assert bad not in str(excinfo.value)


def test_readme_documents_every_setting_and_its_default() -> None:
    text = README.read_text()
    section = text[text.index("## Configuration") :]
    section = section[: section.index("\n## ")]
    rows = dict(re.findall(r"^\| `(AUTHSVC_\w+)` \| ([^|]+) \|", section, re.MULTILINE))
    assert set(rows) == {s.env for s in SETTINGS}
    assert set(re.findall(r"AUTHSVC_\w*[A-Z0-9]", text)) <= set(rows), "README names unknowns"
    for setting in SETTINGS:
        cell = rows[setting.env].strip()
        if cell == "empty":
            assert setting.text(setting.default) == "", setting.env
        elif re.fullmatch(r"`[^`]+`", cell):
            assert setting.parser(cell.strip("`")) == setting.default, setting.env


def test_defaults() -> None:
    s = load_settings(env={})
    assert s.listen == "127.0.0.1:50051"
    assert s.uses_embedded_redis and s.redis_url == ""
    assert (s.access_ttl_seconds, s.refresh_ttl_seconds) == (900, 14 * 24 * 3600)
    assert s.refresh_grace_seconds == 10 and s.signing_alg == "EdDSA"
    assert (s.argon2_memory_kib, s.argon2_time_cost, s.argon2_parallelism) == (19456, 2, 1)
    assert (s.login_source_max_failures, s.login_source_window_seconds) == (100, 600.0)
    assert (s.login_global_max_failures, s.login_global_window_seconds) == (1000, 600.0)
    assert (s.login_queue_size, s.login_wait_seconds) == (64, 10.0)


def test_env_then_flags() -> None:
    env = {
        "AUTHSVC_LISTEN": "0.0.0.0:6000",
        "AUTHSVC_ACCESS_TTL_SECONDS": "60",
        "AUTHSVC_AUDIENCES": "billing, search",
        "AUTHSVC_SIGNING_ALG": "es256",
        "AUTHSVC_DATA_DIR": "/srv/authsvc",
    }
    s = load_settings(env=env, flags=flags("--listen", "127.0.0.1:7000", "--workers", "2"))
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


def test_settings_are_immutable() -> None:
    with pytest.raises(AttributeError):
        Settings().listen = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    "name",
    ["AUTHSVC_HEALTH_INTERVAL_SECONDS", "AUTHSVC_LOGIN_THROTTLE_BASE_SECONDS",
     "AUTHSVC_REDIS_SOCKET_TIMEOUT", "AUTHSVC_LOGIN_SOURCE_MAX_FAILURES",
     "AUTHSVC_LOGIN_GLOBAL_MAX_FAILURES", "AUTHSVC_LOGIN_SOURCE_WINDOW_SECONDS",
     "AUTHSVC_LOGIN_GLOBAL_WINDOW_SECONDS", "AUTHSVC_LOGIN_QUEUE_SIZE"],
)  # fmt: skip
def test_zero_is_refused_where_it_would_disable_a_safeguard(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings(env={name: "0"})


def test_a_bad_redis_url_is_named_but_never_echoed() -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(env={"AUTHSVC_REDIS_URL": "http://user:hunter2@redis"})
    assert "AUTHSVC_REDIS_URL" in str(excinfo.value) and "hunter2" not in str(excinfo.value)


def test_automatic_rotation_needs_the_ring_and_a_period_past_the_jwks_cache() -> None:
    with pytest.raises(ConfigError, match="AUTHSVC_SIGNING_KEY_FILE"):
        load_settings(env={"AUTHSVC_KEY_ROTATION_SECONDS": "86400",
                           "AUTHSVC_SIGNING_KEY_FILE": "/etc/authsvc/key.pem"})  # fmt: skip
    with pytest.raises(ConfigError, match="AUTHSVC_JWKS_CACHE_SECONDS"):
        load_settings(env={"AUTHSVC_KEY_ROTATION_SECONDS": "599"})
    assert load_settings(env={"AUTHSVC_KEY_ROTATION_SECONDS": "600"}).key_rotation_seconds == 600
