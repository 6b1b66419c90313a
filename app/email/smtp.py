"""An SMTP receiver for direct delivery: each message goes to ``receive_message``.

It accepts mail for any recipient and relays nothing. Run it behind the
domain's MX, or let the mail server forward to it. A message over the
size limit is rejected during DATA with 552. A database failure gets
451, so the sending server tries again later.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg
from aiosmtpd.smtp import SMTP, Envelope, Session

from app.email.inbound import MessageTooLarge, receive_message
from app.email.settings import EmailSettings
from app.errors import FieldError

logger = logging.getLogger(__name__)


class InboundHandler:
    """aiosmtpd handler that files every accepted message."""

    def __init__(self, settings: EmailSettings) -> None:
        self.settings = settings

    # aiosmtpd calls the hook by this name.
    async def handle_DATA(
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        raw = envelope.original_content or b""
        peer = session.peer
        try:
            result = await receive_message(
                raw,
                self.settings,
                envelope_from=envelope.mail_from or "",
                transport="smtp",
            )
        except MessageTooLarge as error:
            logger.info("smtp message rejected peer=%s: %s", peer, error)
            return "552 5.3.4 Message too big"
        except FieldError as error:
            logger.info("smtp message rejected peer=%s: %s", peer, error)
            return f"554 5.6.0 {error.message}"
        except (OSError, asyncpg.PostgresError) as error:
            logger.error(
                "smtp message not stored, sender will retry peer=%s mail_from=%s "
                "error=%s",
                peer,
                envelope.mail_from,
                error,
            )
            return "451 4.3.0 Temporary failure, try again later"
        reference = f" ticket {result.ticket_id}" if result.ticket_id else ""
        return f"250 2.0.0 Message {result.outcome}{reference}"


def smtp_factory(settings: EmailSettings, hostname: str | None = None) -> Any:
    handler = InboundHandler(settings)

    def build() -> SMTP:
        return SMTP(
            handler,
            data_size_limit=settings.max_message_bytes,
            enable_SMTPUTF8=True,
            hostname=hostname,
            timeout=300,
        )

    return build


async def start_smtp_server(
    host: str, port: int, settings: EmailSettings, hostname: str | None = None
) -> asyncio.Server:
    """Listen for SMTP on ``host``:``port`` in the running event loop."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(smtp_factory(settings, hostname), host, port)
    logger.info(
        "smtp receiver listening host=%s port=%s max_message_bytes=%s",
        host,
        port,
        settings.max_message_bytes,
    )
    return server


async def serve_smtp(host: str, port: int, settings: EmailSettings) -> None:
    """Serve SMTP until the process is stopped."""
    server = await start_smtp_server(host, port, settings)
    async with server:
        try:
            await server.serve_forever()
        finally:
            logger.info("smtp receiver stopped host=%s port=%s", host, port)
