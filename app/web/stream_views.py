"""Pages that follow another page's stream with fragments of their own.

The forecast page and the deal list follow the pipeline streams, whose
fragments are board cards. Their sockets name a view (``view=forecast``),
which puts the view's key where a board's filter would be in each
subscription's variant. ``with_views`` wraps the stream's renderer and
snapshot so that those variants get the view's fragments instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.access.views import SEPARATOR
from realtime.hub import Renderer, Snapshot
from realtime.messages import Event


@dataclass(frozen=True)
class StreamView:
    """A page's own rendering of a stream: its fragments and its fresh render."""

    name: str
    render: Renderer
    snapshot: Snapshot

    @property
    def key(self) -> str:
        """The view as the page's socket URL and its variants carry it."""
        return f"view={self.name}"

    def variant(self, variant: str) -> str:
        """Return this view's variant of a subscription's ``variant``."""
        return self.key + SEPARATOR + variant.partition(SEPARATOR)[2]

    def owns(self, variant: str) -> bool:
        return variant.partition(SEPARATOR)[0] == self.key


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
