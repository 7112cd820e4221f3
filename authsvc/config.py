"""Configuration: loaded once from `AUTHSVC_*` environment variables and flags.

Each field of `Settings` is declared once, with its parser (which says what it accepts),
its default and its help text. Everything else is derived from that declaration: the
environment variable (`AUTHSVC_` + the field name in capitals), the `authsvc serve` flag
(`--` + the field name with dashes), the check for unknown `AUTHSVC_*` variables and the
flags' help. A bad value raises `ConfigError` naming the variable or flag and what it
accepts. Flags override the environment. `Settings` is immutable.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

from authsvc_client import jwt_rules

from authsvc.errors import ConfigError
from authsvc.redis_target import FORMS as REDIS_URL_FORMS
from authsvc.redis_target import parse_redis_url

ENV_PREFIX = "AUTHSVC_"
# Only what every verifier accepts: authsvc must never mint a token its own rules refuse.
SIGNING_ALGORITHMS = jwt_rules.ALGORITHMS
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Parser(Generic[T]):
    """Turns the raw text of a setting into its value.

    Attributes:
        convert: Returns the value; raises ValueError when the text is not acceptable.
        accepts: What it accepts, for error messages and help, e.g. "an integer in [1, 64]".
    """

    convert: Callable[[str], T]
    accepts: str

    def __call__(self, raw: str) -> T:
        return self.convert(raw)


def _int_in(lo: int, hi: int) -> Parser[int]:
    def convert(raw: str) -> int:
        value = int(raw)
        if not lo <= value <= hi:
            raise ValueError
        return value

    return Parser(convert, f"an integer in [{lo}, {hi}]")


def _float_in(lo: float, hi: float) -> Parser[float]:
    """A number above `lo` (exclusive: zero would turn a safeguard off) up to `hi`."""

    def convert(raw: str) -> float:
        value = float(raw)
        if not lo < value <= hi:  # also refuses NaN
            raise ValueError
        return value

    return Parser(convert, f"a number in ({lo:g}, {hi:g}]")


def _one_of(options: tuple[str, ...]) -> Parser[str]:
    def convert(raw: str) -> str:
        for option in options:
            if raw.upper() == option.upper():
                return option
        raise ValueError

    return Parser(convert, f"one of {', '.join(options)}")


def _nonempty(raw: str) -> str:
    if not raw.strip():
        raise ValueError
    return raw.strip()


def _listen(raw: str) -> str:
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError
    return raw


def _appendable_file(raw: str) -> str:
    if not raw:
        return ""
    target = raw if os.path.exists(raw) else os.path.dirname(raw) or "."
    if os.path.isdir(raw) or not os.access(target, os.W_OK):
        raise ValueError
    return raw


def _redis_url(raw: str) -> str:
    if raw:
        parse_redis_url(raw)  # ValueError unless one of redis_target.FORMS
    return raw


def _replicas_ack(raw: str) -> int | None:
    if raw.strip().lower() in ("", "auto"):
        return None
    value = int(raw)
    if not 0 <= value <= 16:
        raise ValueError
    return value


def _seconds_from_zero(raw: str) -> float:
    value = float(raw)
    if not 0.0 <= value <= 60.0:  # also refuses NaN
        raise ValueError
    return value


def _readable_file(raw: str) -> str:
    if raw and not os.access(raw, os.R_OK):
        raise ValueError
    return raw


def _boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


_TEXT = Parser(_nonempty, "a non-empty string")
_LISTEN = Parser(_listen, "HOST:PORT, e.g. 127.0.0.1:50051")
_OPTIONAL_LISTEN = Parser(lambda raw: _listen(raw) if raw else "", "HOST:PORT, or empty")
_REDIS_URL = Parser(_redis_url, f"one of {REDIS_URL_FORMS} (Cluster, Sentinel), or empty")
_DIRECTORY = Parser(lambda raw: Path(_nonempty(raw)).expanduser(), "a directory path")
_PATH = Parser(str, "a file path, or empty")
_READABLE_FILE = Parser(_readable_file, "a readable file, or empty")
_CSV = Parser(_csv, "a comma-separated list")
_APPENDABLE_FILE = Parser(_appendable_file, "a file path in a writable directory, or empty")
_BOOLEAN = Parser(_boolean, "true or false")

_DECLARATION = "authsvc.setting"


@dataclasses.dataclass(frozen=True)
class _Declared:
    parser: Parser[Any]
    help: str
    secret: bool


@overload
def _setting(parser: Parser[T], help: str, *, default: T, secret: bool = False) -> T: ...
@overload
def _setting(parser: Parser[T], help: str, *, default_factory: Callable[[], T]) -> T: ...
def _setting(
    parser: Parser[Any],
    help: str,
    *,
    default: Any = dataclasses.MISSING,
    default_factory: Any = dataclasses.MISSING,
    secret: bool = False,
) -> Any:
    """Declare one field of `Settings`: parser, default and help (and, with `secret`, that
    its value may hold a password and is never echoed in an error)."""
    metadata = {_DECLARATION: _Declared(parser, help, secret)}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def default_data_dir() -> Path:
    """`$XDG_DATA_HOME/authsvc`, else `~/.local/share/authsvc`."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "authsvc"


@dataclasses.dataclass(frozen=True)
class Settings:
    """All runtime settings of the server and the admin CLI."""

    listen: str = _setting(_LISTEN, "gRPC listen address", default="127.0.0.1:50051")
    redis_url: str = _setting(
        _REDIS_URL, "Redis to use (empty: an embedded private one)", default="", secret=True
    )
    data_dir: Path = _setting(
        _DIRECTORY,
        "generated key-encryption key and embedded Redis data",
        default_factory=default_data_dir,
    )
    issuer: str = _setting(_TEXT, "iss of every token", default="authsvc")
    default_audience: str = _setting(_TEXT, "aud when a Login asks for none", default="authsvc")
    audiences: tuple[str, ...] = _setting(
        _CSV, "other audiences a Login may ask for (the default is always allowed)", default=()
    )
    access_ttl_seconds: int = _setting(
        _int_in(1, 24 * 3600), "access token lifetime", default=15 * 60
    )
    refresh_ttl_seconds: int = _setting(
        _int_in(60, 365 * 24 * 3600), "refresh token lifetime (sliding)", default=14 * 24 * 3600
    )
    session_max_seconds: int = _setting(
        _int_in(60, 5 * 365 * 24 * 3600), "absolute session lifetime", default=30 * 24 * 3600
    )
    refresh_grace_seconds: int = _setting(
        _int_in(0, 60), "window for a retried Refresh to get the same pair (0: off)", default=10
    )
    leeway_seconds: int = _setting(
        _int_in(0, 300), "clock skew allowed when checking token times", default=10
    )
    signing_alg: str = _setting(
        _one_of(SIGNING_ALGORITHMS), "signing algorithm (a key file must match)", default="EdDSA"
    )
    signing_key_file: str = _setting(
        _PATH, "PEM private key that signs (empty: the key ring in Redis)", default=""
    )
    verify_key_files: tuple[str, ...] = _setting(
        _CSV, "extra PEM keys accepted for verification only (key rotation)", default=()
    )
    key_encryption_key_file: str = _setting(
        _READABLE_FILE,
        "secret (>= 32 bytes) sealing the Redis key ring's private keys, never in Redis "
        "(empty: one generated in the data dir, mode 0600)",
        default="",
    )
    key_rotation_seconds: int = _setting(
        _int_in(0, 10 * 365 * 24 * 3600),
        "add a new signing key to the key ring this often (0: only when told to)",
        default=0,
    )
    jwks_cache_seconds: int = _setting(
        _int_in(1, 7 * 24 * 3600),
        "how long verifiers may cache the JWKS: a new key is published this long before it "
        "signs (the client library refetches its key set after 600 s)",
        default=600,
    )
    log_level: str = _setting(
        _one_of(LOG_LEVELS), "level of the JSON-lines log on stderr", default="INFO"
    )
    tls_cert_file: str = _setting(
        _READABLE_FILE, "PEM certificate chain (serve TLS instead of plaintext)", default=""
    )
    tls_key_file: str = _setting(_READABLE_FILE, "PEM private key of the certificate", default="")
    tls_client_ca_file: str = _setting(
        _READABLE_FILE, "PEM CA bundle (require client certificates from it: mTLS)", default=""
    )
    redis_socket_timeout: float = _setting(
        _float_in(0.0, 60.0), "seconds to wait for a Redis answer", default=2.0
    )
    redis_connect_timeout: float = _setting(
        _float_in(0.0, 60.0), "seconds to wait for a Redis connection", default=2.0
    )
    redis_pool_size: int = _setting(
        _int_in(1, 10_000), "most Redis connections per process", default=64
    )
    redis_retries: int = _setting(
        _int_in(0, 10), "retries of idempotent Redis operations", default=2
    )
    redis_min_replicas_ack: int | None = _setting(
        Parser(_replicas_ack, "an integer in [0, 16], or empty/auto"),
        "replicas that must confirm a revocation before it is answered (empty: 1 when "
        "the deployment has replicas, else 0)",
        default=None,
    )
    # OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1.
    argon2_memory_kib: int = _setting(
        _int_in(7168, 4 * 1024 * 1024), "argon2id memory cost of new hashes, KiB", default=19456
    )
    argon2_time_cost: int = _setting(_int_in(1, 100), "argon2id passes of new hashes", default=2)
    argon2_parallelism: int = _setting(_int_in(1, 64), "argon2id lanes of new hashes", default=1)
    # One per core but one, which stays with the event loop (Validate).
    hash_threads: int = _setting(
        _int_in(1, 256), "password hashing threads", default=max(1, (os.cpu_count() or 1) - 1)
    )
    login_max_failures: int = _setting(
        _int_in(1, 1000), "failed logins in a row before a name is throttled", default=10
    )
    login_throttle_base_seconds: float = _setting(
        _float_in(0.0, 3600.0), "first throttle delay, doubled per further failure", default=1.0
    )
    login_throttle_max_seconds: float = _setting(
        _float_in(0.0, 86400.0), "longest throttle delay", default=900.0
    )
    login_source_max_failures: int = _setting(
        _int_in(1, 1_000_000),
        "failed logins one source (mTLS identity, else peer address) may have at once",
        default=100,
    )
    login_source_window_seconds: float = _setting(
        _float_in(0.0, 86400.0),
        "seconds a source's failure budget takes to refill (evenly)",
        default=600.0,
    )
    login_global_max_failures: int = _setting(
        _int_in(1, 100_000_000),
        "failed logins all sources together may have at once; then every login waits",
        default=1000,
    )
    login_global_window_seconds: float = _setting(
        _float_in(0.0, 86400.0), "seconds the global failure budget takes to refill", default=600.0
    )
    login_queue_size: int = _setting(
        _int_in(1, 100_000),
        "logins admitted to this process's password checks at once (waiting or hashing)",
        default=64,
    )
    login_wait_seconds: float = _setting(
        _float_in(0.0, 300.0),
        "longest a login waits for a place its account's or source's attempts in flight hold",
        default=10.0,
    )
    health_interval_seconds: float = _setting(
        _float_in(0.0, 60.0), "seconds between Redis health checks and feed PINGs", default=1.0
    )
    revocation_view: bool = _setting(
        _BOOLEAN,
        "follow revocation events so Validate skips Redis in the steady state",
        default=True,
    )
    workers: int = _setting(
        _int_in(1, 256), "server processes sharing the port (SO_REUSEPORT)", default=1
    )
    grace_shutdown_seconds: float = _setting(
        _float_in(0.0, 600.0), "seconds in-flight calls get at shutdown", default=10.0
    )
    shutdown_drain_seconds: float = _setting(
        Parser(_seconds_from_zero, "a number in [0, 60]"),
        "seconds a stopping server still serves while reporting NOT_SERVING, so clients "
        "that health-check move away first (rolling restarts)",
        default=2.0,
    )
    admin_scope: str = _setting(
        _TEXT,
        "the scope that makes an access token (for the default audience) an administrator's",
        default="authsvc:admin",
    )
    admin_identities: tuple[str, ...] = _setting(
        _CSV,
        "mTLS client identities (URI/DNS SAN, else CN) that are administrators",
        default=(),
    )
    metrics_listen: str = _setting(
        _OPTIONAL_LISTEN, "HOST:PORT of the Prometheus /metrics endpoint (empty: none)", default=""
    )
    audit_log: str = _setting(
        _APPENDABLE_FILE, "file the audit trail is appended to (empty: stderr)", default=""
    )
    validate_require_audience: bool = _setting(
        _BOOLEAN,
        "Validate without an audience is INVALID_ARGUMENT: a resource service that forgets "
        "to name itself cannot accept tokens minted for another",
        default=False,
    )
    allow_plaintext: bool = _setting(
        _BOOLEAN,
        "serve plaintext on a non-loopback address (refused without it; logged as a warning)",
        default=False,
    )
    reflection: bool = _setting(
        _BOOLEAN, "serve gRPC server reflection (service and message descriptions)", default=True
    )

    @property
    def allowed_audiences(self) -> frozenset[str]:
        """The audiences tokens may be issued for and are accepted with."""
        return frozenset((self.default_audience, *self.audiences))

    @property
    def listens_on_loopback(self) -> bool:
        """True when `listen` is a loopback address (127.0.0.0/8, ::1, localhost): only
        this machine can connect. Anything else, `0.0.0.0` and host names included, is not."""
        host = self.listen.rpartition(":")[0].strip("[]")
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    @property
    def uses_embedded_redis(self) -> bool:
        """True when no Redis URL is configured and a private one is started."""
        return not self.redis_url


@dataclasses.dataclass(frozen=True)
class Setting:
    """One field of `Settings` as declared: where it is read from and how it is parsed."""

    name: str
    parser: Parser[Any]
    help: str
    #: Its value may hold a password (a Redis URL): never echoed in an error.
    secret: bool
    _field: dataclasses.Field[Any] = dataclasses.field(repr=False)

    @property
    def env(self) -> str:
        """Its environment variable, e.g. `AUTHSVC_REDIS_URL`."""
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        """Its `authsvc serve` flag, e.g. `--redis-url`."""
        return "--" + self.name.replace("_", "-")

    @property
    def default(self) -> Any:
        """Its default value."""
        if self._field.default_factory is not dataclasses.MISSING:
            return self._field.default_factory()
        return self._field.default

    def text(self, value: Any) -> str:
        """`value` written the way the parser reads it back (empty for nothing)."""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, tuple):
            return ",".join(value)
        if value is None:
            return ""
        return str(value)

    def parse(self, raw: str, label: str) -> Any:
        """Parse `raw`, given as `label` (the variable or the flag).

        Raises:
            ConfigError: naming `label` and what the setting accepts.
        """
        try:
            return self.parser(raw)
        except ValueError:
            shown = "" if self.secret else f"={raw!r}"
            raise ConfigError(f"invalid {label}{shown}: must be {self.parser.accepts}") from None


def _declared() -> tuple[Setting, ...]:
    settings = []
    for field in dataclasses.fields(Settings):
        declared = field.metadata.get(_DECLARATION)
        if not isinstance(declared, _Declared):
            raise TypeError(f"Settings.{field.name} is not declared with _setting()")
        settings.append(Setting(field.name, declared.parser, declared.help, declared.secret, field))
    return tuple(settings)


#: Every setting, in declaration order.
SETTINGS: tuple[Setting, ...] = _declared()
_BY_NAME = {setting.name: setting for setting in SETTINGS}


def env_name(field: str) -> str:
    """The environment variable of a settings field, e.g. `AUTHSVC_REDIS_URL`."""
    return _BY_NAME[field].env


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Add one `--flag VALUE` per setting to `parser`; `flag_values` reads them back."""
    for setting in SETTINGS:
        default = setting.text(setting.default) or "empty"
        text = f"{setting.help} [{setting.parser.accepts}; default {default}; {setting.env}]"
        parser.add_argument(
            setting.flag,
            dest=setting.name,
            default=None,
            metavar="VALUE",
            help=text.replace("%", "%%"),
        )


def flag_values(args: argparse.Namespace) -> dict[str, str | None]:
    """The raw values of the flags `add_flags` added (None where not given)."""
    return {setting.name: getattr(args, setting.name) for setting in SETTINGS}


def load_settings(
    env: Mapping[str, str] | None = None, flags: Mapping[str, str | None] | None = None
) -> Settings:
    """Build `Settings` from the environment, then flags (raw text by field name; None
    means not given).

    Raises:
        ConfigError: a value does not parse or is out of range, or an `AUTHSVC_*` variable
            is unknown; the message names it.
    """
    env = os.environ if env is None else env
    known = {setting.env for setting in SETTINGS}
    unknown = sorted(k for k in env if k.startswith(ENV_PREFIX) and k not in known)
    if unknown:
        raise ConfigError(
            f"unknown setting {unknown[0]}; see `authsvc serve --help` or README 'Configuration'"
        )
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = env.get(setting.env)
        if raw is not None:
            values[setting.name] = setting.parse(raw, setting.env)
    for name, raw in (flags or {}).items():
        flagged = _BY_NAME.get(name)
        if flagged is None:
            raise ConfigError(f"unknown setting {name}")
        if raw is not None:
            values[name] = flagged.parse(raw, flagged.flag)
    settings = Settings(**values)
    if bool(settings.tls_cert_file) != bool(settings.tls_key_file):
        raise ConfigError(f"{env_name('tls_cert_file')} and {env_name('tls_key_file')} go together")
    if settings.tls_client_ca_file and not settings.tls_cert_file:
        raise ConfigError(
            f"{env_name('tls_client_ca_file')} (mTLS) needs TLS: set the cert and key"
        )
    if settings.key_rotation_seconds and settings.signing_key_file:
        raise ConfigError(
            f"{env_name('key_rotation_seconds')} rotates the Redis key ring, which "
            f"{env_name('signing_key_file')} turns off: set one of them"
        )
    if 0 < settings.key_rotation_seconds < settings.jwks_cache_seconds:
        raise ConfigError(
            f"{env_name('key_rotation_seconds')} must be 0 or at least "
            f"{env_name('jwks_cache_seconds')} (a new key is published that long before it signs)"
        )
    if settings.session_max_seconds < settings.access_ttl_seconds:
        raise ConfigError(
            f"{env_name('session_max_seconds')} must be at least {env_name('access_ttl_seconds')}"
        )
    return settings
