"""Users kept briefly per process: loaded once, forgotten on change."""

from __future__ import annotations

import asyncio

from app.auth.user_cache import UserCache


class Loader:
    def __init__(self) -> None:
        self.calls = 0
        self.version = 1
        self.gate: asyncio.Event | None = None

    async def __call__(self, user_id: int) -> tuple[int, int]:
        self.calls += 1
        version = self.version
        if self.gate is not None:
            await self.gate.wait()
        return user_id, version


async def test_sockets_asking_at_once_load_the_user_once() -> None:
    loader = Loader()
    cache = UserCache(loader)
    loader.gate = asyncio.Event()

    waiting = [asyncio.ensure_future(cache.get(7)) for _ in range(50)]
    await asyncio.sleep(0)
    loader.gate.set()
    users = await asyncio.gather(*waiting)

    assert loader.calls == 1
    assert set(users) == {(7, 1)}
    assert await cache.get(7) == (7, 1)
    assert loader.calls == 1


async def test_entries_expire() -> None:
    loader = Loader()
    cache = UserCache(loader, seconds=0.01)
    await cache.get(7)
    await asyncio.sleep(0.02)
    loader.version = 2

    assert await cache.get(7) == (7, 2)
    assert loader.calls == 2


async def test_forget_drops_load_in_flight() -> None:
    loader = Loader()
    cache = UserCache(loader)
    loader.gate = asyncio.Event()
    stale = asyncio.ensure_future(cache.get(7))
    await asyncio.sleep(0)

    # The user changes while the old version is still being read.
    cache.forget(7)
    loader.version = 2
    loader.gate.set()
    await stale

    assert await cache.get(7) == (7, 2)
    assert loader.calls == 2


async def test_unknown_users_are_kept_as_none() -> None:
    async def load(user_id: int) -> None:
        return None

    cache: UserCache[object] = UserCache(load)
    assert await cache.get(3) is None
