"""The Litestar application: pages, the live socket, sessions and CSRF."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar, Router, get
from litestar.config.csrf import CSRFConfig
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import Provide
from litestar.logging import LoggingConfig
from litestar.middleware.session.server_side import ServerSideSessionConfig
from litestar.plugins.htmx import HTMXPlugin
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect
from litestar.security.session_auth import SessionAuth
from litestar.static_files import create_static_files_router
from litestar.stores.redis import RedisStore
from litestar.template import TemplateConfig
from redis.asyncio import BlockingConnectionPool, Redis

from app.access.guards import PUBLIC, SIGNED_IN, check_permission
from app.audit.context import ClientAddressMiddleware
from app.audit.roles import warn_about_audit_rights
from app.auth.routes import AuthController
from app.auth.service import CurrentUser, load_user
from app.auth.user_cache import UserCache
from app.config import Settings
from app.db import start_pool
from app.deals.routes import DealController, PipelineController
from app.encryption.columns import set_keyring
from app.piccolo_conf import DB
from app.web.errors import EXCEPTION_HANDLERS
from app.web.live import (
    live_socket,
    live_status,
    provide_hub,
    provide_presence,
    realtime_lifespan,
)
from app.web.security import security_headers
from app.web.templating import STATIC_DIR, environment

logger = logging.getLogger(__name__)

SESSION_MAX_AGE = 8 * 3600
REDIS_CONNECTIONS = 128


async def retrieve_user(
    session: dict[str, Any], connection: ASGIConnection
) -> CurrentUser | None:
    """Return the session's user, or None once the session ended or timed out."""
    from app.auth.sessions import session_is_current
    from app.auth.signin import reject_pending_step

    user_id = session.get("user_id")
    if not isinstance(user_id, int):
        reject_pending_step(session)
        return None
    if not await session_is_current(session, connection):
        return None
    if connection.scope["type"] == "websocket":
        # Pages reconnect in bursts; see app.auth.user_cache.
        users: UserCache[CurrentUser] = connection.app.state.users
        return await users.get(user_id)
    return await load_user(user_id)


@get("/", sync_to_thread=False, opt={"permission": SIGNED_IN})
def home() -> Redirect:
    return Redirect("/pipelines")


@get(
    "/health", exclude_from_auth=True, sync_to_thread=False, opt={"permission": PUBLIC}
)
def health() -> dict[str, str]:
    return {"status": "ok"}


@contextlib.asynccontextmanager
async def redis_lifespan(app: Litestar) -> AsyncIterator[None]:
    """Close the Redis client that sessions and the bus share, at shutdown."""
    try:
        yield
    finally:
        await app.state.redis.aclose()


@contextlib.asynccontextmanager
async def database_lifespan(app: Litestar) -> AsyncIterator[None]:
    # A caller that opened the pool already (a test, a command) keeps it.
    owns_pool = DB.pool is None
    if owns_pool:
        await start_pool(DB, min_size=2, max_size=20)
    await warn_about_audit_rights("web")
    try:
        yield
    finally:
        if owns_pool:
            await DB.close_connection_pool()


@contextlib.asynccontextmanager
async def sensitive_fields_lifespan(app: Litestar) -> AsyncIterator[None]:
    """Reload the fields marked sensitive every few seconds while serving."""
    from app.encryption.marked import keep_fresh, refresh

    await refresh()
    refresher = asyncio.create_task(keep_fresh())
    try:
        yield
    finally:
        refresher.cancel()


@contextlib.asynccontextmanager
async def queue_lifespan(app: Litestar) -> AsyncIterator[None]:
    """Open the arq pool that web requests enqueue background jobs on."""
    from workers.connection import open_queue

    settings = app.state.settings
    app.state.arq = await open_queue(settings.redis_url, settings.redis_prefix)
    try:
        yield
    finally:
        await app.state.arq.aclose()


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    set_keyring(settings.encryption_keys)
    from app.access.routes import AdminController
    from app.accounts.routes import AccountController
    from app.api.docs import openapi_config, openapi_document
    from app.api.pages import AdminApiKeyController, ApiKeyController
    from app.api.routes import API_ROUTER
    from app.assignment.routes import AssignmentAdminController, AvailabilityController
    from app.audit.routes import AuditAdminController, HistoryController
    from app.campaigns.routes import (
        CSRF_EXEMPT_PATH as UNSUBSCRIBE_CSRF_EXEMPT_PATH,
    )
    from app.campaigns.routes import CampaignController, UnsubscribeController
    from app.contacts.routes import ContactController
    from app.deals.admin import PipelineAdminController
    from app.email.routes import (
        INBOUND_ROUTER,
        ReplyTemplateAdminController,
        TicketEmailController,
    )
    from app.encryption.routes import SensitiveFieldAdminController
    from app.exports.routes import ExportController
    from app.forecast.routes import ForecastController, QuotaAdminController
    from app.imports.routes import ImportController
    from app.leads.routes import LeadBoardController, LeadController
    from app.leads.webform import CSRF_EXEMPT_PATH, WebFormController
    from app.leads.webform_admin import WebFormAdminController
    from app.scoring.routes import ScoringAdminController
    from app.search.routes import SearchController
    from app.sla.routes import SlaAdminController, SlaReportController
    from app.tasks.routes import TaskController
    from app.tickets.routes import TicketBoardController, TicketController
    from app.web.deletion import DELETE_ROUTES
    from app.webhooks.routes import WebhookAdminController
    from app.workflows.routes import WorkflowController

    # Bounded, so a burst of reconnecting pages waits for a connection
    # instead of opening one per command in flight. from_pool hands the pool
    # to the client, so closing the client closes its connections too.
    redis = Redis.from_pool(
        BlockingConnectionPool.from_url(
            settings.redis_url, max_connections=REDIS_CONNECTIONS, timeout=60
        )
    )
    sessions = RedisStore(redis, namespace=f"{settings.redis_prefix}sessions")
    session_auth = SessionAuth[CurrentUser, Any](
        retrieve_user_handler=retrieve_user,
        session_backend_config=ServerSideSessionConfig(
            store="sessions", max_age=SESSION_MAX_AGE, httponly=True, samesite="lax"
        ),
        exclude=["^/login", "^/static", "^/health"],
    )

    return Litestar(
        route_handlers=[
            home,
            health,
            # Sign-in pages are for everyone; check_permission lets requests
            # without a user through, and the others are any user's own.
            Router("/", route_handlers=[AuthController], opt={"permission": SIGNED_IN}),
            PipelineController,
            DealController,
            SearchController,
            TicketBoardController,
            TicketController,
            TicketEmailController,
            TaskController,
            ReplyTemplateAdminController,
            INBOUND_ROUTER,
            AccountController,
            ContactController,
            ImportController,
            ForecastController,
            QuotaAdminController,
            ExportController,
            LeadBoardController,
            LeadController,
            WebFormController,
            WebFormAdminController,
            ScoringAdminController,
            AdminController,
            SensitiveFieldAdminController,
            WorkflowController,
            SlaAdminController,
            SlaReportController,
            AssignmentAdminController,
            PipelineAdminController,
            AvailabilityController,
            HistoryController,
            *DELETE_ROUTES,
            AuditAdminController,
            WebhookAdminController,
            CampaignController,
            UnsubscribeController,
            live_socket,
            live_status,
            ApiKeyController,
            AdminApiKeyController,
            API_ROUTER,
            openapi_document,
            create_static_files_router(path="/static", directories=[STATIC_DIR]),
        ],
        dependencies={
            "hub": Provide(provide_hub, sync_to_thread=False),
            "presence": Provide(provide_presence, sync_to_thread=False),
        },
        lifespan=[
            redis_lifespan,
            database_lifespan,
            sensitive_fields_lifespan,
            queue_lifespan,
            realtime_lifespan,
        ],
        # Every route declares the permission it needs (app.access.guards).
        guards=[check_permission],
        # The OpenAPI document covers the /api/v1 routes only, whose router
        # sets include_in_schema back to True.
        openapi_config=openapi_config(),
        include_in_schema=False,
        # Sets the client address that audit rows record.
        middleware=[ClientAddressMiddleware()],
        stores={"sessions": sessions},
        state=State(
            {"settings": settings, "redis": redis, "users": UserCache(load_user)}
        ),
        on_app_init=[session_auth.on_app_init],
        csrf_config=CSRFConfig(
            secret=settings.secret_key,
            cookie_name="csrftoken",
            header_name="x-csrftoken",
            cookie_samesite="lax",
            # Pages read the token from their csrf-token meta tag, never the cookie.
            cookie_httponly=True,
            # The web-to-lead form is posted from other sites' pages, which
            # cannot have our token; it changes no existing record.
            # The unsubscribe link's one-click POST (RFC 8058) comes from
            # mail providers; its signed token authorises it.
            exclude=[CSRF_EXEMPT_PATH, UNSUBSCRIBE_CSRF_EXEMPT_PATH],
        ),
        before_send=[
            security_headers(always_secure_cookies=settings.secure_cookies == "always")
        ],
        template_config=TemplateConfig(
            engine=JinjaTemplateEngine.from_environment(environment)
        ),
        plugins=[HTMXPlugin()],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        logging_config=LoggingConfig(
            root={"level": "INFO", "handlers": ["queue_listener"]},
            log_exceptions="never",
        ),
        debug=settings.debug,
    )
