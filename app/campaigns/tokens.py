"""Signed unsubscribe tokens: ``<recipient id>.<HMAC-SHA256 of it>``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

TOKEN = re.compile(r"(?P<id>[1-9][0-9]{0,9})\.(?P<signature>[A-Za-z0-9_-]{22,64})")


def signature(secret: str, recipient_id: int) -> str:
    digest = hmac.new(
        secret.encode(), f"campaign-unsubscribe:{recipient_id}".encode(), hashlib.sha256
    ).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def make_token(secret: str, recipient_id: int) -> str:
    return f"{recipient_id}.{signature(secret, recipient_id)}"


def read_token(secret: str, token: str) -> int | None:
    """Return the recipient id of a valid token, or None."""
    match = TOKEN.fullmatch(token.strip())
    if match is None:
        return None
    recipient_id = int(match["id"])
    if not hmac.compare_digest(match["signature"], signature(secret, recipient_id)):
        return None
    return recipient_id
