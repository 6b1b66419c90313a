"""The before_send hook that adds security headers and Secure cookies, and the
check that keeps a page to return to on this site."""

from __future__ import annotations

from typing import Any

import pytest

from app.web.security import content_security_policy, safe_next, security_headers


def scope(scheme: str = "http", host: bytes = b"crm.example:8000") -> dict[str, Any]:
    return {"type": "http", "scheme": scheme, "headers": [(b"host", host)]}


def start(*headers: tuple[bytes, bytes]) -> dict[str, Any]:
    return {"type": "http.response.start", "status": 200, "headers": list(headers)}


async def sent_headers(
    message: dict[str, Any], request: dict[str, Any], always: bool = False
) -> dict[bytes, list[bytes]]:
    await security_headers(always)(message, request)
    found: dict[bytes, list[bytes]] = {}
    for name, value in message["headers"]:
        found.setdefault(name, []).append(value)
    return found


async def test_plain_http_gets_policy_without_hsts() -> None:
    headers = await sent_headers(start((b"set-cookie", b"session=1; Path=/")), scope())

    policy = headers[b"content-security-policy"][0].decode()
    assert "script-src 'self'" in policy
    assert "'unsafe-inline'" not in policy
    assert "'unsafe-eval'" not in policy
    assert "connect-src 'self' ws://crm.example:8000" in policy
    assert "frame-ancestors 'none'" in policy
    assert headers[b"x-content-type-options"] == [b"nosniff"]
    assert headers[b"referrer-policy"] == [b"strict-origin-when-cross-origin"]
    assert b"camera=()" in headers[b"permissions-policy"][0]
    assert b"strict-transport-security" not in headers
    assert headers[b"set-cookie"] == [b"session=1; Path=/"]


async def test_tls_gets_hsts_and_secure_cookies() -> None:
    message = start(
        (b"set-cookie", b"session=1; Path=/; HttpOnly"),
        (b"set-cookie", b"csrftoken=2; Path=/; Secure"),
    )

    headers = await sent_headers(message, scope("https"))

    assert headers[b"strict-transport-security"][0].startswith(b"max-age=")
    assert headers[b"set-cookie"] == [
        b"session=1; Path=/; HttpOnly; Secure",
        b"csrftoken=2; Path=/; Secure",
    ]
    assert b"wss://crm.example:8000" in headers[b"content-security-policy"][0]


async def test_always_secure_cookies_over_http() -> None:
    headers = await sent_headers(
        start((b"set-cookie", b"session=1")), scope(), always=True
    )

    assert headers[b"set-cookie"] == [b"session=1; Secure"]
    assert b"strict-transport-security" not in headers


async def test_other_messages_are_left_alone() -> None:
    body = {"type": "http.response.body", "body": b"x"}

    await security_headers()(body, scope())

    assert body == {"type": "http.response.body", "body": b"x"}


def test_odd_host_is_left_out_of_policy() -> None:
    policy = content_security_policy(scope(host=b"evil.example; script-src *"))

    assert "connect-src 'self';" in policy
    assert "evil" not in policy


def test_ipv6_host_is_named() -> None:
    policy = content_security_policy(scope(host=b"[::1]:8000"))

    assert "ws://[::1]:8000" in policy


async def test_signed_in_responses_are_not_cached() -> None:
    signed_in = {**scope(), "user": object()}

    private = await sent_headers(start(), signed_in)
    public = await sent_headers(start(), scope())
    own = await sent_headers(start((b"cache-control", b"max-age=60")), signed_in)

    assert private[b"cache-control"] == [b"no-store"]
    assert b"cache-control" not in public
    assert own[b"cache-control"] == [b"max-age=60"]


@pytest.mark.parametrize(
    "target",
    [
        "https://attacker.example/x",
        "//attacker.example/x",
        "/\\attacker.example/x",
        "/\\/attacker.example",
        "\\\\attacker.example",
        "/path\\..\\x",
        "/\tattacker",
        "javascript:alert(1)",
        "relative/path",
        "",
        None,
    ],
)
def test_safe_next_rejects_other_sites(target: str | None) -> None:
    assert safe_next(target) == "/"
    assert safe_next(target, "/admin/workflows/3") == "/admin/workflows/3"


def test_safe_next_keeps_local_paths() -> None:
    assert safe_next("/deals/4?tab=history#notes") == "/deals/4?tab=history#notes"
    assert safe_next("/", "/admin") == "/"
