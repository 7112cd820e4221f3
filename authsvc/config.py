"""Configuration: loaded once from `AUTHSVC_*` environment variables and flags.

Every setting has a named default, a parser and a validator; a bad value raises
`ConfigError` naming the variable and what it accepts. `Settings` is immutable.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from authsvc.errors import ConfigError

ENV_PREFIX = "AUTHSVC_"
SIGNING_ALGORITHMS = ("EdDSA", "ES256")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def default_data_dir() -> Path:
    """`$XDG_DATA_HOME/authsvc`, else `~/.local/share/authsvc`."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "authsvc"


@dataclasses.dataclass(frozen=True)
class Settings:
    """All runtime settings of the server and the admin CLI."""

    listen: str = "127.0.0.1:50051"
    #: `redis://` or `rediss://` or `unix://` URL; empty means the embedded private Redis.
    redis_url: str = ""
    data_dir: Path = dataclasses.field(default_factory=default_data_dir)
    issuer: str = "authsvc"
    default_audience: str = "authsvc"
    #: Audiences a Login may ask for; the default audience is always allowed.
    audiences: tuple[str, ...] = ()
    access_ttl_seconds: int = 15 * 60
    refresh_ttl_seconds: int = 14 * 24 * 3600
    session_max_seconds: int = 30 * 24 * 3600
    refresh_grace_seconds: int = 10
    leeway_seconds: int = 10
    signing_alg: str = "EdDSA"
    #: PEM private key that signs; empty means generate/load one under data_dir/keys.
    signing_key_file: str = ""
    #: Extra PEM keys (public or private) accepted for verification only (key rotation).
    verify_key_files: tuple[str, ...] = ()
    log_level: str = "INFO"
    #: PEM certificate chain and private key: serve TLS instead of plaintext.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    #: PEM CA bundle: require and verify client certificates (mTLS).
    tls_client_ca_file: str = ""
    redis_socket_timeout: float = 2.0
    redis_connect_timeout: float = 2.0
    redis_pool_size: int = 64
    redis_retries: int = 2
    #: OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1.
    argon2_memory_kib: int = 19456
    argon2_time_cost: int = 2
    argon2_parallelism: int = 1
    #: argon2 threads: one per core but one, which stays with the event loop (Validate).
    hash_threads: int = max(1, (os.cpu_count() or 1) - 1)
    login_max_failures: int = 10
    login_throttle_base_seconds: float = 1.0
    login_throttle_max_seconds: float = 900.0
    health_interval_seconds: float = 1.0
    #: Follow revocation events so Validate needs no Redis read in the steady state.
    revocation_view: bool = True
    workers: int = 1
    grace_shutdown_seconds: float = 10.0
    #: The scope that makes an access token an administrator's (admin API, Revoke of
    #: other people's sessions). Tokens must also be for the default audience.
    admin_scope: str = "authsvc:admin"
    #: mTLS client identities (certificate URI/DNS SAN, else CN) that are administrators.
    admin_identities: tuple[str, ...] = ()

    @property
    def allowed_audiences(self) -> frozenset[str]:
        """The audiences tokens may be issued for and are accepted with."""
        return frozenset((self.default_audience, *self.audiences))

    @property
    def uses_embedded_redis(self) -> bool:
        """True when no Redis URL is configured and a private one is started."""
        return not self.redis_url


def _positive_int(lo: int = 1, hi: int | None = None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if value < lo or (hi is not None and value > hi):
            raise ValueError(f"must be an integer in [{lo}, {hi if hi is not None else 'inf'}]")
        return value

    return parse


def _positive_float(lo: float = 0.0, hi: float | None = None) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw)
        if not value > lo or (hi is not None and value > hi) or value != value:
            raise ValueError(f"must be a number in ({lo}, {hi if hi is not None else 'inf'}]")
        return value

    return parse


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        for option in options:
            if raw.upper() == option.upper():
                return option
        raise ValueError(f"must be one of {', '.join(options)}")

    return parse


def _nonempty(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be empty")
    return raw.strip()


def _listen(raw: str) -> str:
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:50051")
    return raw


def _redis_url(raw: str) -> str:
    if raw and not raw.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("must start with redis://, rediss:// or unix:// (empty: embedded)")
    return raw


def _readable_file(raw: str) -> str:
    if raw and not os.access(raw, os.R_OK):
        raise ValueError("must name a readable file")
    return raw


def _boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


_PARSERS: dict[str, Callable[[str], Any]] = {
    "listen": _listen,
    "redis_url": _redis_url,
    "data_dir": lambda raw: Path(_nonempty(raw)).expanduser(),
    "issuer": _nonempty,
    "default_audience": _nonempty,
    "audiences": _csv,
    "access_ttl_seconds": _positive_int(1, 24 * 3600),
    "refresh_ttl_seconds": _positive_int(60, 365 * 24 * 3600),
    "session_max_seconds": _positive_int(60, 5 * 365 * 24 * 3600),
    "refresh_grace_seconds": _positive_int(0, 60),
    "leeway_seconds": _positive_int(0, 300),
    "signing_alg": _choice(SIGNING_ALGORITHMS),
    "signing_key_file": str,
    "verify_key_files": _csv,
    "log_level": _choice(LOG_LEVELS),
    "tls_cert_file": _readable_file,
    "tls_key_file": _readable_file,
    "tls_client_ca_file": _readable_file,
    "redis_socket_timeout": _positive_float(0.0, 60.0),
    "redis_connect_timeout": _positive_float(0.0, 60.0),
    "redis_pool_size": _positive_int(1, 10_000),
    "redis_retries": _positive_int(0, 10),
    "argon2_memory_kib": _positive_int(7168, 4 * 1024 * 1024),
    "argon2_time_cost": _positive_int(1, 100),
    "argon2_parallelism": _positive_int(1, 64),
    "hash_threads": _positive_int(1, 256),
    "login_max_failures": _positive_int(1, 1000),
    "login_throttle_base_seconds": _positive_float(0.0, 3600.0),
    "login_throttle_max_seconds": _positive_float(0.0, 86400.0),
    "health_interval_seconds": _positive_float(0.0, 60.0),
    "revocation_view": _boolean,
    "workers": _positive_int(1, 256),
    "grace_shutdown_seconds": _positive_float(0.0, 600.0),
    "admin_scope": _nonempty,
    "admin_identities": _csv,
}


def env_name(field: str) -> str:
    """The environment variable of a settings field, e.g. `AUTHSVC_REDIS_URL`."""
    return ENV_PREFIX + field.upper()


def load_settings(
    env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Build `Settings` from the environment, then flags (`overrides`, already typed or str).

    Raises:
        ConfigError: a value does not parse or is out of range; the message names it.
    """
    env = os.environ if env is None else env
    known = {f.name for f in dataclasses.fields(Settings)}
    unknown = sorted(
        k for k in env if k.startswith(ENV_PREFIX) and k[len(ENV_PREFIX) :].lower() not in known
    )
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]}; known: see README 'Configuration'")
    values: dict[str, Any] = {}
    for name, parse in _PARSERS.items():
        raw = env.get(env_name(name))
        if raw is not None:
            values[name] = _parse(env_name(name), parse, raw)
    for name, value in (overrides or {}).items():
        if name not in known:
            raise ConfigError(f"unknown setting {name}")
        if value is None:
            continue
        values[name] = (
            _parse(f"--{name.replace('_', '-')}", _PARSERS[name], value)
            if isinstance(value, str)
            else value
        )
    settings = Settings(**values)
    if bool(settings.tls_cert_file) != bool(settings.tls_key_file):
        raise ConfigError(f"{env_name('tls_cert_file')} and {env_name('tls_key_file')} go together")
    if settings.tls_client_ca_file and not settings.tls_cert_file:
        raise ConfigError(
            f"{env_name('tls_client_ca_file')} (mTLS) needs TLS: set the cert and key"
        )
    if settings.session_max_seconds < settings.access_ttl_seconds:
        raise ConfigError(
            f"{env_name('session_max_seconds')} must be at least {env_name('access_ttl_seconds')}"
        )
    return settings


def _parse(label: str, parse: Callable[[str], Any], raw: str) -> Any:
    try:
        return parse(raw)
    except ValueError as exc:
        # A URL may carry a password: name the setting, never echo its value.
        shown = "" if "URL" in label.upper() else f"={raw!r}"
        raise ConfigError(f"invalid {label}{shown}: {exc}") from None
