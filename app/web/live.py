"""The one websocket each page opens, and the process's share of the bus.

A page connects to ``/live?topic=...`` and, with ``resume=1``, sends as its
first message the last sequence number it has applied of each stream::

    {"type": "resume", "streams": {"pipeline:3": 41}}

It may later ask for a range it missed, after seeing a jump in numbers::

    {"type": "replay", "stream": "pipeline:3", "after": 57}

Everything the server sends is a frame of htmx out-of-band fragments with a
header line (see ``realtime.messages``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec
from litestar import Litestar, WebSocket, get, websocket
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import WebSocketDisconnect
from litestar.params import FromQuery, QueryParameter

from app.access.guards import SIGNED_IN
from app.auth.service import CurrentUser
from app.boards import BoardFilter
from app.errors import FieldError, NotFound
from app.events.service import (
    events_after,
    publish_control,
    relay_unpublished,
    set_bus,
    stream_positions,
)
from app.web.stream_views import StreamView, with_views
from realtime.bus import Bus, consume
from realtime.hub import (
    ACCESS_CHANGED,
    SESSION_ENDED,
    USER_DEACTIVATED,
    Client,
    Hub,
)
from realtime.messages import Event, Viewer
from realtime.presence import Presence, PresenceTracker
from realtime.resume import catch_up, repair_behind

logger = logging.getLogger(__name__)

# Close code for a refused subscription; the htmx ws extension does not
# reconnect after it.
CLOSE_POLICY_VIOLATION = 1008
CLOSE_INTERNAL_ERROR = 1011
# A page this many events behind on a stream gets a fresh render instead.
REPLAY_LIMIT = int(os.environ.get("CRM_REPLAY_LIMIT", "1000"))
# How long a page that promised a resume message may take to send it.
RESUME_TIMEOUT = 5.0
MAX_MESSAGE_BYTES = 8192
SESSION_COOKIE = "session"
FIELD_NAME = re.compile(r"[a-z_]{1,40}")
RELAY_INTERVAL = 1.0
# How often the sessions of open sockets are checked for having ended or
# timed out. Sign-out closes its sockets at once; this catches timeouts.
SESSION_CHECK_INTERVAL = float(os.environ.get("CRM_SESSION_CHECK_INTERVAL", "30"))
# Sockets are checked for missed events every this many relay intervals.
REPAIR_EVERY = 3
# Tells the page that the replay is over and it shows the present.
READY_FRAME = "#ready\n"


# A sequence number as pages send it: a stream's numbers are PostgreSQL
# bigints, so anything outside them is refused before it reaches a query.
Position = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class Resume(msgspec.Struct, tag="resume"):
    streams: dict[str, Position]


class Replay(msgspec.Struct, tag="replay"):
    stream: str
    after: Position


class PresenceUpdate(msgspec.Struct, tag="presence"):
    """The page user's activity: the field they edit and whether they type."""

    editing: str | None = None
    typing: bool = False


ClientMessage = Resume | Replay | PresenceUpdate
decode_message = msgspec.json.Decoder(ClientMessage).decode


@websocket("/live", opt={"permission": SIGNED_IN})
async def live_socket(
    socket: WebSocket[CurrentUser, dict[str, Any], State],
    hub: NamedDependency[Hub],
    presence: NamedDependency[PresenceTracker],
    topic: FromQuery[list[str]],
    person: FromQuery[str | None] = None,
    team: FromQuery[str | None] = None,
    resume: FromQuery[bool] = False,
    view: FromQuery[str | None] = None,
    shows_presence: Annotated[bool, QueryParameter(name="presence")] = True,
) -> None:
    from app.web.topics import resolve_topic

    user = socket.user
    if not same_origin(socket):
        # Another site's page must not open a socket with our user's cookie.
        logger.warning(
            "socket from another origin rejected user_id=%s origin=%s",
            user.id,
            socket.headers.get("origin"),
        )
        await socket.close(code=CLOSE_POLICY_VIOLATION, reason="origin not allowed")
        return
    await socket.accept()
    client = Client(
        socket=socket,
        user_id=user.id,
        session=session_digest(socket.cookies.get(SESSION_COOKIE)),
        shows_presence=shows_presence,
    )
    try:
        board = BoardFilter.parse(person, team)
        variants = [(name, await resolve_topic(name, user, board)) for name in topic]
        page_view = {view.name: view for view in pipeline_views()}.get(view or "")
        if page_view is not None:
            # The forecast page and the deal list follow the pipeline streams
            # with fragments of their own.
            filter_query = ""
            if page_view.read_filter is not None:
                filter_query = page_view.read_filter(socket.query_params, user.access)
            variants = [
                (
                    name,
                    page_view.variant(value, filter_query)
                    if name[:9] == "pipeline:"
                    else value,
                )
                for name, value in variants
            ]
    except (FieldError, NotFound) as error:
        logger.info(
            "subscription rejected user_id=%s topics=%s: %s", user.id, topic, error
        )
        await socket.close(code=CLOSE_POLICY_VIOLATION, reason=str(error)[:120])
        return

    if resume:
        # Live events wait until the page has sent its positions.
        client.hold()
    for name, variant in variants:
        hub.join(client, name, variant)
    topics = [name for name, _ in variants]
    client.viewer = Viewer(user_id=user.id, name=user.name)
    writer = asyncio.create_task(client.write())
    try:
        await presence.joined(client)
        await serve_client(hub, presence, client, socket, awaiting_resume=resume)
    except WebSocketDisconnect:
        pass
    except Exception:
        logger.exception("live socket failed user_id=%s topics=%s", user.id, topic)
        client.stop(CLOSE_INTERNAL_ERROR)
    finally:
        hub.leave(client)
        client.stop()
        with contextlib.suppress(Exception):
            await presence.left(client, topics)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer, timeout=1)
        writer.cancel()


def pipeline_views() -> list[StreamView]:
    """Return the pages' own views of the pipeline streams."""
    from app.deals.list_live import DEAL_LIST
    from app.forecast.live import FORECAST

    return [FORECAST, DEAL_LIST]


async def serve_client(
    hub: Hub,
    presence: PresenceTracker,
    client: Client,
    socket: WebSocket[Any, Any, Any],
    awaiting_resume: bool,
) -> None:
    """Serve the page's resume and replay requests until it disconnects."""
    while not client.closing:
        try:
            timeout = RESUME_TIMEOUT if awaiting_resume else None
            text = await asyncio.wait_for(socket.receive_text(), timeout)
        except TimeoutError:
            logger.info("no resume message, going live user_id=%s", client.user_id)
            awaiting_resume = False
            client.release()
            continue

        message = parse_message(text, client)
        if isinstance(message, Resume):
            awaiting_resume = False
            await catch_up(
                hub,
                client,
                message.streams,
                events_after,
                stream_positions,
                REPLAY_LIMIT,
            )
            client.offer(READY_FRAME)
        elif isinstance(message, PresenceUpdate):
            editing = message.editing
            if editing is not None and not FIELD_NAME.fullmatch(editing):
                editing = None
            await presence.changed(client, editing, message.typing)
        elif isinstance(message, Replay):
            subscribed = {name for name, _ in client.subscriptions}
            if message.stream in subscribed:
                await catch_up(
                    hub,
                    client,
                    {message.stream: message.after},
                    events_after,
                    stream_positions,
                    REPLAY_LIMIT,
                )


def parse_message(text: str, client: Client) -> ClientMessage | None:
    if len(text) > MAX_MESSAGE_BYTES:
        logger.warning("socket message too large user_id=%s", client.user_id)
        return None
    try:
        return decode_message(text)
    except msgspec.ValidationError as error:
        logger.warning("invalid socket message user_id=%s: %s", client.user_id, error)
    except msgspec.DecodeError:
        logger.warning("undecodable socket message user_id=%s", client.user_id)
    return None


def same_origin(socket: WebSocket[Any, Any, Any]) -> bool:
    """Accept sockets from this site's pages, and from clients that are not
    browsers (they send no Origin)."""
    origin = socket.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == socket.headers.get("host")


def session_digest(session_id: str | None) -> str | None:
    """Name a session on the bus without sending its id around."""
    if not session_id:
        return None
    return hashlib.sha256(session_id.encode()).hexdigest()[:24]


async def end_session_sockets(session_id: str | None) -> None:
    """Close, on every web process, the sockets opened with this session."""
    digest = session_digest(session_id)
    if digest is not None:
        await publish_control(SESSION_ENDED, {"session": digest})


@get(
    "/live/status",
    status_code=204,
    sync_to_thread=False,
    opt={"permission": SIGNED_IN},
)
def live_status() -> None:
    """Return 204 while the session lasts and 401 after it ended.

    A socket rejected at its handshake looks to the page like a network
    failure. The page requests this URL, so that a tab that missed its sign-out
    (it was offline, or the session timed out) goes to the sign-in page
    rather than retrying forever.
    """


async def close_ended_sessions(app: Litestar, hub: Hub) -> int:
    """Close the local sockets whose sessions ended; return how many sessions."""
    from app.auth.sessions import SessionIndex

    settings = app.state.settings
    index = SessionIndex(app.state.redis, settings.redis_prefix)
    pairs = [
        (client.user_id, client.session) for client in hub.clients if client.session
    ]
    ended = await index.ended(pairs, settings.sign_in, time.time())
    for digest in ended:
        hub.end_session(digest)
    if ended:
        logger.info("closed sockets of ended sessions count=%d", len(ended))
    return len(ended)


async def watch_sessions_forever(app: Litestar, hub: Hub) -> None:
    while True:
        await asyncio.sleep(SESSION_CHECK_INTERVAL)
        try:
            await close_ended_sessions(app, hub)
        except Exception:
            logger.exception("checking the sessions of open sockets failed")


def provide_hub(socket: WebSocket[Any, Any, Any]) -> Hub:
    hub: Hub = socket.app.state.hub
    return hub


def provide_presence(socket: WebSocket[Any, Any, Any]) -> PresenceTracker:
    tracker: PresenceTracker = socket.app.state.presence
    return tracker


async def relay_forever(hub: Hub, interval: float = RELAY_INTERVAL) -> None:
    """Publish events whose publication failed, and repair sockets that
    missed events, for as long as the app runs."""
    positions: dict[str, int] = {}
    ticks = 0
    while True:
        await asyncio.sleep(interval)
        ticks += 1
        try:
            await relay_unpublished()
            if ticks % REPAIR_EVERY == 0:
                positions = await repair_behind(
                    hub, positions, events_after, stream_positions, REPLAY_LIMIT
                )
        except Exception:
            logger.exception("relay or repair of live events failed")


@contextlib.asynccontextmanager
async def realtime_lifespan(app: Litestar) -> AsyncIterator[None]:
    """Subscribe this process to the bus for as long as the app runs."""
    from app.accounts.live import render_account_page, snapshot_account_page
    from app.api.events import render_api_event, snapshot_api_stream
    from app.campaigns.live import render_campaign, snapshot_campaign
    from app.contacts.live import render_contact_page, snapshot_contact_page
    from app.deals.live import (
        render_deal_page,
        render_pipeline,
        snapshot_deal_page,
        snapshot_pipeline,
    )
    from app.imports.live import render_import, snapshot_import
    from app.leads.live import (
        render_lead_board,
        render_lead_list,
        render_lead_page,
        snapshot_lead_board,
        snapshot_lead_page,
    )
    from app.tickets.live import (
        render_ticket_board,
        render_ticket_page,
        snapshot_ticket_board,
        snapshot_ticket_page,
    )
    from app.web.presence import render_presence
    from app.workflows.live import (
        render_notification,
        render_timer_plan,
        snapshot_timer_plan,
    )

    settings = app.state.settings
    bus = Bus(app.state.redis, settings.redis_prefix)
    hub = Hub()
    hub.register(
        "pipeline", *with_views(render_pipeline, snapshot_pipeline, pipeline_views())
    )
    hub.register("deal", render_deal_page, snapshot_deal_page)
    hub.register("tickets", render_ticket_board, snapshot_ticket_board)
    hub.register("ticket", render_ticket_page, snapshot_ticket_page)
    hub.register("account", render_account_page, snapshot_account_page)
    hub.register("contact", render_contact_page, snapshot_contact_page)
    hub.register("import", render_import, snapshot_import)
    hub.register("lead", render_lead_page, snapshot_lead_page)
    hub.register("leads", render_lead_list)
    hub.register("lead-board", render_lead_board, snapshot_lead_board)
    hub.register("user", render_notification)
    hub.register("campaign", render_campaign, snapshot_campaign)
    hub.register("workflow-rule", render_timer_plan, snapshot_timer_plan)
    hub.register("*", render_api_event, snapshot_api_stream)
    app.state.hub = hub
    app.state.presence = PresenceTracker(
        Presence(app.state.redis, settings.redis_prefix),
        bus,
        hub,
        render_presence,
        # Each page's own notification stream has no one else on it, and
        # API sockets ("*") show no one's presence.
        private_families=frozenset({"user", "*"}),
    )
    set_bus(bus)

    ready = asyncio.Event()
    users = app.state.users

    async def dispatch(event: Event) -> int:
        if event.kind in (ACCESS_CHANGED, USER_DEACTIVATED):
            # Forgotten before the hub closes the user's sockets, so that
            # the pages reconnect with the user as they are now.
            user_id = event.changes.get("user_id")
            users.forget(user_id if isinstance(user_id, int) else None)
        return await hub.dispatch(event)

    consumer = asyncio.create_task(consume(bus, dispatch, ready))
    relay = asyncio.create_task(relay_forever(hub))
    heartbeat = asyncio.create_task(app.state.presence.heartbeat_forever())
    parked = asyncio.create_task(hub.flush_parked_forever())
    sessions = asyncio.create_task(watch_sessions_forever(app, hub))
    await asyncio.wait_for(ready.wait(), timeout=10)
    try:
        yield
    finally:
        hub.close_all()
        with contextlib.suppress(Exception):
            await app.state.presence.close()
        for task in (consumer, relay, heartbeat, parked, sessions):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        set_bus(None)
        logger.info("realtime stopped")
