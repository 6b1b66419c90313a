"""Password reset by mail, through a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import hashlib
import os
import re
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from arq import Retry

from tests.browserless import Session
from tests.factories import PASSWORD, make_user
from tests.servers import free_port, web_server, worker_process
from tests.smtp_inbox import Inbox, smtp_server

PUBLIC_URL = "http://switchboard.test"
NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture(scope="module")
def inbox() -> Iterator[tuple[Inbox, int]]:
    with smtp_server() as server:
        yield server.inbox, server.port


@pytest.fixture(scope="module")
def server(inbox):
    _, port = inbox
    # Its own queue, so no other test's worker takes these mail jobs.
    env = {
        "SMTP_URL": f"smtp://127.0.0.1:{port}",
        "MAIL_FROM": "Switchboard <crm@test.example>",
        "PUBLIC_URL": PUBLIC_URL,
        "REDIS_PREFIX": f"{os.environ['REDIS_PREFIX']}reset-{uuid.uuid4().hex[:6]}:",
    }
    with web_server(env=env) as running, worker_process(env=env):
        yield running


async def wait_for_mail(inbox: Inbox, address: str, count: int) -> EmailMessage:
    """Poll the inbox, which aiosmtpd fills from its own thread."""
    async with asyncio.timeout(20):
        while len(inbox.to(address)) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    return inbox.to(address)[count - 1]


def reset_token(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    match = re.search(
        re.escape(PUBLIC_URL) + r"/login/reset\?token=([A-Za-z0-9_-]+)",
        body.get_content(),
    )
    assert match, "no reset link in the mail"
    return match.group(1)


async def ask_for_reset(session: Session, address: str) -> str:
    await session.get("/login/forgot")
    response = await session.post("/login/forgot", {"email": address}, htmx=False)
    assert response.status_code == 200
    return response.text


async def test_reset_link_works_once(server, inbox) -> None:
    handler, _ = inbox
    user = await make_user()
    signed_in = Session(server.url)
    await signed_in.sign_in(user.email)
    visitor = Session(server.url)

    known = await ask_for_reset(visitor, user.email)
    unknown_address = f"nobody-{uuid.uuid4().hex[:8]}@test.example"
    unknown = await ask_for_reset(visitor, unknown_address)
    message = await wait_for_mail(handler, user.email, 1)
    token = reset_token(message)
    form = await visitor.get(f"/login/reset?token={token}")
    mismatch = await visitor.post(
        "/login/reset",
        {"token": token, "password": NEW_PASSWORD, "confirmation": "other"},
        htmx=False,
    )
    done = await visitor.post(
        "/login/reset",
        {"token": token, "password": NEW_PASSWORD, "confirmation": NEW_PASSWORD},
        htmx=False,
    )
    again = await visitor.post(
        "/login/reset",
        {
            "token": token,
            "password": "yet another one",
            "confirmation": "yet another one",
        },
        htmx=False,
    )
    old_session = await signed_in.get("/security", headers={"accept": "text/html"})

    assert known.replace(visitor.csrf_token, "") == unknown.replace(
        visitor.csrf_token, ""
    )
    assert "If an account uses that email address" in known
    assert message["From"] == "Switchboard <crm@test.example>"
    assert message["Subject"] == "Reset your Switchboard password"
    assert handler.to(unknown_address) == []
    assert form.status_code == 200
    assert mismatch.status_code == 422
    assert "Confirmation does not match the new password." in mismatch.text
    assert done.status_code == 200
    assert "Your password was changed." in done.text
    assert again.status_code == 422
    assert "Token is invalid, used or expired" in again.text
    assert old_session.status_code == 302

    old_password = Session(server.url)
    with pytest.raises(AssertionError):
        await old_password.sign_in(user.email, PASSWORD)
    await old_password.close()
    fresh = Session(server.url)
    await fresh.sign_in(user.email, NEW_PASSWORD)
    await fresh.close()
    await signed_in.close()
    await visitor.close()


async def test_expired_reset_token_is_rejected(server, inbox) -> None:
    from app.auth.security_tables import PasswordReset

    handler, _ = inbox
    user = await make_user()
    visitor = Session(server.url)
    await ask_for_reset(visitor, user.email)
    token = reset_token(await wait_for_mail(handler, user.email, 1))
    token_hash = hashlib.sha256(token.encode()).hexdigest()
    await PasswordReset.raw(
        "UPDATE password_reset SET expires_at = now() - interval '1 second' "
        "WHERE token_hash = {}",
        token_hash,
    )

    form = await visitor.get(f"/login/reset?token={token}")
    attempt = await visitor.post(
        "/login/reset",
        {"token": token, "password": NEW_PASSWORD, "confirmation": NEW_PASSWORD},
        htmx=False,
    )

    assert form.status_code == 410
    assert "This reset link is invalid, used or expired." in form.text
    assert attempt.status_code == 422
    await visitor.sign_in(user.email, PASSWORD)
    await visitor.close()


async def test_reset_mails_are_limited_per_address(server, inbox) -> None:
    handler, _ = inbox
    user = await make_user()
    visitor = Session(server.url)

    for _ in range(5):
        await ask_for_reset(visitor, user.email)
    await wait_for_mail(handler, user.email, 3)
    await asyncio.sleep(1.5)

    assert len(handler.to(user.email)) == 3
    await visitor.close()


async def test_mail_goes_to_outbox_without_smtp(tmp_path: Path, caplog) -> None:
    from app.config import Settings
    from workers.mail import send_mail

    settings = dataclasses.replace(
        Settings.from_env(), smtp_url=None, data_dir=tmp_path
    )

    with caplog.at_level("INFO", logger="app.mail"):
        where = await send_mail(
            {"settings": settings, "job_try": 1}, "ada@test.example", "Hi", "Body"
        )

    files = list((tmp_path / "outbox").glob("*.eml"))
    assert len(files) == 1
    assert where == str(files[0])
    assert str(files[0]) in caplog.text
    message = email.message_from_bytes(
        files[0].read_bytes(), policy=email.policy.default
    )
    assert message["To"] == "ada@test.example"


async def test_unreachable_smtp_retried() -> None:
    import aiosmtplib

    from app.config import Settings
    from workers.mail import MAX_TRIES, send_mail

    # Nothing listens on a port just taken and released.
    settings = dataclasses.replace(
        Settings.from_env(), smtp_url=f"smtp://127.0.0.1:{free_port()}"
    )

    with pytest.raises(Retry) as retry:
        await send_mail(
            {"settings": settings, "job_try": 1}, "a@test.example", "S", "T"
        )
    with pytest.raises((aiosmtplib.SMTPException, OSError)):
        await send_mail(
            {"settings": settings, "job_try": MAX_TRIES}, "a@test.example", "S", "T"
        )

    assert retry.value.defer_score is not None
    assert retry.value.defer_score > 0
