"""Sending agents' ticket replies, retried with a growing delay while SMTP fails."""

from __future__ import annotations

import logging
from typing import Any

import aiosmtplib
from arq import Retry
from arq.worker import Function, func

from app.config import Settings
from app.email.outbound import build_reply, load_outgoing, mark_failed, mark_sent
from app.email.settings import EmailSettings
from app.email.tables import EmailMessage
from app.mail import deliver

logger = logging.getLogger(__name__)

MAX_TRIES = 6
# Seconds before try n + 1 is n times this: 20 s, 40 s, ... 100 s.
RETRY_DELAY = 20
# A reply still queued this long after it was written may have lost its job
# (the web process failed to queue it, or Redis lost it), so it is queued
# again. arq refuses a job id that is still waiting or running, so a reply
# whose job is merely slow gets no second job.
REQUEUE_AFTER_SECONDS = 60


def job_id(row_id: int) -> str:
    """Return the arq job id of a reply.

    arq queues no second job with an id that is waiting or running.
    """
    return f"email-reply-{row_id}"


async def send_ticket_reply(ctx: dict[str, Any], row_id: int) -> str:
    """Send one outgoing message row; return where it went, or why not.

    A row already sent is not sent again, so a job run twice after a worker
    crash sends the mail once unless the crash fell between sending and
    marking it sent.
    """
    settings: Settings = ctx.get("settings") or Settings.from_env()
    email_settings = ctx.get("email_settings") or EmailSettings.from_env()
    job_try = int(ctx.get("job_try", 1))
    row = await load_outgoing(row_id)
    if row is None:
        logger.error("ticket reply not found message_row_id=%s", row_id)
        return "missing"
    if row["status"] != "queued":
        logger.info(
            "ticket reply not sent again message_row_id=%s status=%s",
            row_id,
            row["status"],
        )
        return row["status"]
    message = build_reply(row, settings.mail_from, email_settings.domain)
    try:
        where = await deliver(message, settings)
    except (aiosmtplib.SMTPException, OSError) as error:
        final = job_try >= MAX_TRIES
        await mark_failed(row_id, str(error), final)
        if final:
            logger.error(
                "ticket reply not sent, giving up message_row_id=%s ticket_id=%s "
                "try=%d error=%s",
                row_id,
                row["ticket"],
                job_try,
                error,
            )
            return "failed"
        logger.warning(
            "ticket reply not sent, retrying message_row_id=%s try=%d in=%ds error=%s",
            row_id,
            job_try,
            job_try * RETRY_DELAY,
            error,
        )
        raise Retry(defer=job_try * RETRY_DELAY) from error
    await mark_sent(row_id, where)
    return where


send_ticket_reply_job: Function = func(
    send_ticket_reply, name="send_ticket_reply", max_tries=MAX_TRIES, keep_result=0
)


async def requeue_unsent_replies(ctx: dict[str, Any]) -> int:
    """Queue again the replies still waiting after REQUEUE_AFTER_SECONDS;
    return how many got a new job."""
    rows = await EmailMessage.raw(
        "SELECT id, ticket FROM email_message WHERE direction = 'out' "
        "AND status = 'queued' AND created_at < now() - make_interval(secs => {}) "
        "ORDER BY id LIMIT 500",
        REQUEUE_AFTER_SECONDS,
    )
    queued = 0
    for row in rows:
        job = await ctx["redis"].enqueue_job(
            "send_ticket_reply", row["id"], _job_id=job_id(row["id"])
        )
        if job is not None:
            queued += 1
            logger.warning(
                "ticket reply had no job, queued again message_row_id=%s ticket_id=%s",
                row["id"],
                row["ticket"],
            )
    return queued
