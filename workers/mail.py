"""Sending mail from the worker, retried with a growing delay while SMTP fails."""

from __future__ import annotations

import logging
from email.message import EmailMessage
from typing import Any

import aiosmtplib
from arq import Retry
from arq.worker import Function, func

from app.auth.reset import create_reset, reset_mail
from app.config import Settings
from app.email.settings import EmailSettings
from app.mail import build_message, deliver

logger = logging.getLogger(__name__)

MAX_TRIES = 5
# Seconds before try n + 1 is n times this: 15 s, 30 s, 45 s, 60 s.
RETRY_DELAY = 15


async def send_mail(ctx: dict[str, Any], to: str, subject: str, text: str) -> str:
    """Deliver one message and return where it went (SMTP server or outbox file)."""
    settings: Settings = ctx.get("settings") or Settings.from_env()
    domain = (ctx.get("email_settings") or EmailSettings.from_env()).domain
    message = build_message(settings.mail_from, to, subject, text, domain)
    return await deliver_or_retry(ctx, message, settings)


async def deliver_or_retry(
    ctx: dict[str, Any], message: EmailMessage, settings: Settings
) -> str:
    """Deliver ``message`` from a job with up to MAX_TRIES tries.

    Returns where it went. While SMTP fails, raises arq's Retry with a
    growing delay, and after the last try raises the error itself.
    """
    job_try = int(ctx.get("job_try", 1))
    try:
        return await deliver(message, settings)
    except (aiosmtplib.SMTPException, OSError) as error:
        if job_try >= MAX_TRIES:
            logger.error(
                "mail not sent, giving up job_id=%s try=%d error=%s",
                ctx.get("job_id"),
                job_try,
                error,
            )
            raise
        logger.warning(
            "mail not sent, retrying job_id=%s try=%d in=%ds error=%s",
            ctx.get("job_id"),
            job_try,
            job_try * RETRY_DELAY,
            error,
        )
        raise Retry(defer=job_try * RETRY_DELAY) from error


# Results are not kept, because the arguments contain the message, which may
# contain a password reset link.
send_mail_job: Function = func(send_mail, max_tries=MAX_TRIES, keep_result=0)


async def send_password_reset(ctx: dict[str, Any], email: str) -> bool:
    """Make a reset token for ``email`` and queue its mail; False for no such user.

    The web queues this for every request, so its response takes the same
    time whether or not an account uses the email address.
    """
    settings: Settings = ctx.get("settings") or Settings.from_env()
    request = await create_reset(email)
    if request is None:
        logger.info(
            "password reset for an unknown or inactive email job_id=%s",
            ctx.get("job_id"),
        )
        return False

    subject, text = reset_mail(request, settings.public_url)
    await ctx["redis"].enqueue_job("send_mail", request.email, subject, text)
    return True


send_password_reset_job: Function = func(send_password_reset, keep_result=0)
