"""Filters and column paging shared by the pipeline and ticket boards."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from app.access.permissions import Access
from app.errors import FieldError
from app.fields import MAX_ID, reference

PAGE_SIZE = 25


@dataclass(frozen=True)
class BoardFilter:
    """The records a board shows: one person's, one team's, or everyone's.

    ``person_id`` is the owner of a deal or the assignee of a ticket.
    """

    person_id: int | None = None
    team_id: int | None = None

    @classmethod
    def parse(cls, person: str | None, team: str | None) -> BoardFilter:
        return cls(
            person_id=parse_id("person", person),
            team_id=parse_id("team", team),
        )

    @property
    def key(self) -> str:
        """The filter as a canonical query string, also its live variant name."""
        params = {}
        if self.person_id is not None:
            params["person"] = self.person_id
        if self.team_id is not None:
            params["team"] = self.team_id
        return urlencode(params)

    @classmethod
    def from_key(cls, key: str) -> BoardFilter:
        params = dict(part.split("=", 1) for part in key.split("&") if part)
        return cls.parse(params.get("person"), params.get("team"))

    def sql(self, person_column: str, team_column: str, args: list[object]) -> str:
        """Return the WHERE conditions for this filter, appending their arguments."""
        conditions = []
        if self.person_id is not None:
            args.append(self.person_id)
            conditions.append(f"{person_column} = {{}}")
        if self.team_id is not None:
            args.append(self.team_id)
            conditions.append(f"{team_column} = {{}}")
        return "".join(f" AND {condition}" for condition in conditions)

    def check_visible(
        self, access: Access, object_type: str, person_field: str
    ) -> None:
        """Reject a filter on a field hidden from ``access``, because the
        records it keeps would reveal the field's values.

        ``person_field`` is the field that ``person`` filters (a deal's
        ``owner``, a ticket's ``assignee``). Raises FieldError naming the
        parameter, as for an invalid value.
        """
        used = (
            ("person", self.person_id, person_field),
            ("team", self.team_id, "team"),
        )
        for name, value, field_name in used:
            if value is not None and not access.can_see(object_type, field_name):
                raise hidden_filter_error(name, value, object_type, field_name)

    def matches(self, person_id: int | None, team_id: int | None) -> bool:
        if self.person_id is not None and person_id != self.person_id:
            return False
        return not (self.team_id is not None and team_id != self.team_id)


def hidden_filter_error(
    name: str, value: Any, object_type: str, field_name: str, label: str | None = None
) -> FieldError:
    """Build the error for a filter parameter ``name`` on a hidden field."""
    field_label = field_name.replace("_", " ")
    return FieldError(
        name,
        value,
        f"filters the {object_type} {field_label}, a field your role cannot see",
        label=label,
    )


def parse_id(name: str, value: str | None) -> int | None:
    return reference(name, value)


@dataclass(frozen=True)
class Cursor:
    """Position after the last card of a column page: newest arrivals first."""

    at: dt.datetime
    id: int

    @property
    def token(self) -> str:
        return f"{self.at.isoformat()}|{self.id}"

    @classmethod
    def parse(cls, token: str | None) -> Cursor | None:
        if not token:
            return None
        try:
            at, _, record_id = token.rpartition("|")
            cursor = cls(at=dt.datetime.fromisoformat(at), id=int(record_id))
        except ValueError:
            raise FieldError("after", token, "is not a valid page cursor") from None
        if not 0 < cursor.id <= MAX_ID or cursor.at.tzinfo is None:
            raise FieldError("after", token, "is not a valid page cursor")
        return cursor


@dataclass(frozen=True)
class Placement:
    """The place of a changed card on one filtered board."""

    visible: bool
    remove: bool
    insert_at_top: bool


def place_card(
    board_filter: BoardFilter,
    record: Mapping[str, Any] | None,
    person_field: str,
    moved: bool,
    reassigned: bool,
    restricted: bool = False,
) -> Placement:
    """Decide how a board with ``board_filter`` shows a changed card.

    A card that changed column or person is taken out and put at the top of
    its column, which is where the board's order (newest arrival first) puts
    it. Any other change replaces the card where it is, and a card that no
    longer matches the filter leaves the board. ``record`` is None when the
    viewer may not read the record. ``restricted`` is True when their read
    scope is narrower than "all", which a reassignment may enter or leave
    just like a filter.
    """
    visible = record is not None and board_filter.matches(
        record[person_field], record["team"]
    )
    # On an unfiltered board a new owner changes nothing about the card's
    # place; on a filtered one the card may be new to the board.
    relocated = moved or (reassigned and (restricted or board_filter != BoardFilter()))
    return Placement(
        visible=visible,
        remove=relocated or not visible,
        insert_at_top=visible and relocated,
    )
