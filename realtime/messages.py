"""The event message that travels on the bus."""

from __future__ import annotations

from typing import Any

import msgspec


class Event(msgspec.Struct, frozen=True):
    """A committed change, as published to every web process.

    ``id`` is the event's row id in the event log, so it grows in commit
    order. ``topics`` are the streams pages subscribe to ("pipeline:3").
    """

    id: int
    kind: str
    topics: list[str]
    record_type: str
    record_id: int
    actor_id: int | None = None
    changes: dict[str, Any] = {}


encoder = msgspec.json.Encoder()
decoder = msgspec.json.Decoder(Event)


def encode(event: Event) -> bytes:
    return encoder.encode(event)


def decode(data: bytes) -> Event:
    return decoder.decode(data)
