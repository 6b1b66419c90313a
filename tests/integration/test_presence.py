"""Presence entries in Redis, refreshed while sockets live, and their avatars."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from html.parser import HTMLParser

import msgspec
from redis.asyncio import Redis

from app.web.presence import render_presence
from app.web.templating import STATIC_DIR
from realtime.messages import Viewer
from realtime.presence import EXPIRY, Presence, encode_viewer


async def test_viewers_are_one_per_user_sorted_by_name() -> None:
    redis = Redis.from_url(os.environ["REDIS_URL"])
    presence = Presence(redis, os.environ["REDIS_PREFIX"])
    topic = f"deal:{uuid.uuid4().hex[:8]}"

    await presence.set(topic, "tab-1", Viewer(user_id=2, name="Zoe"))
    await presence.set(topic, "tab-2", Viewer(user_id=1, name="Adam"))
    await presence.set(topic, "tab-3", Viewer(user_id=2, name="Zoe", editing="amount"))

    viewers, expired = await presence.viewers(topic)

    assert [viewer.name for viewer in viewers] == ["Adam", "Zoe"]
    assert viewers[1].editing == "amount"
    assert not expired
    await redis.delete(presence.key(topic))
    await redis.aclose()


async def test_entries_of_a_dead_process_expire() -> None:
    redis = Redis.from_url(os.environ["REDIS_URL"])
    presence = Presence(redis, os.environ["REDIS_PREFIX"])
    topic = f"pipeline:{uuid.uuid4().hex[:8]}"
    await presence.set(topic, "alive", Viewer(user_id=1, name="Alive"))
    # What a process that stopped refreshing leaves behind.
    stale = msgspec.structs.replace(
        Viewer(user_id=2, name="Gone"), seen=time.time() - EXPIRY - 1
    )
    await redis.hset(presence.key(topic), "dead-process-tab", encode_viewer(stale))

    viewers, expired = await presence.viewers(topic)

    assert [viewer.name for viewer in viewers] == ["Alive"]
    assert expired
    assert await redis.hkeys(presence.key(topic)) == [b"alive"]
    await redis.delete(presence.key(topic))
    await redis.aclose()


async def test_refresh_keeps_live_entries_fresh() -> None:
    redis = Redis.from_url(os.environ["REDIS_URL"])
    presence = Presence(redis, os.environ["REDIS_PREFIX"])
    topic = f"ticket:{uuid.uuid4().hex[:8]}"
    old = msgspec.structs.replace(
        Viewer(user_id=3, name="Kept"), seen=time.time() - EXPIRY - 1
    )
    await redis.hset(presence.key(topic), "tab", encode_viewer(old))

    await presence.refresh([(topic, "tab", Viewer(user_id=3, name="Kept"))])
    viewers, expired = await presence.viewers(topic)

    assert [viewer.name for viewer in viewers] == ["Kept"]
    assert not expired
    await redis.delete(presence.key(topic))
    await redis.aclose()


@dataclass
class Avatar:
    attributes: dict[str, str | None]
    classes: list[str]
    text: str = ""


class AvatarParser(HTMLParser):
    """Collect the avatars of a fragment: their attributes and initials."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[Avatar] = []
        self.inside: Avatar | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if "avatar" in classes:
            self.inside = Avatar(attributes, classes)
            self.found.append(self.inside)

    def handle_data(self, data: str) -> None:
        if self.inside is not None:
            self.inside.text += data

    def handle_endtag(self, tag: str) -> None:
        self.inside = None


def avatars(fragment: str) -> list[Avatar]:
    parser = AvatarParser()
    parser.feed(fragment)
    return parser.found


def colour_classes(avatar: Avatar) -> list[str]:
    return [name for name in avatar.classes if name.startswith("avatar-")]


def test_avatars_with_same_initials_differ_in_colour() -> None:
    viewers = [
        Viewer(user_id=41, name="Ana Lopez"),
        Viewer(user_id=42, name="Alan Lee", editing="amount"),
    ]

    first, second = avatars(render_presence("deal:1", viewers))
    again = avatars(render_presence("ticket:2", viewers[:1]))[0]

    assert first.text == second.text == "AL"
    assert len(colour_classes(first)) == 1
    assert colour_classes(first) != colour_classes(second)
    assert colour_classes(again) == colour_classes(first)
    assert first.attributes.get("title") == "Ana Lopez"
    assert first.attributes.get("aria-label") == "Ana Lopez"
    assert first.attributes.get("role") == "img"
    assert second.attributes.get("aria-label") == "Alan Lee, editing Amount"
    # The page policy forbids inline styles, so colours come from classes.
    assert "style" not in first.attributes


def test_every_avatar_colour_has_a_style() -> None:
    stylesheet = (STATIC_DIR / "app.css").read_text()
    viewers = [Viewer(user_id=number, name=f"User {number}") for number in range(1, 9)]

    rendered = avatars(render_presence("pipeline:3", viewers))

    colours = {colour_classes(avatar)[0] for avatar in rendered}
    assert len(colours) == 8
    for colour in colours:
        assert f".{colour} {{ background:" in stylesheet
