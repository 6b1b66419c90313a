"""Signed-in users, kept for a few seconds in each web process.

Opening a live socket loads its user like any request. After a restart,
thousands of pages of a few users reconnect within seconds, so each process
keeps what it loaded for ``SECONDS`` and loads a user once however many
sockets ask at the same moment. Changes to a user's roles, teams or active
flag reach every process on the bus, which drops the user before it
closes their sockets, so the pages that reconnect load them afresh.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

SECONDS = 5.0
MAX_USERS = 10_000

T = TypeVar("T")


class UserCache(Generic[T]):
    def __init__(
        self,
        load: Callable[[int], Awaitable[T | None]],
        seconds: float = SECONDS,
        max_users: int = MAX_USERS,
    ) -> None:
        self.load = load
        self.seconds = seconds
        self.max_users = max_users
        self.entries: dict[int, tuple[float, T | None]] = {}
        self.loading: dict[int, asyncio.Future[T | None]] = {}
        # Bumped by forget(), so a load that started before it is not kept.
        self.generation = 0

    async def get(self, user_id: int) -> T | None:
        entry = self.entries.get(user_id)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        pending = self.loading.get(user_id)
        if pending is None:
            pending = asyncio.ensure_future(self.fetch(user_id, self.generation))
            self.loading[user_id] = pending
            pending.add_done_callback(lambda done: self.done(user_id, done))
        return await asyncio.shield(pending)

    def done(self, user_id: int, future: asyncio.Future[T | None]) -> None:
        if self.loading.get(user_id) is future:
            del self.loading[user_id]

    async def fetch(self, user_id: int, generation: int) -> T | None:
        user = await self.load(user_id)
        if generation == self.generation:
            if len(self.entries) >= self.max_users:
                self.entries.clear()
            self.entries[user_id] = (time.monotonic() + self.seconds, user)
        return user

    def forget(self, user_id: int | None = None) -> None:
        """Drop one user, or everyone with None."""
        self.generation += 1
        if user_id is None:
            self.entries.clear()
            self.loading.clear()
        else:
            self.entries.pop(user_id, None)
            self.loading.pop(user_id, None)
