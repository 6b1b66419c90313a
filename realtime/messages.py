"""The event message that travels on the bus."""

from __future__ import annotations

from typing import Any

import msgspec


class Event(msgspec.Struct, frozen=True):
    """A committed change, as published to every web process.

    ``id`` is the event's row id in the event log. ``topics`` are the
    streams pages subscribe to ("pipeline:3"), and ``seqs`` the event's
    sequence number in each of them: 1, 2, 3... with no gaps, in commit order.
    """

    id: int
    kind: str
    topics: list[str]
    record_type: str
    record_id: int
    actor_id: int | None = None
    changes: dict[str, Any] = {}
    seqs: dict[str, int] = {}


class Viewer(msgspec.Struct, frozen=True):
    """Someone with a page open on a stream, and what they are doing there."""

    user_id: int
    name: str
    editing: str | None = None
    typing: bool = False
    seen: float = 0.0


encoder = msgspec.json.Encoder()
decoder = msgspec.json.Decoder(Event)


def encode(event: Event) -> bytes:
    return encoder.encode(event)


def decode(data: bytes) -> Event:
    return decoder.decode(data)


# Frames sent to pages start with one header line, which the page's script
# reads before htmx swaps the rest:
#   "#seq <stream> <n>"   an event, the n-th of the stream
#   "#snap <stream> <n>"  a fresh render of what the page shows, as of n
# Frames without a header (presence, say) are not part of any stream.


def frame(kind: str, stream: str, seq: int, html: str) -> str:
    return f"#{kind} {stream} {seq}\n{html}"
