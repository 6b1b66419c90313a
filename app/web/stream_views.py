"""Pages that follow another page's stream with fragments of their own.

The forecast page and the deal list follow the pipeline streams, whose
fragments are board cards. Their sockets name a view (``view=forecast``),
which puts the view's key where a board's filter would be in each
subscription's variant. A view whose fragments depend on the page's own
filters (the deal list's) reads them from the socket's query and appends
them to its key. ``with_views`` wraps the stream's renderer and snapshot so
that those variants get the view's fragments instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.access.permissions import Access
from app.access.views import SEPARATOR
from realtime.hub import Renderer, Snapshot
from realtime.messages import Event

# Reads a page's filters from its socket's query parameters for the viewer's
# access, and returns them as a query string. It raises FieldError for an
# invalid filter and for one on a field hidden from the viewer.
FilterReader = Callable[[Mapping[str, str], Access], str]


@dataclass(frozen=True)
class StreamView:
    """A page's own rendering of a stream: its fragments and its fresh render.

    ``read_filter``, when set, reads the page's filters from its socket's
    query, and each subscription's variant carries them.
    """

    name: str
    render: Renderer
    snapshot: Snapshot
    read_filter: FilterReader | None = None

    @property
    def key(self) -> str:
        """The view as the page's socket URL and its variants carry it."""
        return f"view={self.name}"

    def socket_key(self, filter_query: str = "") -> str:
        """Return the view and the page's filters as its socket URL carries them."""
        return f"{self.key}&{filter_query}" if filter_query else self.key

    def variant(self, variant: str, filter_query: str = "") -> str:
        """Return this view's variant of a subscription's ``variant``."""
        head = self.socket_key(filter_query)
        return head + SEPARATOR + variant.partition(SEPARATOR)[2]

    def owns(self, variant: str) -> bool:
        head = variant.partition(SEPARATOR)[0]
        return head == self.key or head.startswith(self.key + "&")

    def filter_query(self, variant: str) -> str:
        """Return the page's filters that a variant of this view carries."""
        head = variant.partition(SEPARATOR)[0]
        return head.removeprefix(self.key).removeprefix("&")


def with_views(
    renderer: Renderer, snapshot: Snapshot, views: Sequence[StreamView]
) -> tuple[Renderer, Snapshot]:
    """Wrap a stream's renderer and snapshot so each view's variants get its own."""

    async def render_all(
        event: Event, topic: str, variants: set[str], cache: dict[str, Any]
    ) -> dict[str, str]:
        rest = set(variants)
        fragments: dict[str, str] = {}
        for view in views:
            owned = {variant for variant in rest if view.owns(variant)}
            rest -= owned
            if owned:
                fragments.update(await view.render(event, topic, owned, cache))
        if rest:
            fragments.update(await renderer(event, topic, rest, cache))
        return fragments

    async def snapshot_any(topic: str, variant: str) -> str:
        for view in views:
            if view.owns(variant):
                return await view.snapshot(topic, variant)
        return await snapshot(topic, variant)

    return render_all, snapshot_any
