"""Email settings read from the environment, with checks that name the variable."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path

from app.config import DEFAULT_MAIL_FROM, ConfigError

MIB = 1024 * 1024
# Mail providers whose domains do not identify the sender's company, so a
# sender from one of them is never linked to an account by domain.
FREE_MAIL_DOMAINS = frozenset(
    {
        "aol.com",
        "fastmail.com",
        "gmail.com",
        "gmx.com",
        "gmx.de",
        "gmx.net",
        "googlemail.com",
        "hey.com",
        "hotmail.com",
        "icloud.com",
        "live.com",
        "mac.com",
        "mail.com",
        "mail.ru",
        "me.com",
        "msn.com",
        "outlook.com",
        "proton.me",
        "protonmail.com",
        "qq.com",
        "web.de",
        "yahoo.com",
        "yandex.ru",
        "zoho.com",
    }
)


@dataclass(frozen=True)
class EmailSettings:
    # The domain of the Message-IDs of outgoing mail. A received message
    # whose own Message-ID is in it is our own mail coming back (a loop).
    domain: str
    # Attachment files, one per distinct content.
    attachment_dir: Path
    # Largest raw message, in bytes, the endpoint and the SMTP receiver accept.
    max_message_bytes: int = 25 * MIB
    # Largest single attachment kept, and most attachment bytes per message.
    max_attachment_bytes: int = 10 * MIB
    max_attachments_bytes: int = 20 * MIB
    # A bearer token the inbound endpoint accepts besides API keys; empty
    # for none.
    inbound_token: str = ""
    free_mail_domains: frozenset[str] = FREE_MAIL_DOMAINS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EmailSettings:
        """Read and check the email settings; raises ConfigError naming the variable."""
        env = os.environ if environ is None else environ
        mail_from = env.get("MAIL_FROM", DEFAULT_MAIL_FROM)
        domain = env.get("EMAIL_DOMAIN", "").strip().lower()
        if not domain:
            domain = parseaddr(mail_from)[1].rpartition("@")[2].lower() or "localhost"
        if "@" in domain or "<" in domain or " " in domain:
            raise ConfigError(
                f"EMAIL_DOMAIN={domain!r} is invalid: it must be a domain such as "
                "crm.example.com"
            )
        extra = {
            name.strip().lower()
            for name in env.get("EMAIL_FREE_DOMAINS", "").split(",")
            if name.strip()
        }
        settings = cls(
            domain=domain,
            attachment_dir=Path(
                env.get("EMAIL_ATTACHMENT_DIR", "").strip()
                or Path(env.get("CRM_DATA_DIR", ".data")) / "attachments"
            ),
            max_message_bytes=size_setting(env, "EMAIL_MAX_MESSAGE_BYTES", 25 * MIB),
            max_attachment_bytes=size_setting(
                env, "EMAIL_MAX_ATTACHMENT_BYTES", 10 * MIB
            ),
            max_attachments_bytes=size_setting(
                env, "EMAIL_MAX_ATTACHMENTS_BYTES", 20 * MIB
            ),
            inbound_token=env.get("INBOUND_EMAIL_TOKEN", "").strip(),
            free_mail_domains=FREE_MAIL_DOMAINS | extra,
        )
        if settings.inbound_token and len(settings.inbound_token) < 24:
            raise ConfigError(
                "INBOUND_EMAIL_TOKEN is invalid: it must be at least 24 characters; "
                "generate one with `openssl rand -hex 32`"
            )
        return settings


def size_setting(env: Mapping[str, str], name: str, default: int) -> int:
    """Read a size in bytes of 1 or more."""
    value = env.get(name, "").strip()
    if not value:
        return default
    if not (value.isascii() and value.isdigit()) or int(value) < 1:
        raise ConfigError(
            f"{name}={value!r} is invalid: it must be a whole number of bytes, "
            "1 or more"
        )
    return int(value)
