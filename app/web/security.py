"""Security headers on every HTTP response, and Secure cookies behind TLS.

A request came over TLS when its ASGI scheme is https: uvicorn sets that
from X-Forwarded-Proto for the proxies in FORWARDED_ALLOW_IPS.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

# One year. It is sent only over TLS, because browsers ignore it over http.
HSTS = "max-age=31536000; includeSubDomains"
PERMISSIONS_POLICY = ", ".join(
    f"{feature}=()"
    for feature in (
        "accelerometer",
        "camera",
        "geolocation",
        "gyroscope",
        "magnetometer",
        "microphone",
        "payment",
        "usb",
    )
)
# A host name or an IPv4 or bracketed IPv6 address, with an optional port.
# Any other Host header is left out of the policy rather than copied into it.
HOST = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")

HookHandler = Callable[[Any, Any], Awaitable[None]]


def is_tls(scope: Any) -> bool:
    return scope.get("scheme") in ("https", "wss")


def request_host(scope: Any) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"host":
            host = value.decode("latin-1")
            return host if HOST.fullmatch(host) else None
    return None


# A handler may let other sites frame its page by putting the CSP sources in
# the request state under this key, and may add form-action sources under
# FORM_ACTIONS. Every other page keeps frame-ancestors 'none'.
FRAME_ANCESTORS = "frame_ancestors"
FORM_ACTIONS = "form_actions"


def state_value(scope: Any, key: str) -> str | None:
    state = scope.get("state")
    value = state.get(key) if isinstance(state, dict) else None
    return value if isinstance(value, str) and value else None


def content_security_policy(scope: Any) -> str:
    """Build the page policy: this origin's files only, and its live socket.

    ``'self'`` does not match ws:// and wss:// URLs in every browser (MDN,
    connect-src; WebKit was the exception), so the socket's origin is named too.
    """
    form_action = "'self'"
    extra_actions = state_value(scope, FORM_ACTIONS)
    if extra_actions:
        form_action = f"'self' {extra_actions}"
    connect = ["'self'"]
    host = request_host(scope)
    if host is not None:
        connect.append(f"{'wss' if is_tls(scope) else 'ws'}://{host}")
    directives = {
        "default-src": "'self'",
        "script-src": "'self'",
        "style-src": "'self'",
        "img-src": "'self' data:",
        "connect-src": " ".join(connect),
        "object-src": "'none'",
        "base-uri": "'self'",
        "form-action": form_action,
        "frame-ancestors": state_value(scope, FRAME_ANCESTORS) or "'none'",
    }
    return "; ".join(f"{name} {value}" for name, value in directives.items())


def secure_cookie(value: bytes) -> bytes:
    if b"secure" in [part.strip().lower() for part in value.split(b";")]:
        return value
    return value + b"; Secure"


def security_headers(always_secure_cookies: bool = False) -> HookHandler:
    """Return a Litestar ``before_send`` hook that adds the security headers.

    Cookies get the Secure attribute on requests that came over TLS, and on
    every request with ``always_secure_cookies``.
    """

    async def add_headers(message: Any, scope: Any) -> None:
        if message["type"] != "http.response.start":
            return
        tls = is_tls(scope)
        headers = list(message.get("headers", []))
        if tls or always_secure_cookies:
            headers = [
                (name, secure_cookie(value) if name.lower() == b"set-cookie" else value)
                for name, value in headers
            ]
        added = {
            "content-security-policy": content_security_policy(scope),
            "referrer-policy": "strict-origin-when-cross-origin",
            "x-content-type-options": "nosniff",
            "permissions-policy": PERMISSIONS_POLICY,
            "cross-origin-opener-policy": "same-origin",
        }
        if state_value(scope, FRAME_ANCESTORS) is None:
            # X-Frame-Options cannot list origins, so a page that other sites
            # may frame relies on CSP frame-ancestors alone.
            added["x-frame-options"] = "DENY"
        if tls:
            added["strict-transport-security"] = HSTS
        if scope.get("user") is not None:
            # A signed-in page must not come back from the browser's cache,
            # for instance through the back button after signing out.
            added["cache-control"] = "no-store"
        present = {name.lower() for name, _ in headers}
        for name, value in added.items():
            if name.encode() not in present:
                headers.append((name.encode(), value.encode("latin-1")))
        message["headers"] = headers

    return add_headers


def safe_next(target: str | None, default: str = "/") -> str:
    """Return ``target`` if it is a path on this site, else ``default``.

    A page to return to (a ``next`` parameter) must not send the browser to
    another site: ``//host`` and ``/\\host`` are read by browsers as
    addresses of another host, and a control character could hide either.
    """
    if (
        target
        and target.startswith("/")
        and not target.startswith("//")
        and "\\" not in target
        and target.isprintable()
    ):
        return target
    return default
