"""Simulated browser pages for the chaos and fuzz tests.

``PageView`` keeps the part of a page's DOM that live frames change: board
cards and their columns, column heads, record summaries and the comment
list. ``LiveClient`` speaks the page's socket protocol as app.js does:
resume on every connect, drop repeats, request a replay on a jump, apply
fresh renders, and reconnect with backoff after any close but a sign-out
or a rejected subscription.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser

import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake

logger = logging.getLogger(__name__)

VOID_TAGS = frozenset(
    {
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "source",
        "track",
        "wbr",
    }
)
# Close codes after which a page stays closed (app.js FINAL_CODES).
FINAL_CLOSE_CODES = frozenset({4401, 1008})
ABNORMAL_CLOSE = 1006
MAX_BACKOFF = 4.0  # seconds


@dataclass(eq=False)
class Node:
    """An element of parsed HTML, with its text and child elements in order."""

    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.attrs.get("id", "")

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def elements(self) -> list[Node]:
        return [child for child in self.children if isinstance(child, Node)]

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.elements():
            yield from child.walk()

    def find(self, predicate: Callable[[Node], bool]) -> Node | None:
        return next((node for node in self.walk() if predicate(node)), None)

    def text(self) -> str:
        parts = [
            child if isinstance(child, str) else child.text() for child in self.children
        ]
        return "".join(parts)


class TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {name: value or "" for name, value in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID_TAGS:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(
            Node(tag, {name: value or "" for name, value in attrs})
        )

    def handle_endtag(self, tag: str) -> None:
        # An end tag closes the nearest open element of that name, and with
        # it any element left open inside, as browsers do.
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse_html(text: str) -> Node:
    builder = TreeBuilder()
    builder.feed(text)
    builder.close()
    return builder.root


def is_card(node: Node) -> bool:
    return node.tag == "article" and "card" in node.classes


def card_value(node: Node) -> str:
    """Return the column a card names as its own: its stage or status."""
    return node.attrs.get("data-stage") or node.attrs.get("data-status", "")


def head_count(node: Node) -> int | None:
    count = node.find(lambda child: "count" in child.classes)
    if count is None:
        return None
    return int(count.attrs.get("data-count") or count.text().strip())


@dataclass
class PageView:
    """The live parts of one page's DOM, changed as htmx would change them.

    ``cards`` maps a card's element id to the containers holding a copy of
    it, so a card shown twice is visible as two entries.
    """

    cards: dict[str, list[str]] = field(default_factory=dict)
    card_values: dict[str, str] = field(default_factory=dict)
    containers: set[str] = field(default_factory=set)
    heads: dict[str, int] = field(default_factory=dict)
    summaries: dict[str, dict[str, str]] = field(default_factory=dict)
    comments: list[str] | None = None
    ignored_swaps: int = 0

    def load_page(self, html: str) -> None:
        """Take the board, summary and comments of a freshly loaded page."""
        for node in parse_html(html).walk():
            if node.id == "board":
                self.replace_board(node)
            elif node.id.endswith("-summary"):
                self.replace_summary(node)
            elif node.id == "comments":
                self.replace_comments(node)

    def apply_frame(self, html: str) -> None:
        """Swap the out-of-band fragments of one socket frame, in order."""
        for node in parse_html(html).elements():
            swap = node.attrs.get("hx-swap-oob")
            if swap is None:
                self.ignored_swaps += 1
            elif swap == "delete":
                self.delete(node.id)
            elif ":" in swap:
                style, _, selector = swap.partition(":")
                for child in node.elements():
                    self.insert(style, selector.removeprefix("#"), child)
            elif swap == "true":
                self.replace(node)
            else:
                self.ignored_swaps += 1

    def delete(self, element_id: str) -> None:
        # htmx deletes the first element with the id, if there is one.
        copies = self.cards.get(element_id)
        if copies:
            copies.pop(0)
            if not copies:
                del self.cards[element_id]
                self.card_values.pop(element_id, None)

    def insert(self, style: str, target: str, node: Node) -> None:
        if target in self.containers and is_card(node):
            copies = self.cards.setdefault(node.id, [])
            if style == "afterbegin":
                copies.insert(0, target)
            else:
                copies.append(target)
            self.card_values[node.id] = card_value(node)
        elif target == "comments" and self.comments is not None:
            if node.tag == "li":
                self.comments.append(node.id)
        else:
            self.ignored_swaps += 1

    def replace(self, node: Node) -> None:
        # An element swapped with hx-swap-oob="true" replaces the element of
        # the same id, and is dropped when the page has none.
        if node.id == "board":
            self.replace_board(node)
        elif is_card(node):
            if node.id in self.cards:
                self.card_values[node.id] = card_value(node)
            else:
                self.ignored_swaps += 1
        elif node.id in self.heads:
            count = head_count(node)
            if count is not None:
                self.heads[node.id] = count
        elif node.id in self.summaries:
            self.replace_summary(node)
        elif node.id == "comments" and self.comments is not None:
            self.replace_comments(node)
        else:
            self.ignored_swaps += 1

    def replace_board(self, board: Node) -> None:
        self.cards.clear()
        self.card_values.clear()
        self.containers.clear()
        self.heads.clear()
        for node in board.walk():
            if "column-head" in node.classes:
                count = head_count(node)
                if count is not None:
                    self.heads[node.id] = count
            elif "cards" in node.classes and node.id:
                self.containers.add(node.id)
                for card in node.elements():
                    if is_card(card):
                        self.cards.setdefault(card.id, []).append(node.id)
                        self.card_values[card.id] = card_value(card)

    def replace_summary(self, summary: Node) -> None:
        self.summaries[summary.id] = {
            node.attrs["data-field"]: node.text().strip()
            for node in summary.walk()
            if node.tag == "dd" and "data-field" in node.attrs
        }

    def replace_comments(self, comments: Node) -> None:
        self.comments = [node.id for node in comments.elements() if node.tag == "li"]


@dataclass
class StreamTally:
    """What one page did with one stream's frames."""

    start: int = 0
    applied: list[int] = field(default_factory=list)
    # (position before, position of the fresh render) of each snapshot.
    snapshots: list[tuple[int, int]] = field(default_factory=list)

    def check(self, last_seq: int) -> dict[str, int]:
        """Count missing and doubly applied numbers up to the stream's last number."""
        covered = max([self.start, *(after for _, after in self.snapshots)])
        applied = Counter(self.applied)
        lost = sum(1 for seq in range(covered + 1, last_seq + 1) if applied[seq] == 0)
        return {
            "lost": lost,
            "duplicated": sum(count - 1 for count in applied.values()),
            "beyond_last": sum(1 for seq in applied if seq > last_seq),
            "snapshot_regressions": sum(
                1 for before, after in self.snapshots if after < before
            ),
        }


class LiveClient:
    """One page's live socket: resumes, dedupes, replays and reconnects."""

    def __init__(
        self,
        name: str,
        urls: list[str],
        cookie_header: Callable[[], str],
        topics: list[str],
        view: PageView,
        positions: dict[str, int],
        rng: random.Random,
        board_filter: str = "",
    ) -> None:
        self.name = name
        self.board_filter = board_filter
        self.urls = urls
        self.cookie_header = cookie_header
        self.topics = topics
        self.view = view
        self.positions = dict(positions)
        self.tallies = {
            topic: StreamTally(start=positions.get(topic, 0)) for topic in topics
        }
        self.rng = rng
        self.replaying: set[str] = set()
        self.socket: websockets.ClientConnection | None = None
        self.ready = False
        self.final_code: int | None = None
        self.server_index = 0
        self.offline_for = 0.0
        self.counts: Counter[str] = Counter()
        self.close_codes: Counter[int] = Counter()

    @property
    def query(self) -> str:
        parts = ["resume=1", *(f"topic={topic}" for topic in self.topics)]
        if self.board_filter:
            parts.append(self.board_filter)
        return "&".join(parts)

    async def run(self, stop: asyncio.Event) -> None:
        """Keep the socket open until ``stop`` is set or a final close."""
        failures = 0
        while not stop.is_set():
            socket = await self.connect()
            if socket is None:
                failures += 1
                await self.back_off(failures, stop)
                continue

            failures = 0
            code = await self.serve(socket)
            self.close_codes[code] += 1
            if code in FINAL_CLOSE_CODES:
                self.final_code = code
                logger.warning("page %s closed for good with %s", self.name, code)
                return
            await self.back_off(1, stop)
            if self.offline_for:
                await self.pause(self.offline_for, stop)
                self.offline_for = 0.0

    async def connect(self) -> websockets.ClientConnection | None:
        url = self.urls[self.server_index].replace("http://", "ws://")
        try:
            socket = await websockets.connect(
                f"{url}/live?{self.query}",
                additional_headers={
                    "Cookie": self.cookie_header(),
                    "Origin": self.urls[self.server_index],
                },
                open_timeout=5,
                close_timeout=1,
                max_size=None,
            )
        except (OSError, InvalidHandshake, TimeoutError) as error:
            self.counts["failed_connects"] += 1
            logger.debug("page %s could not connect: %s", self.name, error)
            self.server_index = self.rng.randrange(len(self.urls))
            return None
        self.counts["connects"] += 1
        return socket

    async def serve(self, socket: websockets.ClientConnection) -> int:
        """Resume, apply frames until the socket closes, then return its close code."""
        self.socket = socket
        self.ready = False
        self.replaying.clear()
        try:
            await socket.send(json.dumps({"type": "resume", "streams": self.positions}))
            async for message in socket:
                if isinstance(message, str):
                    await self.handle(socket, message)
        except ConnectionClosed:
            pass
        finally:
            self.socket = None
            self.ready = False
        # The page comes back through either web process, as a load
        # balancer would send it.
        self.server_index = self.rng.randrange(len(self.urls))
        if socket.close_code is None:
            return ABNORMAL_CLOSE
        return int(socket.close_code)

    async def handle(self, socket: websockets.ClientConnection, text: str) -> None:
        header, _, body = text.partition("\n")
        if not header.startswith("#"):
            # Presence and other frames that belong to no stream.
            self.counts["unnumbered"] += 1
            return

        kind, *rest = header[1:].split(" ")
        if kind == "ready":
            self.ready = True
            self.counts["ready"] += 1
            return
        stream, seq = rest[0], int(rest[1])
        tally = self.tallies.get(stream)
        if tally is None:
            self.counts["foreign_stream"] += 1
            return

        if kind == "snap":
            tally.snapshots.append((self.positions.get(stream, 0), seq))
            self.positions[stream] = seq
            self.replaying.discard(stream)
            self.view.apply_frame(body)
            self.counts["snapshots"] += 1
            return

        last = self.positions.get(stream, 0)
        if seq <= last:
            self.counts["repeats"] += 1
            return
        if seq > last + 1:
            self.counts["jumps"] += 1
            if stream not in self.replaying:
                self.replaying.add(stream)
                self.counts["replay_requests"] += 1
                await socket.send(
                    json.dumps({"type": "replay", "stream": stream, "after": last})
                )
            return
        self.positions[stream] = seq
        self.replaying.discard(stream)
        tally.applied.append(seq)
        self.view.apply_frame(body)
        self.counts["applied"] += 1

    async def back_off(self, failures: int, stop: asyncio.Event) -> None:
        """Wait a random delay up to a limit that doubles with each failure.

        The htmx ws extension 2.0.4 waits the same way ("full jitter"), with a
        limit that starts at 1 s and stops at 64 s. Here it starts at 0.5 s and
        stops at ``MAX_BACKOFF``, which keeps the test short.
        """
        await self.pause(
            self.rng.uniform(0, min(0.25 * 2**failures, MAX_BACKOFF)), stop
        )

    async def pause(self, seconds: float, stop: asyncio.Event) -> None:
        try:
            await asyncio.wait_for(stop.wait(), timeout=seconds)
        except TimeoutError:
            pass

    def drop(self, offline_for: float = 0.0) -> bool:
        """Cut the connection without a close frame, as a lost network does,
        and stay away ``offline_for`` seconds longer than the backoff."""
        if self.socket is None or self.socket.transport is None:
            return False
        self.offline_for = offline_for
        self.socket.transport.abort()
        self.counts["dropped"] += 1
        return True

    async def close(self) -> None:
        if self.socket is not None:
            await self.socket.close()


def stream_positions_in_page(html: str) -> dict[str, int]:
    """Return the stream positions a page was rendered at, from its meta tags."""
    return {
        node.attrs["content"]: int(node.attrs["data-seq"])
        for node in parse_html(html).walk()
        if node.tag == "meta" and node.attrs.get("name") == "live-stream"
    }


def form_values(html: str) -> dict[str, str]:
    """Return what a form would post: inputs, selected options and text areas."""
    values: dict[str, str] = {}
    for node in parse_html(html).walk():
        name = node.attrs.get("name")
        if not name:
            continue
        if node.tag == "input":
            values[name] = node.attrs.get("value", "")
        elif node.tag == "textarea":
            values[name] = node.text()
        elif node.tag == "select":
            options = [child for child in node.walk() if child.tag == "option"]
            chosen = next(
                (option for option in options if "selected" in option.attrs),
                options[0] if options else None,
            )
            if chosen is not None:
                values[name] = chosen.attrs.get("value", chosen.text())
    return values


CONFLICT_PATTERN = re.compile(r'data-conflict="([a-z_]+)"')


def conflict_fields(html: str) -> list[str]:
    return CONFLICT_PATTERN.findall(html)


def count_by(items: list[dict[str, int]]) -> dict[str, int]:
    totals: defaultdict[str, int] = defaultdict(int)
    for item in items:
        for name, value in item.items():
            totals[name] += value
    return dict(totals)
