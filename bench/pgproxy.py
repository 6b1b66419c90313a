"""A loopback proxy to PostgreSQL that counts what its clients send.

It forwards bytes unchanged both ways and parses only the client side of the
wire protocol (PostgreSQL 3.0): each Query, Parse, Bind, Execute and Sync
message. Encrypted connections cannot be parsed, so clients must connect with
``sslmode=disable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import Counter

# Request codes sent in place of a startup message.
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
TRANSACTION_COMMANDS = (
    "BEGIN",
    "START",
    "COMMIT",
    "END",
    "ROLLBACK",
    "SAVEPOINT",
    "RELEASE",
)
RESET_MARKERS = ("RESET ALL", "PG_ADVISORY_UNLOCK_ALL")
TEXT_LENGTH = 90


def short_sql(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()[:TEXT_LENGTH]


def kind_of_query(text: str) -> str:
    upper = text.strip().upper()
    if any(marker in upper for marker in RESET_MARKERS):
        return "connection_reset"
    if upper.split(" ", 1)[0].rstrip(";") in TRANSACTION_COMMANDS:
        return "transaction_command"
    return "simple_query"


def c_string(body: bytes, start: int) -> tuple[str, int]:
    """Return the NUL-terminated string at ``start`` and the offset after it."""
    end = body.index(b"\0", start)
    return body[start:end].decode(errors="replace"), end + 1


class FrontendCounter:
    """Parse one client's stream and add what it sends to shared counters."""

    def __init__(self, messages: Counter[str], statements: Counter[str]) -> None:
        self.messages = messages
        self.statements = statements
        self.buffer = bytearray()
        self.started = False
        self.prepared: dict[str, str] = {}

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while self.next_message():
            pass

    def next_message(self) -> bool:
        buffer = self.buffer
        if not self.started:
            # Startup-phase messages have a length and a code but no type byte.
            if len(buffer) < 8:
                return False
            length = int.from_bytes(buffer[0:4], "big")
            if len(buffer) < length:
                return False
            code = int.from_bytes(buffer[4:8], "big")
            del buffer[:length]
            self.started = code not in (SSL_REQUEST, GSSENC_REQUEST, CANCEL_REQUEST)
            return True

        if len(buffer) < 5:
            return False
        length = int.from_bytes(buffer[1:5], "big")
        if len(buffer) < 1 + length:
            return False
        kind = chr(buffer[0])
        body = bytes(buffer[5 : 1 + length])
        del buffer[: 1 + length]
        self.count(kind, body)
        return True

    def count(self, kind: str, body: bytes) -> None:
        if kind == "Q":
            text = body.rstrip(b"\0").decode(errors="replace")
            category = kind_of_query(text)
            self.messages[category] += 1
            self.messages["round_trip"] += 1
            if category == "simple_query":
                self.statements[short_sql(text)] += 1
        elif kind == "P":
            name, offset = c_string(body, 0)
            self.prepared[name], _ = c_string(body, offset)
            self.messages["parse"] += 1
        elif kind == "B":
            _portal, offset = c_string(body, 0)
            name, _ = c_string(body, offset)
            self.statements[short_sql(self.prepared.get(name, "?"))] += 1
        elif kind == "E":
            self.messages["execute"] += 1
        elif kind == "S":
            self.messages["round_trip"] += 1


class CountingProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.messages: Counter[str] = Counter()
        self.statements: Counter[str] = Counter()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> int:
        """Listen on a free loopback port and return it."""
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    def snapshot(self) -> tuple[Counter[str], Counter[str]]:
        return Counter(self.messages), Counter(self.statements)

    async def handle(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                *self.upstream
            )
        except OSError:
            client_writer.close()
            return
        parser = FrontendCounter(self.messages, self.statements)
        await asyncio.gather(
            pump(client_reader, upstream_writer, parser),
            pump(upstream_reader, client_writer, None),
            return_exceptions=True,
        )

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), timeout=5)


async def pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    parser: FrontendCounter | None,
) -> None:
    try:
        while data := await reader.read(65536):
            if parser is not None:
                parser.feed(data)
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
