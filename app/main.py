"""The Litestar application: pages, the live socket, sessions and CSRF."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar, get
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
from redis.asyncio import Redis

from app.auth.routes import AuthController
from app.auth.service import CurrentUser, load_user
from app.config import Settings
from app.deals.routes import DealController, PipelineController
from app.piccolo_conf import DB
from app.web.errors import EXCEPTION_HANDLERS
from app.web.live import live_socket, provide_hub, provide_presence, realtime_lifespan
from app.web.templating import STATIC_DIR, environment

logger = logging.getLogger(__name__)

SESSION_MAX_AGE = 8 * 3600


async def retrieve_user(
    session: dict[str, Any], connection: ASGIConnection
) -> CurrentUser | None:
    user_id = session.get("user_id")
    return await load_user(user_id) if isinstance(user_id, int) else None


@get("/", sync_to_thread=False)
def home() -> Redirect:
    return Redirect("/pipelines")


@get("/health", exclude_from_auth=True, sync_to_thread=False)
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
        await DB.start_connection_pool(min_size=2, max_size=20)
    try:
        yield
    finally:
        if owns_pool:
            await DB.close_connection_pool()


@contextlib.asynccontextmanager
async def queue_lifespan(app: Litestar) -> AsyncIterator[None]:
    """Open the arq pool that web requests enqueue background jobs on."""
    from arq import create_pool

    from workers.connection import queue_name, redis_settings

    settings = app.state.settings
    app.state.arq = await create_pool(
        redis_settings(settings.redis_url),
        default_queue_name=queue_name(settings.redis_prefix),
    )
    try:
        yield
    finally:
        await app.state.arq.aclose()


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    from app.accounts.routes import AccountController
    from app.contacts.routes import ContactController
    from app.imports.routes import ImportController
    from app.tickets.routes import TicketBoardController, TicketController

    redis = Redis.from_url(settings.redis_url)
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
            AuthController,
            PipelineController,
            DealController,
            TicketBoardController,
            TicketController,
            AccountController,
            ContactController,
            ImportController,
            live_socket,
            create_static_files_router(path="/static", directories=[STATIC_DIR]),
        ],
        dependencies={
            "hub": Provide(provide_hub, sync_to_thread=False),
            "presence": Provide(provide_presence, sync_to_thread=False),
        },
        lifespan=[redis_lifespan, database_lifespan, queue_lifespan, realtime_lifespan],
        stores={"sessions": sessions},
        state=State({"settings": settings, "redis": redis}),
        on_app_init=[session_auth.on_app_init],
        csrf_config=CSRFConfig(
            secret=settings.secret_key,
            cookie_name="csrftoken",
            header_name="x-csrftoken",
            cookie_samesite="lax",
        ),
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
