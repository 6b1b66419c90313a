"""Server-side sessions: a fresh id at sign-in, timeouts, and each user's index.

Litestar keeps each session under ``<REDIS_PREFIX>sessions:<id>``. Next to
it, every signed-in session is listed in two Redis keys of its user::

    <REDIS_PREFIX>user-sessions:<user_id>       hash: digest -> SessionInfo
    <REDIS_PREFIX>user-sessions-seen:<user_id>  sorted set: digest -> last seen

``digest`` is ``session_digest(id)``, the name pages and the bus use for a
session without its id. A session missing from the index is rejected on its
next request, so ending one is removing it here, deleting its stored data
and closing its sockets.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import secrets
import time
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from redis.asyncio import Redis

from app.config import Settings, SignInSecurity
from app.web.live import SESSION_COOKIE, session_digest
from realtime.bus import Bus
from realtime.hub import SESSION_ENDED
from realtime.messages import Event

logger = logging.getLogger(__name__)

# Must match the namespace of the session store in app.main.create_app.
STORE_NAMESPACE = "sessions"
SESSION_ID_BYTES = 32
# Maximum length of a stored user agent, in characters.
MAX_USER_AGENT = 300

# Updates the last-seen time of a session that is still listed and not idle.
# Returns 1 for an active session, 0 for one not listed (ended elsewhere) and
# -1 for one idle longer than ARGV[3] seconds.
TOUCH_SCRIPT = """
local seen = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not seen then
    return 0
end
if tonumber(ARGV[2]) - tonumber(seen) > tonumber(ARGV[3]) then
    return -1
end
redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[1])
return 1
"""


class SessionInfo(msgspec.Struct, frozen=True):
    """Index entry of one session; ``id`` is its key in the session store."""

    id: str
    created_at: float
    address: str
    user_agent: str


@dataclass(frozen=True)
class ListedSession:
    """One row of the active sessions page."""

    digest: str
    created_at: dt.datetime
    last_seen: dt.datetime
    address: str
    user_agent: str
    current: bool


encode_info = msgspec.json.Encoder().encode
decode_info = msgspec.json.Decoder(SessionInfo).decode


class SessionIndex:
    """The sessions of each user in Redis, and the stored session data."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix

    def info_key(self, user_id: int) -> str:
        return f"{self.prefix}user-sessions:{user_id}"

    def seen_key(self, user_id: int) -> str:
        return f"{self.prefix}user-sessions-seen:{user_id}"

    def store_key(self, session_id: str) -> str:
        return f"{self.prefix}{STORE_NAMESPACE}:{session_id}"

    async def add(
        self,
        user_id: int,
        session_id: str,
        address: str,
        user_agent: str,
        now: float,
        keep_for: int,
    ) -> None:
        """List a new session; the index keys live ``keep_for`` seconds longer."""
        digest = digest_of(session_id)
        info = SessionInfo(
            id=session_id,
            created_at=now,
            address=address,
            user_agent=user_agent[:MAX_USER_AGENT],
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.info_key(user_id), digest, encode_info(info).decode())
            pipe.zadd(self.seen_key(user_id), {digest: now})
            pipe.expire(self.info_key(user_id), keep_for)
            pipe.expire(self.seen_key(user_id), keep_for)
            await pipe.execute()

    async def touch(self, user_id: int, digest: str, now: float, idle: int) -> int:
        """Mark a session seen now; see TOUCH_SCRIPT for the result."""
        script = self.redis.register_script(TOUCH_SCRIPT)
        result = await script(keys=[self.seen_key(user_id)], args=[digest, now, idle])
        return int(result)

    async def infos(self, user_id: int) -> dict[str, SessionInfo]:
        raw: dict[bytes, bytes] = await cast(
            "Awaitable[dict[bytes, bytes]]", self.redis.hgetall(self.info_key(user_id))
        )
        return {key.decode(): decode_info(value) for key, value in raw.items()}

    async def remove(self, user_id: int, infos: Mapping[str, SessionInfo]) -> None:
        """Delete these sessions' data and index entries (digest -> info)."""
        if not infos:
            return
        digests = list(infos)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self.info_key(user_id), *digests)
            pipe.zrem(self.seen_key(user_id), *digests)
            pipe.delete(*[self.store_key(info.id) for info in infos.values()])
            await pipe.execute()

    async def end(self, user_id: int, digests: list[str]) -> int:
        """End these sessions of the user and close their sockets everywhere.

        Digests the user has no session for are ignored. Returns the number
        of sessions ended.
        """
        infos = await self.infos(user_id)
        chosen = {digest: infos[digest] for digest in digests if digest in infos}
        await self.remove(user_id, chosen)
        await self.close_sockets(list(chosen))
        return len(chosen)

    async def close_sockets(self, digests: list[str]) -> None:
        """Tell every web process to close the sockets of these sessions."""
        events = [
            Event(
                id=0,
                kind=SESSION_ENDED,
                topics=[],
                record_type="",
                record_id=0,
                changes={"session": digest},
            )
            for digest in digests
        ]
        await Bus(self.redis, self.prefix).publish(events)

    async def ended(
        self, sessions: Iterable[tuple[int, str]], limits: SignInSecurity, now: float
    ) -> set[str]:
        """Return the digests among (user id, digest) pairs whose session is over.

        A session is over once it is no longer listed (signed out, ended
        from the sessions page, reset password) or has passed its idle or
        absolute timeout. Nothing is changed; the next request of such a
        session removes it.
        """
        pairs = sorted(set(sessions))
        if not pairs:
            return set()
        async with self.redis.pipeline(transaction=False) as pipe:
            for user_id, digest in pairs:
                pipe.zscore(self.seen_key(user_id), digest)
                pipe.hget(self.info_key(user_id), digest)
            replies = await pipe.execute()
        over = set()
        for (_, digest), seen, raw in zip(
            pairs, replies[::2], replies[1::2], strict=True
        ):
            if seen is None or raw is None:
                over.add(digest)
                continue
            created_at = decode_info(raw).created_at
            if (
                now - seen > limits.session_idle_timeout
                or now - created_at > limits.session_absolute_timeout
            ):
                over.add(digest)
        return over

    async def active(
        self,
        user_id: int,
        limits: SignInSecurity,
        now: float,
    ) -> list[tuple[str, SessionInfo, float]]:
        """Return the user's live sessions, newest activity first.

        Entries whose session timed out or whose stored data is gone (it
        expired in Redis) are removed on the way.
        """
        infos = await self.infos(user_id)
        seen = dict(
            await self.redis.zrange(self.seen_key(user_id), 0, -1, withscores=True)
        )
        last_seen = {key.decode(): score for key, score in seen.items()}
        async with self.redis.pipeline(transaction=False) as pipe:
            for info in infos.values():
                pipe.exists(self.store_key(info.id))
            stored = await pipe.execute()

        live: list[tuple[str, SessionInfo, float]] = []
        stale: dict[str, SessionInfo] = {}
        for (digest, info), exists in zip(infos.items(), stored, strict=True):
            seen_at = last_seen.get(digest)
            expired = (
                seen_at is None
                or not exists
                or now - seen_at > limits.session_idle_timeout
                or now - info.created_at > limits.session_absolute_timeout
            )
            if expired:
                stale[digest] = info
            else:
                live.append((digest, info, seen_at or info.created_at))
        await self.remove(user_id, stale)
        live.sort(key=lambda item: item[2], reverse=True)
        return live


def digest_of(session_id: str) -> str:
    digest = session_digest(session_id)
    assert digest is not None
    return digest


def client_address(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """Return the client's IP address as uvicorn saw it (after trusted proxies)."""
    return connection.client.host if connection.client else "unknown"


def index_for(connection: ASGIConnection[Any, Any, Any, Any]) -> SessionIndex:
    settings: Settings = connection.app.state.settings
    return SessionIndex(connection.app.state.redis, settings.redis_prefix)


async def start_session(request: Request[Any, Any, Any], data: dict[str, Any]) -> str:
    """Replace the request's session with ``data`` under a newly generated id.

    The old session's data is deleted, and if it belonged to a signed-in user
    it is ended like any other, so an id planted in the browser before
    sign-in is worthless afterwards. Returns the new session id.
    """
    index = index_for(request)
    old_id = request.cookies.get(SESSION_COOKIE)
    old_user = request.session.get("user_id") if request.session else None
    if old_id and isinstance(old_user, int):
        await index.end(old_user, [digest_of(old_id)])
    elif old_id:
        await index.redis.delete(index.store_key(old_id))

    new_id = secrets.token_hex(SESSION_ID_BYTES)
    # Litestar's server-side session middleware (2.25) reuses the id in the
    # request's session cookie. Its connection shares this parsed cookie
    # dict, so setting the cookie here makes it store the session under
    # the new id and send that id back.
    request.cookies[SESSION_COOKIE] = new_id
    if ASGIConnection(request.scope).cookies.get(SESSION_COOKIE) != new_id:
        raise RuntimeError(
            "cannot rotate the session id: this Litestar version does not share "
            "parsed cookies with the session middleware"
        )
    request.set_session(data)
    return new_id


async def sign_in_session(
    request: Request[Any, Any, Any], user_id: int, **extra: Any
) -> str:
    """Start a signed-in session for the user and list it in their index."""
    settings: Settings = request.app.state.settings
    now = time.time()
    session_id = await start_session(
        request, {"user_id": user_id, "created_at": now, **extra}
    )
    await index_for(request).add(
        user_id,
        session_id,
        client_address(request),
        request.headers.get("user-agent", ""),
        now,
        settings.sign_in.session_absolute_timeout + 60,
    )
    logger.info("session started user_id=%s", user_id)
    return session_id


async def session_is_current(
    session: dict[str, Any], connection: ASGIConnection[Any, Any, Any, Any]
) -> bool:
    """Check a signed-in session against its index entry and both timeouts.

    Marks the session seen. A session that timed out is ended, which also
    closes its sockets; the caller then treats the request as signed out.
    """
    settings: Settings = connection.app.state.settings
    limits = settings.sign_in
    user_id = session["user_id"]
    session_id = connection.cookies.get(SESSION_COOKIE)
    created_at = session.get("created_at")
    if not session_id or not isinstance(created_at, int | float):
        return False

    index = index_for(connection)
    digest = digest_of(session_id)
    now = time.time()
    if now - created_at > limits.session_absolute_timeout:
        await index.end(user_id, [digest])
        logger.info("session reached its absolute timeout user_id=%s", user_id)
        return False

    state = await index.touch(user_id, digest, now, limits.session_idle_timeout)
    if state == -1:
        await index.end(user_id, [digest])
        logger.info("session reached its idle timeout user_id=%s", user_id)
        return False
    if state == 0:
        logger.info("session not in the index, treated as ended user_id=%s", user_id)
        return False
    return True


async def list_sessions(
    connection: ASGIConnection[Any, Any, Any, Any], user_id: int
) -> list[ListedSession]:
    settings: Settings = connection.app.state.settings
    current = connection.cookies.get(SESSION_COOKIE)
    current_digest = digest_of(current) if current else None
    rows = await index_for(connection).active(user_id, settings.sign_in, time.time())
    return [
        ListedSession(
            digest=digest,
            created_at=dt.datetime.fromtimestamp(info.created_at, dt.UTC),
            last_seen=dt.datetime.fromtimestamp(last_seen, dt.UTC),
            address=info.address,
            user_agent=info.user_agent,
            current=digest == current_digest,
        )
        for digest, info, last_seen in rows
    ]


@functools.cache
def process_settings() -> Settings:
    return Settings.from_env()


async def end_all_sessions(user_id: int, keep: str | None = None) -> int:
    """End every session of the user except ``keep``, on every web process.

    ``keep`` is a session id as the session cookie carries it, such as the
    current request's. The sessions' stored data is deleted and their
    sockets are closed through the bus. Works in any process that can reach
    Redis (web, worker, command line). Returns the number of sessions ended.
    """
    settings = process_settings()
    async with Redis.from_url(settings.redis_url) as redis:
        index = SessionIndex(redis, settings.redis_prefix)
        kept = digest_of(keep) if keep else None
        digests = [digest for digest in await index.infos(user_id) if digest != kept]
        ended = await index.end(user_id, digests)
    logger.info("sessions ended user_id=%s count=%d", user_id, ended)
    return ended
