"""Client processes holding live sockets, started and driven from the bench run."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections import Counter
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from bench import clients
from bench.clients import ClientOptions, SocketSpec

READY_TIMEOUT = 120.0
REPLY_TIMEOUT = 60.0


def socket_specs(
    ws_urls: list[str], topics: list[str], per_topic: int
) -> list[SocketSpec]:
    """Spread ``per_topic`` sockets of each topic over the servers in turn."""
    return [
        SocketSpec(
            url=f"{ws_urls[number % len(ws_urls)]}/live?topic={topic}", topic=topic
        )
        for topic in topics
        for number in range(per_topic)
    ]


class Fleet:
    """``processes`` client processes sharing ``specs`` between them."""

    def __init__(
        self, specs: list[SocketSpec], options: ClientOptions, processes: int
    ) -> None:
        self.specs = specs
        self.options = options
        self.shares = [specs[index::processes] for index in range(processes)]
        self.per_topic = Counter(spec.topic for spec in specs)
        self.processes: list[BaseProcess] = []
        self.pipes: list[Connection] = []
        self.extensions: list[str] = []

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes if process.pid is not None]

    async def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        for share in self.shares:
            parent, child = context.Pipe()
            process = context.Process(
                target=clients.run, args=(share, self.options, child), daemon=True
            )
            process.start()
            child.close()
            self.processes.append(process)
            self.pipes.append(parent)

        replies = await asyncio.gather(
            *(receive(pipe, READY_TIMEOUT) for pipe in self.pipes)
        )
        for reply in replies:
            if reply[0] != "ready":
                raise RuntimeError(f"a client process failed to connect: {reply[1]}")
        self.extensions = sorted({name for reply in replies for name in reply[2]})

    async def ask(self, command: str) -> list[tuple[Any, ...]]:
        for pipe in self.pipes:
            pipe.send(command)
        return list(
            await asyncio.gather(*(receive(pipe, REPLY_TIMEOUT) for pipe in self.pipes))
        )

    async def received(self) -> int:
        """Return how many matched frames all sockets hold."""
        return sum(reply[1] for reply in await self.ask("count"))

    async def reset(self) -> None:
        await self.ask("reset")

    async def take(self) -> list[dict[str, Any]]:
        """Return each socket's frames and clear them."""
        replies = await self.ask("results")
        return [socket for reply in replies for socket in reply[1]]

    async def stop(self) -> None:
        await self.ask("stop")
        for process in self.processes:
            await asyncio.to_thread(process.join, 30)

    def terminate(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.terminate()
                process.join(5)


async def receive(pipe: Connection, seconds: float) -> tuple[Any, ...]:
    """Wait for the next reply on ``pipe`` without blocking the event loop."""
    if not await asyncio.to_thread(pipe.poll, seconds):
        raise TimeoutError(f"no reply from a client process within {seconds} s")
    try:
        return tuple(pipe.recv())
    except EOFError:
        raise RuntimeError(
            "a client process exited without replying; its error is printed above"
        ) from None
