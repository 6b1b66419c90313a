"""The hub renders once per variant and never lets a slow socket block others."""

import asyncio
import time

import pytest

from realtime.hub import CLOSE_TRY_AGAIN, PARK_SECONDS, SEND_QUEUE_SIZE, Client, Hub
from realtime.messages import Event


class RecordingSocket:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed_with: int | None = None

    async def send_text(self, data: str) -> None:
        self.sent.append(data)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed_with = code


def event(topics: list[str], seq: int = 1) -> Event:
    return Event(
        id=seq,
        kind="deal.updated",
        topics=topics,
        record_type="deal",
        record_id=9,
        seqs=dict.fromkeys(topics, seq),
    )


async def test_renderer_runs_once_per_variant() -> None:
    calls: list[set[str]] = []

    async def renderer(evt, topic, variants, cache):
        calls.append(set(variants))
        return {variant: f"<p>{variant or 'all'}</p>" for variant in variants}

    hub = Hub()
    hub.register("pipeline", renderer)
    clients = [Client(RecordingSocket(), user_id=n) for n in range(50)]
    for number, client in enumerate(clients):
        hub.join(client, "pipeline:1", "person=1" if number % 2 else "")

    sent = await hub.dispatch(event(["pipeline:1"]))

    assert sent == 50
    assert calls == [{"", "person=1"}]
    assert clients[0].queue.get_nowait() == "#seq pipeline:1 1\n<p>all</p>"
    assert clients[1].queue.get_nowait() == "#seq pipeline:1 1\n<p>person=1</p>"


async def test_topic_without_local_sockets_is_not_rendered() -> None:
    async def renderer(evt, topic, variants, cache):
        raise AssertionError("rendered for nobody")

    hub = Hub()
    hub.register("pipeline", renderer)

    assert await hub.dispatch(event(["pipeline:2"])) == 0


async def test_full_queue_disconnects_only_that_client() -> None:
    async def renderer(evt, topic, variants, cache):
        return dict.fromkeys(variants, "x")

    hub = Hub()
    hub.register("deal", renderer)
    slow = Client(RecordingSocket(), user_id=1)
    fast = Client(RecordingSocket(), user_id=2)
    hub.join(slow, "deal:9")
    hub.join(fast, "deal:9")
    fast_writer = asyncio.create_task(fast.write())

    for seq in range(1, SEND_QUEUE_SIZE + 2):
        await hub.dispatch(event(["deal:9"], seq))
        await asyncio.sleep(0)

    assert slow.closing
    assert slow.close_code == CLOSE_TRY_AGAIN
    assert not fast.closing
    fast.stop()
    await asyncio.wait_for(fast_writer, timeout=1)
    assert len(fast.socket.sent) == SEND_QUEUE_SIZE + 1


async def test_leave_removes_empty_rooms() -> None:
    hub = Hub()
    client = Client(RecordingSocket(), user_id=1)
    hub.join(client, "ticket:1")
    hub.join(client, "tickets", "team=2")

    hub.leave(client)

    assert dict(hub.rooms) == {}
    assert client not in hub.clients


@pytest.mark.parametrize("code", [1000, 1012])
async def test_stopped_client_closes_with_code(code: int) -> None:
    socket = RecordingSocket()
    client = Client(socket, user_id=1)
    writer = asyncio.create_task(client.write())

    client.stop(code)
    await asyncio.wait_for(writer, timeout=1)

    assert socket.closed_with == code


async def test_repeated_event_is_sent_once() -> None:
    async def renderer(evt, topic, variants, cache):
        return dict.fromkeys(variants, "x")

    hub = Hub()
    hub.register("deal", renderer)
    client = Client(RecordingSocket(), user_id=1)
    hub.join(client, "deal:9")

    await hub.dispatch(event(["deal:9"], 1))
    await hub.dispatch(event(["deal:9"], 1))
    await hub.dispatch(event(["deal:9"], 2))

    assert client.queue.qsize() == 2


async def test_held_events_follow_replay_in_order() -> None:
    client = Client(RecordingSocket(), user_id=1)
    client.hold()

    client.offer_event("tickets", 5, "live 5")
    client.offer_event("tickets", 4, "live 4")
    client.offer_event("tickets", 3, "replayed 3", replayed=True)
    client.offer_event("tickets", 4, "replayed 4", replayed=True)
    client.release()

    sent = [client.queue.get_nowait() for _ in range(client.queue.qsize())]
    assert sent == [
        "#seq tickets 3\nreplayed 3",
        "#seq tickets 4\nreplayed 4",
        "#seq tickets 5\nlive 5",
    ]


def queued(client: Client) -> list[str]:
    return [client.queue.get_nowait() for _ in range(client.queue.qsize())]


async def test_swapped_events_are_sent_in_order() -> None:
    client = Client(RecordingSocket(), user_id=1, sent={"tickets": 4})

    client.offer_event("tickets", 6, "six")
    client.offer_event("tickets", 5, "five")

    assert queued(client) == ["#seq tickets 5\nfive", "#seq tickets 6\nsix"]
    assert client.parked == {}


async def test_event_waiting_too_long_is_sent_anyway() -> None:
    client = Client(RecordingSocket(), user_id=1, sent={"tickets": 4})
    client.offer_event("tickets", 6, "six")
    assert queued(client) == []

    client.flush_stale(time.monotonic() + PARK_SECONDS)

    assert queued(client) == ["#seq tickets 6\nsix"]
    assert client.sent["tickets"] == 6


async def test_first_event_of_unresumed_socket_is_sent() -> None:
    client = Client(RecordingSocket(), user_id=1)

    client.offer_event("tickets", 41, "x")

    assert queued(client) == ["#seq tickets 41\nx"]
