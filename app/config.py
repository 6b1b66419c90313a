"""Settings read from the environment, validated once at start."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Literal, cast
from urllib.parse import urlsplit

from app.encryption.keyring import Keyring, KeyringError, new_key_entry

DATABASE_SCHEMES = ("postgres", "postgresql")
REDIS_SCHEMES = ("redis", "rediss", "unix")
# smtp:// upgrades with STARTTLS when the server offers it; smtps:// is TLS
# from the first byte (port 465).
SMTP_SCHEMES = ("smtp", "smtps")
DEFAULT_MAIL_FROM = "Switchboard <switchboard@localhost>"
SECURE_COOKIE_MODES = ("auto", "always")
# uvicorn's own default for the proxies whose X-Forwarded-* headers it trusts.
DEFAULT_FORWARDED_ALLOW_IPS = "127.0.0.1,::1"
KEY_FILE = "encryption_keys"


class ConfigError(Exception):
    """A setting is missing or invalid. The message names the variable."""


@dataclass(frozen=True)
class SignInSecurity:
    """Session timeouts and sign-in limits, all durations in seconds.

    The session store's own expiry (``SESSION_MAX_AGE`` in ``app.main``,
    renewed on every response) also ends an idle session, so an idle timeout
    above it has no effect.
    """

    session_idle_timeout: int = 3600
    session_absolute_timeout: int = 12 * 3600
    # Failed sign-ins counted per account and per client address within
    # ``signin_window`` before that account or address is locked.
    signin_max_failures: int = 10
    signin_max_address_failures: int = 50
    signin_window: int = 60
    signin_lockout: int = 15 * 60

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SignInSecurity:
        defaults = cls()
        return cls(
            session_idle_timeout=check_seconds(
                env, "SESSION_IDLE_TIMEOUT", defaults.session_idle_timeout
            ),
            session_absolute_timeout=check_seconds(
                env, "SESSION_ABSOLUTE_TIMEOUT", defaults.session_absolute_timeout
            ),
            signin_max_failures=check_seconds(
                env, "SIGNIN_MAX_FAILURES", defaults.signin_max_failures
            ),
            signin_max_address_failures=check_seconds(
                env, "SIGNIN_MAX_ADDRESS_FAILURES", defaults.signin_max_address_failures
            ),
            signin_window=check_seconds(env, "SIGNIN_WINDOW", defaults.signin_window),
            signin_lockout=check_seconds(
                env, "SIGNIN_LOCKOUT", defaults.signin_lockout
            ),
        )


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str
    secret_key: str
    data_dir: Path
    host: str
    port: int
    redis_prefix: str
    debug: bool
    encryption_keys: Keyring = field(repr=False)
    # "auto" marks cookies Secure on requests that came over TLS, "always"
    # on every request (for a TLS proxy that sends no X-Forwarded-Proto).
    secure_cookies: Literal["auto", "always"]
    # Addresses whose X-Forwarded-Proto and X-Forwarded-For uvicorn trusts.
    forwarded_allow_ips: str
    sign_in: SignInSecurity = field(default_factory=SignInSecurity)
    # Outgoing mail. Without an SMTP URL, messages are written as .eml files
    # to ``data_dir / "outbox"``.
    smtp_url: str | None = None
    mail_from: str = DEFAULT_MAIL_FROM
    # The address people reach this site at, used in links sent by mail.
    public_url: str = "http://127.0.0.1:8000"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Read and validate every setting.

        Raises ``ConfigError`` naming the first variable that is missing or
        invalid. The embedded servers, when used, must already have filled in
        ``DATABASE_URL`` and ``REDIS_URL``.
        """
        env = os.environ if environ is None else environ
        data_dir = Path(env.get("CRM_DATA_DIR", ".data"))
        host = env.get("HOST", "127.0.0.1")
        port = check_port(env.get("PORT", "8000"))
        smtp_url = None
        if env.get("SMTP_URL", "").strip():
            smtp_url = check_url(env, "SMTP_URL", SMTP_SCHEMES)

        return cls(
            database_url=check_url(env, "DATABASE_URL", DATABASE_SCHEMES),
            redis_url=check_url(env, "REDIS_URL", REDIS_SCHEMES),
            secret_key=env.get("SECRET_KEY") or load_secret(data_dir),
            data_dir=data_dir,
            host=host,
            port=port,
            redis_prefix=env.get("REDIS_PREFIX", "crm:"),
            debug=env.get("CRM_DEBUG", "") == "1",
            encryption_keys=load_encryption_keys(env, data_dir),
            secure_cookies=check_secure_cookies(env.get("CRM_SECURE_COOKIES", "auto")),
            forwarded_allow_ips=env.get(
                "FORWARDED_ALLOW_IPS", DEFAULT_FORWARDED_ALLOW_IPS
            ),
            sign_in=SignInSecurity.from_env(env),
            smtp_url=smtp_url,
            mail_from=check_mail_from(env.get("MAIL_FROM", DEFAULT_MAIL_FROM)),
            public_url=check_public_url(
                env.get("PUBLIC_URL", "").strip() or f"http://{host}:{port}"
            ),
        )


def check_url(env: Mapping[str, str], name: str, schemes: tuple[str, ...]) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is not set; set it to a {schemes[0]}:// URL")

    parts = urlsplit(value)
    shown = without_password(value)
    if parts.scheme not in schemes:
        raise ConfigError(
            f"{name}={shown!r} is invalid: the scheme must be one of "
            f"{', '.join(s + '://' for s in schemes)}"
        )
    if parts.scheme != "unix" and not (parts.hostname or "host=" in parts.query):
        raise ConfigError(f"{name}={shown!r} is invalid: it names no host")
    return value


def without_password(url: str) -> str:
    """Return ``url`` with its password, if any, replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    name = user.partition(":")[0]
    return parts._replace(netloc=f"{name}:***@{host}").geturl()


def check_port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise ConfigError(f"PORT={value!r} is invalid: it must be a number") from None
    if not 0 < port < 65536:
        raise ConfigError(f"PORT={value!r} is invalid: it must be between 1 and 65535")
    return port


def check_seconds(env: Mapping[str, str], name: str, default: int) -> int:
    """Read a whole number of 1 or more, such as a duration in seconds."""
    value = env.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(
            f"{name}={value!r} is invalid: it must be a whole number"
        ) from None
    if number < 1:
        raise ConfigError(f"{name}={value!r} is invalid: it must be 1 or more")
    return number


def check_mail_from(value: str) -> str:
    _, address = parseaddr(value)
    if "@" not in address:
        raise ConfigError(
            f"MAIL_FROM={value!r} is invalid: it must contain an email address, "
            "such as 'Switchboard <crm@example.com>'"
        )
    return value


def check_public_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"PUBLIC_URL={value!r} is invalid: it must be an http:// or https:// URL"
        )
    return value.rstrip("/")


def load_secret(data_dir: Path) -> str:
    """Return the secret kept in the data folder, generating it on first use."""
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()

    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    path.write_text(secret)
    path.chmod(0o600)
    return secret


def check_secure_cookies(value: str) -> Literal["auto", "always"]:
    if value not in SECURE_COOKIE_MODES:
        raise ConfigError(
            f"CRM_SECURE_COOKIES={value!r} is invalid: it must be auto or always"
        )
    return cast("Literal['auto', 'always']", value)


def load_encryption_keys(env: Mapping[str, str], data_dir: Path) -> Keyring:
    """Read CRM_ENCRYPTION_KEYS, or the key file in the data folder without it.

    The key file is generated on first use. Two processes starting together
    read the same file, because only one of them can create it.
    """
    text = env.get("CRM_ENCRYPTION_KEYS", "").strip()
    source = "CRM_ENCRYPTION_KEYS"
    if not text:
        path = data_dir / KEY_FILE
        source = str(path)
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            text = read_key_file(path)
        else:
            text = new_key_entry()
            with os.fdopen(descriptor, "w") as key_file:
                key_file.write(text + "\n")
    try:
        return Keyring.parse(text, source)
    except KeyringError as error:
        raise ConfigError(str(error)) from None


def read_key_file(path: Path, attempts: int = 20) -> str:
    # The process that created the file may not have written it yet.
    for _ in range(attempts):
        text = path.read_text().strip()
        if text:
            return text
        time.sleep(0.05)
    return ""
