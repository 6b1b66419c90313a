"""The arq worker: its queue, its tasks and its connections."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from arq import cron
from arq.cron import CronJob
from redis.asyncio import Redis

from app.audit.roles import warn_about_audit_rights
from app.config import Settings
from app.db import close_pool, start_pool
from app.encryption import marked
from app.events.service import set_bus
from app.logs import configure_logging
from app.piccolo_conf import DB
from app.webhooks.jobs import deliver_outbox_job, relay_outbox
from app.workflows import jobs as workflow_jobs
from realtime.bus import Bus
from workers.assignment import assign_job
from workers.campaigns import (
    send_campaign_job,
    send_campaign_test_job,
    start_due_campaigns,
)
from workers.connection import open_queue, queue_name, redis_settings
from workers.email import requeue_unsent_replies, send_ticket_reply_job
from workers.forecast import (
    forecast_nightly,
    rescore_deal_job,
    retrain_win_models_when_due,
    train_win_models,
)
from workers.imports import import_files_job, recover_imports
from workers.logs import quiet_routine_cron_logs
from workers.mail import send_mail_job, send_password_reset_job
from workers.maintenance import prune_old_events
from workers.scoring import (
    rescore_lead_job,
    rescore_open_leads_job,
    rescore_open_leads_nightly,
    retrain_when_due,
    train_scoring_model,
    train_scoring_model_job,
)
from workers.sensitive import resume_sensitive_fields, sensitive_field_job
from workers.sla import check_sla_clocks

# Seconds arq keeps the result of a run of the frequent checks.
RESULT_SECONDS = 60


async def startup(ctx: dict[str, Any]) -> None:
    configure_logging()
    quiet_routine_cron_logs(job.name for job in WorkerSettings.cron_jobs)
    settings = Settings.from_env()
    ctx["settings"] = settings
    ctx["redis_client"] = Redis.from_url(settings.redis_url)
    set_bus(Bus(ctx["redis_client"], settings.redis_prefix))
    # Jobs queue their follow-up jobs on ctx["redis"]. arq's own connection
    # there would give them ids without the installation's prefix.
    ctx["redis"] = await open_queue(settings.redis_url, settings.redis_prefix)
    await start_pool(DB, min_size=1, max_size=5)
    await warn_about_audit_rights("worker")
    ctx["sensitive_fields"] = asyncio.create_task(marked.keep_fresh())


async def shutdown(ctx: dict[str, Any]) -> None:
    refresher = ctx.get("sensitive_fields")
    if refresher is not None:
        refresher.cancel()
    set_bus(None)
    await close_pool(DB)
    await ctx["redis"].aclose()
    await workflow_jobs.close_queue()
    await ctx["redis_client"].aclose()


def scheduled_jobs(prefix: str) -> list[CronJob]:
    """Return the scheduled jobs of the installation with REDIS_PREFIX ``prefix``.

    arq's job id for one run of a unique cron job is its name and time. The
    prefix in the name keeps one installation's run from standing in for
    another's on a shared Redis.
    """
    return [
        cron(
            prune_old_events,
            name=f"{prefix}cron:prune_old_events",
            hour=3,
            minute=17,
            unique=True,
        ),
        # Every minute, and once when a worker starts.
        cron(
            recover_imports,
            name=f"{prefix}cron:recover_imports",
            second=0,
            unique=True,
            run_at_startup=True,
        ),
        # Field encryption jobs that a stopped worker lost, every minute.
        cron(
            resume_sensitive_fields,
            name=f"{prefix}cron:resume_sensitive_fields",
            second=30,
            unique=True,
        ),
        # Due workflow timers, every five seconds and when a worker starts.
        # Each run's result (the number fired) is kept for a minute, so
        # operators and tests can see that the check runs.
        cron(
            workflow_jobs.run_due_timers,
            name=f"{prefix}cron:workflow_timers",
            second=set(range(0, 60, 5)),
            unique=True,
            run_at_startup=True,
            keep_result=RESULT_SECONDS,
        ),
        # Timer planning runs of time-based rules that a stopped worker
        # lost, every minute (app.workflows.planning).
        cron(
            workflow_jobs.resume_timer_plans,
            name=f"{prefix}cron:resume_timer_plans",
            second=40,
            unique=True,
        ),
        # Webhooks and other outbox messages that are due, every three seconds
        # and when a worker starts (app.webhooks.jobs).
        cron(
            relay_outbox,
            name=f"{prefix}cron:relay_outbox",
            second=set(range(0, 60, 3)),
            unique=True,
            run_at_startup=True,
        ),
        # Win models and the forecast snapshot, nightly.
        # Replies whose job was lost, every minute and when a worker starts.
        cron(
            requeue_unsent_replies,
            name=f"{prefix}cron:requeue_unsent_replies",
            second=30,
            unique=True,
            run_at_startup=True,
        ),
        cron(
            forecast_nightly,
            name=f"{prefix}cron:forecast_nightly",
            hour=2,
            minute=40,
            unique=True,
        ),
        # SLA warnings and breaches, every 15 seconds and when a worker starts,
        # with each run's counts kept for a minute.
        cron(
            check_sla_clocks,
            name=f"{prefix}cron:check_sla_clocks",
            second={0, 15, 30, 45},
            unique=True,
            run_at_startup=True,
            keep_result=RESULT_SECONDS,
        ),
        # The scoring model, retrained nightly, and sooner once enough
        # leads closed (checked every ten minutes).
        cron(
            train_scoring_model,
            name=f"{prefix}cron:train_scoring_model",
            hour=2,
            minute=41,
            unique=True,
        ),
        # Due campaigns, and campaigns whose sender stopped, every five
        # seconds and when a worker starts (workers.campaigns).
        cron(
            start_due_campaigns,
            name=f"{prefix}cron:start_due_campaigns",
            second=set(range(0, 60, 5)),
            unique=True,
            run_at_startup=True,
        ),
        cron(
            retrain_when_due,
            name=f"{prefix}cron:retrain_scoring_model",
            minute=set(range(3, 60, 10)),
            second=30,
            unique=True,
        ),
        # Win models of pipelines where enough deals closed since their
        # last training, checked every ten minutes.
        cron(
            retrain_win_models_when_due,
            name=f"{prefix}cron:retrain_win_models",
            minute=set(range(7, 60, 10)),
            second=45,
            unique=True,
        ),
        # Every open lead's score again, nightly and apart from training,
        # so that rule points with a half-life decay without edits.
        cron(
            rescore_open_leads_nightly,
            name=f"{prefix}cron:rescore_open_leads_nightly",
            hour=3,
            minute=5,
            unique=True,
        ),
    ]


class WorkerSettings:
    functions = [
        assign_job,
        import_files_job,
        forecast_nightly,
        train_win_models,
        retrain_win_models_when_due,
        rescore_deal_job,
        prune_old_events,
        send_mail_job,
        send_ticket_reply_job,
        send_password_reset_job,
        deliver_outbox_job,
        workflow_jobs.rescore_job,
        workflow_jobs.plan_timers_job,
        rescore_lead_job,
        rescore_open_leads_job,
        rescore_open_leads_nightly,
        train_scoring_model_job,
        send_campaign_job,
        send_campaign_test_job,
        sensitive_field_job,
    ]
    cron_jobs = scheduled_jobs(os.environ.get("REDIS_PREFIX", "crm:"))
    on_startup = startup
    on_shutdown = shutdown
    redis_settings = redis_settings(
        os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
    )
    queue_name = queue_name(os.environ.get("REDIS_PREFIX", "crm:"))
    max_jobs = 4
    # Seconds between the worker's polls of the queue. arq's default of 0.5 s
    # would alone take half of the 1 s a new lead score has to reach pages.
    poll_delay = float(os.environ.get("CRM_WORKER_POLL_DELAY", "0.1"))
    job_timeout = 3600
    health_check_interval = 30
