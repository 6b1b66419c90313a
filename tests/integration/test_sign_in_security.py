"""Sign-in limits, session rotation, timeouts and the session list, over HTTP."""

from __future__ import annotations

import asyncio
import re
import uuid

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from app.auth.sessions import SessionIndex, end_all_sessions, process_settings
from tests.browserless import Session
from tests.factories import PASSWORD, make_pipeline, make_user
from tests.servers import web_server

LOCKOUT_SECONDS = 3
ADDRESS_LIMIT = 15
SERVER_ENV = {
    "SIGNIN_MAX_FAILURES": "10",
    "SIGNIN_MAX_ADDRESS_FAILURES": str(ADDRESS_LIMIT),
    "SIGNIN_WINDOW": "60",
    "SIGNIN_LOCKOUT": str(LOCKOUT_SECONDS),
}
CLOSE_SIGNED_OUT = 4401


@pytest.fixture(scope="module")
def server():
    with web_server(env=SERVER_ENV) as running:
        yield running


def client_address() -> str:
    """A client address for one test, sent as X-Forwarded-For.

    It comes from the benchmarking range 198.18.0.0/15 (RFC 2544), which no
    other test uses, so another test's requests never count against it.
    """
    number = uuid.uuid4().int % 65_000 + 1
    return f"198.18.{number // 256}.{number % 256}"


async def post_login(
    session: Session, email: str, password: str, address: str
) -> httpx.Response:
    if not session.csrf_token:
        await session.get("/login")
    return await session.http.post(
        "/login",
        data={"email": email, "password": password, "_csrf_token": session.csrf_token},
        headers={"x-forwarded-for": address},
    )


async def is_signed_in(session: Session | httpx.AsyncClient) -> bool:
    """Open the security page: shown when signed in, a redirect to sign-in if not."""
    response = await session.get("/security", headers={"accept": "text/html"})
    if response.status_code == 302:
        assert response.headers["location"].startswith("/login")
        return False
    assert response.status_code == 200
    return True


def index() -> SessionIndex:
    from redis.asyncio import Redis

    settings = process_settings()
    return SessionIndex(Redis.from_url(settings.redis_url), settings.redis_prefix)


async def test_eleventh_wrong_password_rejected(server) -> None:
    user = await make_user()
    session = Session(server.url)
    address = client_address()

    for attempt in range(10):
        response = await post_login(session, user.email, "wrong password", address)
        assert response.status_code == 401, attempt
    refused = await post_login(session, user.email, PASSWORD, address)

    assert refused.status_code == 429
    assert "Too many failed sign-ins for this email address." in refused.text
    assert re.search(r"Try again in 1 minute\.", refused.text)
    assert int(refused.headers["retry-after"]) <= LOCKOUT_SECONDS
    await session.close()


async def test_lockout_looks_the_same_for_unknown_email(server) -> None:
    user = await make_user()
    unknown = f"nobody-{uuid.uuid4().hex[:8]}@test.example"
    session = Session(server.url)

    pages = {}
    for email in (user.email, unknown):
        address = client_address()
        for _ in range(10):
            await post_login(session, email, "wrong password", address)
        refused = await post_login(session, email, "wrong password", address)
        assert refused.status_code == 429, email
        pages[email] = refused.text.replace(email, "EMAIL")

    assert pages[user.email] == pages[unknown]
    await session.close()


async def test_locked_account_skips_password_verification(monkeypatch) -> None:
    """The 11th attempt runs no argon2 verify: counted through the real function."""
    import app.auth.service
    from app.main import create_app

    verified: list[str] = []
    real_verify = app.auth.service.verify_password

    def counting_verify(password_hash: str | None, password: str) -> bool:
        verified.append(password)
        return real_verify(password_hash, password)

    monkeypatch.setattr(app.auth.service, "verify_password", counting_verify)
    user = await make_user()
    application = create_app()
    # The app runs in this test's event loop, where the spy is installed.
    transport = httpx.ASGITransport(app=application)
    async with (
        application.lifespan(),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        await client.get("/login")
        token = client.cookies.get("csrftoken", "")
        for _ in range(10):
            await client.post(
                "/login",
                data={"email": user.email, "password": "wrong", "_csrf_token": token},
            )
        assert len(verified) == 10

        refused = await client.post(
            "/login",
            data={"email": user.email, "password": PASSWORD, "_csrf_token": token},
        )

    assert refused.status_code == 429
    assert len(verified) == 10


async def test_address_limit_covers_every_account(server) -> None:
    user = await make_user()
    session = Session(server.url)
    address = client_address()

    for attempt in range(ADDRESS_LIMIT):
        email = f"guess-{attempt}-{uuid.uuid4().hex[:6]}@test.example"
        response = await post_login(session, email, "wrong password", address)
        assert response.status_code == 401, attempt
    refused = await post_login(session, user.email, PASSWORD, address)
    other = Session(server.url)
    elsewhere = await post_login(other, user.email, PASSWORD, client_address())

    assert refused.status_code == 429
    assert "Too many failed sign-ins from your network address." in refused.text
    assert elsewhere.status_code == 302
    await session.close()
    await other.close()


async def test_lockout_lifts_after_its_time(server) -> None:
    user = await make_user()
    session = Session(server.url)
    address = client_address()
    for _ in range(10):
        await post_login(session, user.email, "wrong password", address)
    assert (await post_login(session, user.email, PASSWORD, address)).status_code == 429

    await asyncio.sleep(LOCKOUT_SECONDS + 0.5)
    response = await post_login(session, user.email, PASSWORD, address)

    assert response.status_code == 302
    await session.close()


async def test_sign_in_rotates_planted_session_id(server) -> None:
    user = await make_user()
    victim = Session(server.url)
    await victim.get("/login")
    planted = "a" * 64
    victim.http.cookies.set("session", planted, domain="127.0.0.1")

    response = await post_login(victim, user.email, PASSWORD, client_address())
    new_id = response.cookies.get("session")
    attacker = httpx.AsyncClient(base_url=server.url, cookies={"session": planted})

    assert response.status_code == 302
    assert new_id
    assert new_id != planted
    assert not await is_signed_in(attacker)
    assert await is_signed_in(victim)
    await attacker.aclose()
    await victim.close()


async def test_second_sign_in_ends_first(server) -> None:
    user = await make_user()
    session = Session(server.url)
    await session.sign_in(user.email)
    first = session.http.cookies.get("session")

    await session.sign_in(user.email)
    second = session.http.cookies.get("session")
    stale = httpx.AsyncClient(base_url=server.url, cookies={"session": first or ""})

    assert first != second
    assert not await is_signed_in(stale)
    assert await is_signed_in(session)
    await stale.aclose()
    await session.close()


async def test_idle_session_times_out() -> None:
    user = await make_user()
    env = {"SESSION_IDLE_TIMEOUT": "2", "SESSION_ABSOLUTE_TIMEOUT": "600"}
    with web_server(env=env) as idle_server:
        session = Session(idle_server.url)
        await session.sign_in(user.email)
        await asyncio.sleep(1.2)
        active = await is_signed_in(session)
        await asyncio.sleep(1.2)
        still_active = await is_signed_in(session)
        await asyncio.sleep(2.5)
        idle = await is_signed_in(session)
        await session.close()

    assert active
    assert still_active
    assert not idle


async def test_absolute_timeout_ends_busy_session() -> None:
    user = await make_user()
    env = {"SESSION_IDLE_TIMEOUT": "600", "SESSION_ABSOLUTE_TIMEOUT": "3"}
    with web_server(env=env) as short_server:
        session = Session(short_server.url)
        await session.sign_in(user.email)
        states = []
        for _ in range(5):
            states.append(await is_signed_in(session))
            await asyncio.sleep(1)
        await session.close()

    assert states[0]
    assert not states[-1]
    assert states.index(False) >= 2


async def test_security_page_marks_current_session(server) -> None:
    user = await make_user()
    laptop = Session(server.url)
    laptop.http.headers["user-agent"] = "Laptop browser 1.0"
    phone = Session(server.url)
    phone.http.headers["user-agent"] = "Phone browser 2.0"
    await laptop.sign_in(user.email)
    await phone.sign_in(user.email)

    page = await laptop.get("/security")

    assert page.status_code == 200
    assert "Laptop browser 1.0 <strong>(this session)</strong>" in page.text
    assert "Phone browser 2.0" in page.text
    assert "Phone browser 2.0 <strong>" not in page.text
    assert page.text.count('action="/security/sessions/') == 3
    await laptop.close()
    await phone.close()


async def test_sign_out_one_session_from_the_list(server) -> None:
    user = await make_user()
    laptop = Session(server.url)
    phone = Session(server.url)
    await laptop.sign_in(user.email)
    await phone.sign_in(user.email)
    page = await laptop.get("/security")
    digests = re.findall(r'<tr id="session-([0-9a-f]+)"(?! class="current")', page.text)
    assert len(digests) == 1

    ended = await laptop.post(f"/security/sessions/{digests[0]}/end", {}, htmx=False)

    assert ended.status_code == 302
    assert not await is_signed_in(phone)
    assert await is_signed_in(laptop)
    await laptop.close()
    await phone.close()


async def test_sign_out_everywhere_else_closes_other_socket(server) -> None:
    user = await make_user()
    pipeline = await make_pipeline()
    laptop = Session(server.url)
    phone = Session(server.url)
    await laptop.sign_in(user.email)
    await phone.sign_in(user.email)
    socket = await phone.live(f"topic=pipeline:{pipeline['id']}")

    response = await laptop.post("/security/sessions/end-others", {}, htmx=False)
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(5):
            while True:
                await socket.recv()
    phone_signed_in = await is_signed_in(phone)
    laptop_page = await laptop.get("/security?done=ended-others")

    assert response.status_code == 302
    assert response.headers["location"] == "/security?done=ended-others"
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == CLOSE_SIGNED_OUT
    assert not phone_signed_in
    assert "Every other session was signed out." in laptop_page.text
    await laptop.close()
    await phone.close()


async def test_end_all_sessions_keeps_only_the_given_one(server) -> None:
    user = await make_user()
    sessions = [Session(server.url) for _ in range(3)]
    for session in sessions:
        await session.sign_in(user.email)
    kept = sessions[0].http.cookies.get("session")

    ended = await end_all_sessions(user.id, keep=kept)
    states = [await is_signed_in(session) for session in sessions]
    redis_index = index()
    left = await redis_index.infos(user.id)
    await redis_index.redis.aclose()

    assert ended == 2
    assert states == [True, False, False]
    assert len(left) == 1
    for session in sessions:
        await session.close()


async def test_sign_out_removes_session_from_index(server) -> None:
    user = await make_user()
    session = Session(server.url)
    await session.sign_in(user.email)

    await session.post("/logout", {}, htmx=False)
    redis_index = index()
    left = await redis_index.infos(user.id)
    await redis_index.redis.aclose()

    assert left == {}
    await session.close()
