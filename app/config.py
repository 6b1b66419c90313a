"""Settings read from the environment, validated once at start."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

DATABASE_SCHEMES = ("postgres", "postgresql")
REDIS_SCHEMES = ("redis", "rediss", "unix")


class ConfigError(Exception):
    """A setting is missing or invalid. The message names the variable."""


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

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Read and validate every setting.

        Raises ``ConfigError`` naming the first variable that is missing or
        invalid. The embedded servers, when used, must already have filled in
        ``DATABASE_URL`` and ``REDIS_URL``.
        """
        env = os.environ if environ is None else environ
        data_dir = Path(env.get("CRM_DATA_DIR", ".data"))

        return cls(
            database_url=check_url(env, "DATABASE_URL", DATABASE_SCHEMES),
            redis_url=check_url(env, "REDIS_URL", REDIS_SCHEMES),
            secret_key=env.get("SECRET_KEY") or load_secret(data_dir),
            data_dir=data_dir,
            host=env.get("HOST", "127.0.0.1"),
            port=check_port(env.get("PORT", "8000")),
            redis_prefix=env.get("REDIS_PREFIX", "crm:"),
            debug=env.get("CRM_DEBUG", "") == "1",
        )


def check_url(
    env: dict[str, str] | os._Environ[str], name: str, schemes: tuple[str, ...]
) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is not set; set it to a {schemes[0]}:// URL")

    parts = urlsplit(value)
    if parts.scheme not in schemes:
        raise ConfigError(
            f"{name}={value!r} is invalid: the scheme must be one of "
            f"{', '.join(s + '://' for s in schemes)}"
        )
    if parts.scheme != "unix" and not (parts.hostname or "host=" in parts.query):
        raise ConfigError(f"{name}={value!r} is invalid: it names no host")
    return value


def check_port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise ConfigError(f"PORT={value!r} is invalid: it must be a number") from None
    if not 0 < port < 65536:
        raise ConfigError(f"PORT={value!r} is invalid: it must be between 1 and 65535")
    return port


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
