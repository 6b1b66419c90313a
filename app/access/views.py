"""Access profiles as live variants, so that sockets with the same rights share
one render.

A socket's variant is its board filter and the part of its user's access
that a topic's fragments depend on, encoded as text. Two users whose roles
grant "all" on deals with the same hidden fields share the variant of a
pipeline board. Two users with "own" scope never do, because the user id is
part of it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import msgspec

from app.access.permissions import ACTIONS, Access

SEPARATOR = "|"

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Access)


def view_of(access: Access, object_types: Iterable[str]) -> Access:
    """Keep only what pages about ``object_types`` depend on.

    The user id stays only when one of those scopes is "own", and the team
    ids only when one is "team".
    """
    kinds = sorted(set(object_types))
    scopes = {
        f"{kind}.{action}": access.scope(kind, action)
        for kind in kinds
        for action in ACTIONS
    }
    used = set(scopes.values())
    return Access(
        user_id=access.user_id if "own" in used else 0,
        team_ids=access.team_ids if "team" in used else (),
        scopes={key: scope for key, scope in scopes.items() if scope != "none"},
        hidden={kind: access.hidden[kind] for kind in kinds if kind in access.hidden},
        read_only={
            kind: access.read_only[kind] for kind in kinds if kind in access.read_only
        },
    )


def variant(board_key: str, access: Access, object_types: Iterable[str]) -> str:
    """Return the hub variant of a subscription: filter, then access view."""
    view = _encoder.encode(view_of(access, object_types)).decode()
    return f"{board_key}{SEPARATOR}{view}"


@functools.lru_cache(maxsize=4096)
def split_variant(text: str) -> tuple[str, Access]:
    """Return the board filter key and the access view of a variant."""
    board_key, _, view = text.partition(SEPARATOR)
    if not view:
        # A variant without a view grants nothing.
        return board_key, Access()
    return board_key, _decoder.decode(view)


def view_key(variant: str) -> str:
    """Return the access part of a variant, shared by variants of one profile."""
    return variant.partition(SEPARATOR)[2]
