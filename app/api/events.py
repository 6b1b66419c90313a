"""The API's event socket: every record change the key may see, as JSON.

A client opens ``/api/v1/events`` with ``Authorization: Bearer <key>`` and
optionally ``?after=<seq>``, the last sequence number it processed. Every
event is numbered in one stream (``ALL_EVENTS_STREAM``), gapless and in
commit order, and the socket sends those about deals, tickets, accounts,
contacts, leads and comments (the types of ``RESOURCES``, and comments),
not pipelines, stages, campaigns, users or teams. The socket
replays the events after ``after`` from the event log, then sends a
``ready`` message and the live events, each once and in order. docs/api.md
describes the messages.

Each key is one variant of the stream, so an event is rendered once per key
connected to this process, with the key owner's access and the key's
scopes. A client receives only events about records its user may read and
whose type its key covers, without the fields hidden from the user. The
numbers of the events it does not receive are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from litestar import WebSocket, websocket
from litestar.datastructures import State
from litestar.exceptions import WebSocketDisconnect
from litestar.params import FromQuery

from app.access.guards import SIGNED_IN
from app.access.permissions import Access
from app.access.scopes import comment_permits, permits_record
from app.api.common import KEY_SCOPE
from app.api.keys import KeyHolder, check_key
from app.api.records import load_record
from app.api.resources import RESOURCES, teams_of
from app.auth.service import CurrentUser, load_user
from app.comments.tables import Comment
from app.errors import FieldError, NotFound
from app.events.service import ALL_EVENTS_STREAM, events_after, stream_positions
from realtime.hub import CLOSE_SIGNED_OUT, Client, Hub
from realtime.messages import Event

logger = logging.getLogger(__name__)

REPLAY_LIMIT = int(os.environ.get("CRM_REPLAY_LIMIT", "1000"))
MAX_MESSAGE_BYTES = 1024
# How often an open socket's key is checked for having been revoked or
# having expired.
KEY_CHECK_INTERVAL = float(os.environ.get("CRM_SESSION_CHECK_INTERVAL", "30"))
CLOSE_INTERNAL_ERROR = 1011
MAX_SEQ = 2**63 - 1
Position = Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]
# The events sent: "<record type>.<verb>" of the types the API serves.
RECORD_VERBS = ("created", "updated", "deleted")


class Replay(msgspec.Struct, tag="replay"):
    """A client's request for the events after ``after`` again."""

    after: Position


decode_message = msgspec.json.Decoder(Replay).decode
encoder = msgspec.json.Encoder()


@dataclass(frozen=True)
class KeyView:
    """The rights an event is filtered with: the key's user's, within its scopes."""

    access: Access
    holder: KeyHolder


# The keys with a socket open in this process, by variant.
_views: dict[str, KeyView] = {}
_view_sockets: dict[str, int] = {}


def variant_of(holder: KeyHolder) -> str:
    return f"key:{holder.id}"


class ApiClient(Client):
    """A socket that is sent JSON messages rather than page fragments.

    An event rendered as an empty text still moves the socket's position,
    so the ordering and replay rules of ``Client`` apply unchanged.
    """

    def send_event(self, stream: str, seq: int, html: str) -> None:
        self.sent[stream] = seq
        if html:
            self.offer(html)

    def offer_snapshot(self, stream: str, seq: int, html: str) -> None:
        # The stream could not be replayed: the client reads the records
        # again and continues from ``seq``.
        self.sent[stream] = seq
        self.offer(encoder.encode({"type": "reset", "seq": seq}).decode())


def hidden_removed(
    access: Access, record_type: str, changes: dict[str, Any]
) -> dict[str, Any]:
    hidden = access.hidden_fields(record_type)
    return {name: value for name, value in changes.items() if name not in hidden}


def before_values(event: Event) -> dict[str, Any]:
    """Return the values the event's changes had before, such as a deleted row."""
    before = {}
    for name, change in event.changes.items():
        if isinstance(change, list) and len(change) == 2:
            before[name] = change[0]
    return before


async def current_row(
    record_type: str, record_id: int, cache: dict[str, Any]
) -> dict[str, Any] | None:
    key = f"api-row:{record_type}:{record_id}"
    if key not in cache:
        try:
            cache[key] = await load_record(RESOURCES[record_type], record_id)
        except NotFound:
            cache[key] = None
    row: dict[str, Any] | None = cache[key]
    return row


async def with_owner_teams(record_type: str, row: dict[str, Any]) -> dict[str, Any]:
    """Add the owner's teams to a row rebuilt from an event, for scope checks."""
    if RESOURCES[record_type].team_field is not None or "owner_teams" in row:
        return row
    owner = row.get(RESOURCES[record_type].owner_field)
    return {**row, "owner_teams": await teams_of(owner) if owner else []}


async def comment_parent(
    event: Event, cache: dict[str, Any]
) -> tuple[str, dict[str, Any]] | None:
    """Return the type and row of the deal or ticket a comment event is about."""
    comment = None
    if not event.kind.endswith(".deleted"):
        key = f"api-comment:{event.record_id}"
        if key not in cache:
            cache[key] = (
                await Comment.select(Comment.deal, Comment.ticket)
                .where(Comment.id == event.record_id)
                .first()
            )
        comment = cache[key]
    source = comment or before_values(event) or event.changes
    for parent_type in ("deal", "ticket"):
        parent_id = source.get(parent_type)
        if isinstance(parent_id, int):
            parent = await current_row(parent_type, parent_id, cache)
            return (parent_type, parent) if parent is not None else None
    return None


def message(
    event: Event,
    seq: int,
    changes: dict[str, Any],
    record: dict[str, Any] | None,
    left_scope: bool = False,
) -> str:
    body = {
        "type": "event",
        "seq": seq,
        "event_id": event.id,
        "kind": event.kind,
        "record_type": event.record_type,
        "record_id": event.record_id,
        "actor": event.actor_id,
        "changes": changes,
        "record": record,
        "left_scope": left_scope,
    }
    return encoder.encode(body).decode()


async def render_for_view(
    event: Event, view: KeyView, seq: int, cache: dict[str, Any]
) -> str:
    """Render one event for one key, or return "" when it may not see it."""
    record_type = event.record_type
    access = view.access
    subject, _, verb = event.kind.partition(".")
    if subject != record_type or verb not in RECORD_VERBS:
        # Board reloads, import progress, notifications and the like.
        return ""
    if not view.holder.allows(record_type, "read"):
        return ""
    if record_type == "comment":
        found = await comment_parent(event, cache)
        if found is None:
            return ""
        parent_type, parent = found
        if not view.holder.allows(parent_type, "read"):
            return ""
        if not comment_permits(access, "read", parent_type, parent):
            return ""
        return message(
            event, seq, hidden_removed(access, "comment", event.changes), None
        )

    resource = RESOURCES.get(record_type)
    if resource is None:
        return ""
    if event.kind.endswith(".deleted"):
        before = await with_owner_teams(record_type, before_values(event))
        if not permits_record(access, record_type, "read", before):
            return ""
        return message(
            event, seq, hidden_removed(access, record_type, event.changes), None
        )

    row = await current_row(record_type, event.record_id, cache)
    if row is None:
        # Deleted since: its delete event follows this one.
        return ""
    if permits_record(access, record_type, "read", row):
        return message(
            event,
            seq,
            hidden_removed(access, record_type, event.changes),
            resource.present(access, row),
        )
    # Not readable now: tell a key that could read it before the change
    # that it left its view, without the values that moved it away.
    earlier = {**row, **before_values(event)}
    if resource.team_field is None and resource.owner_field in event.changes:
        earlier.pop("owner_teams", None)
    earlier = await with_owner_teams(record_type, earlier)
    if permits_record(access, record_type, "read", earlier):
        return message(event, seq, {}, None, left_scope=True)
    return ""


async def render_api_event(
    event: Event, topic: str, variants: set[str], cache: dict[str, Any]
) -> dict[str, str]:
    """Render an event of the stream of all events for each connected key."""
    seq = event.seqs.get(topic, 0)
    fragments = {}
    for variant in variants:
        view = _views.get(variant)
        fragments[variant] = (
            await render_for_view(event, view, seq, cache) if view else ""
        )
    return fragments


async def snapshot_api_stream(topic: str, variant: str) -> str:
    # ApiClient.offer_snapshot sends the reset message itself.
    return ""


def parse_after(raw: str | None) -> int | None:
    """Read the ``after`` query parameter: a sequence number, 0 or more."""
    value = (raw or "").strip()
    if not value:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > len(str(MAX_SEQ)):
        raise FieldError("after", raw, "must be a sequence number of 0 or more")
    after = int(value)
    if after > MAX_SEQ:
        raise FieldError("after", raw, f"must be at most {MAX_SEQ}")
    return after


def ready_message(client: Client) -> str:
    seq = client.sent.get(ALL_EVENTS_STREAM, 0)
    return encoder.encode({"type": "ready", "seq": seq}).decode()


async def start_live(hub: Hub, client: ApiClient, after: int | None) -> None:
    """Send the events after ``after``, or none before now, then ``ready``."""
    if after is None:
        client.hold()
        position = (await stream_positions([ALL_EVENTS_STREAM]))[ALL_EVENTS_STREAM]
        client.sent[ALL_EVENTS_STREAM] = position
        client.release()
    else:
        await catch_up_client(hub, client, after)
    client.offer(ready_message(client))


async def catch_up_client(hub: Hub, client: ApiClient, after: int) -> None:
    from realtime.resume import catch_up

    await catch_up(
        hub,
        client,
        {ALL_EVENTS_STREAM: after},
        events_after,
        stream_positions,
        REPLAY_LIMIT,
    )


async def key_still_valid(token: str, holder: KeyHolder) -> bool:
    checked = await check_key(token)
    if checked is None or checked.id != holder.id:
        return False
    return await load_user(holder.user_id) is not None


async def watch_key(token: str, client: ApiClient) -> None:
    """Close the socket once its key is revoked or expires, or its user is
    deactivated."""
    while not client.closing:
        await asyncio.sleep(KEY_CHECK_INTERVAL)
        try:
            valid = await key_still_valid(token, client_holder(client))
        except Exception:
            logger.exception("checking an event socket's key failed")
            continue
        if not valid:
            logger.info(
                "event socket closed: key no longer valid user_id=%s",
                client.user_id,
            )
            client.stop(CLOSE_SIGNED_OUT)


def client_holder(client: ApiClient) -> KeyHolder:
    return _views[client.subscriptions[0][1]].holder


def bearer_of(socket: WebSocket[Any, Any, Any]) -> str:
    value = socket.headers.get("authorization", "")
    return value.partition(" ")[2].strip()


@websocket(
    "/events",
    opt={"permission": SIGNED_IN, KEY_SCOPE: ""},
)
async def api_events(
    socket: WebSocket[CurrentUser, KeyHolder, State],
    after: FromQuery[str | None] = None,
) -> None:
    """Stream the record changes the key may see, from ``after`` on."""
    user = socket.user
    holder = socket.auth
    hub: Hub = socket.app.state.hub
    try:
        start = parse_after(after)
    except FieldError as error:
        logger.info("event socket rejected user_id=%s: %s", user.id, error)
        await socket.close(code=1008, reason=error.message[:120])
        return
    await socket.accept()

    variant = variant_of(holder)
    _views[variant] = KeyView(access=user.access, holder=holder)
    _view_sockets[variant] = _view_sockets.get(variant, 0) + 1
    client = ApiClient(socket=socket, user_id=user.id)
    # Live events wait until the replay is sent.
    client.hold()
    hub.join(client, ALL_EVENTS_STREAM, variant)
    writer = asyncio.create_task(client.write())
    watcher = asyncio.create_task(watch_key(bearer_of(socket), client))
    logger.info(
        "event socket opened user_id=%s key_id=%s after=%s", user.id, holder.id, start
    )
    try:
        await start_live(hub, client, start)
        await serve_requests(hub, client, socket)
    except WebSocketDisconnect:
        pass
    except Exception:
        logger.exception("event socket failed user_id=%s key_id=%s", user.id, holder.id)
        client.stop(CLOSE_INTERNAL_ERROR)
    finally:
        hub.leave(client)
        client.stop()
        watcher.cancel()
        _view_sockets[variant] -= 1
        if _view_sockets[variant] <= 0:
            _view_sockets.pop(variant, None)
            _views.pop(variant, None)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer, timeout=1)
        writer.cancel()


async def serve_requests(
    hub: Hub, client: ApiClient, socket: WebSocket[Any, Any, Any]
) -> None:
    """Serve replay requests until the client disconnects.

    Each message is checked against the key again, so a revoked key is cut
    off at its next message even before the periodic check.
    """
    token = bearer_of(socket)
    while not client.closing:
        text = await socket.receive_text()
        if len(text) > MAX_MESSAGE_BYTES:
            logger.warning("event socket message too large user_id=%s", client.user_id)
            continue
        if not await key_still_valid(token, client_holder(client)):
            logger.info(
                "event socket closed at a message: key no longer valid user_id=%s",
                client.user_id,
            )
            client.stop(CLOSE_SIGNED_OUT)
            return
        try:
            request = decode_message(text)
        except (msgspec.ValidationError, msgspec.DecodeError) as error:
            logger.warning(
                "invalid event socket message user_id=%s: %s", client.user_id, error
            )
            client.offer(
                encoder.encode(
                    {"type": "error", "detail": f"Invalid message: {error}"}
                ).decode()
            )
            continue
        await catch_up_client(hub, client, request.after)
        client.offer(ready_message(client))
