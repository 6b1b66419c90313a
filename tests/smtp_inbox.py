"""A real SMTP server on loopback for tests, keeping every message it receives."""

from __future__ import annotations

import contextlib
import email
import email.policy
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from tests.servers import free_port


@dataclass(frozen=True)
class Received:
    """One message with its envelope recipients, monotonic arrival time and
    the bytes as they arrived."""

    recipients: list[str]
    message: EmailMessage
    at: float
    raw: bytes


class Inbox:
    """An aiosmtpd handler. aiosmtpd calls it from its own thread, hence the lock."""

    def __init__(self) -> None:
        self._received: list[Received] = []
        self._lock = threading.Lock()
        # The SMTP reply that each listed recipient's next message gets.
        self._refusals: dict[str, str] = {}
        # Messages rejected that way, which are not in the inbox.
        self.refused: list[Received] = []

    def refuse_next(
        self, address: str, reply: str = "451 4.3.0 Try again later"
    ) -> None:
        """Reject the next message to ``address`` once, with ``reply``."""
        with self._lock:
            self._refusals[address] = reply

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(
            envelope.original_content, policy=email.policy.default
        )
        assert isinstance(message, EmailMessage)
        item = Received(
            list(envelope.rcpt_tos),
            message,
            time.monotonic(),
            envelope.original_content,
        )
        with self._lock:
            for address in item.recipients:
                reply = self._refusals.pop(address, None)
                if reply is not None:
                    self.refused.append(item)
                    return reply
            self._received.append(item)
        return "250 Message accepted for delivery"

    @property
    def messages(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def addresses(self) -> list[str]:
        """Return every envelope recipient, once per message."""
        return [address for item in self.messages for address in item.recipients]

    def to(self, address: str) -> list[EmailMessage]:
        """Return the messages whose To header names ``address``."""
        return [
            item.message for item in self.messages if address in str(item.message["To"])
        ]


@dataclass(frozen=True)
class SmtpServer:
    inbox: Inbox
    port: int

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"


@contextlib.contextmanager
def smtp_server() -> Iterator[SmtpServer]:
    """Run an SMTP server on a free loopback port until the block ends."""
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpServer(inbox, port)
    finally:
        controller.stop()
