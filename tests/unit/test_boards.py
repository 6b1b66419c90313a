import datetime as dt

import pytest

from app.boards import BoardFilter, Cursor, Placement, place_card
from app.errors import FieldError


def test_filter_key_round_trips() -> None:
    board_filter = BoardFilter.parse("7", "3")

    assert board_filter.key == "person=7&team=3"
    assert BoardFilter.from_key(board_filter.key) == board_filter


def test_empty_filter_has_empty_key() -> None:
    assert BoardFilter.parse(None, "").key == ""


def test_filter_rejects_non_numeric_person() -> None:
    with pytest.raises(FieldError) as raised:
        BoardFilter.parse("abc", None)

    assert raised.value.field == "person"
    assert raised.value.value == "abc"


def test_filter_matches_person_and_team() -> None:
    board_filter = BoardFilter(person_id=1, team_id=2)

    assert board_filter.matches(1, 2)
    assert not board_filter.matches(1, 3)
    assert not board_filter.matches(None, 2)


def test_filter_sql_appends_arguments() -> None:
    args: list[object] = []

    sql = BoardFilter(person_id=5).sql("d.owner", "d.team", args)

    assert sql == " AND d.owner = {}"
    assert args == [5]


def test_cursor_token_round_trips() -> None:
    cursor = Cursor(at=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC), id=42)

    assert Cursor.parse(cursor.token) == cursor


def test_cursor_rejects_garbage() -> None:
    with pytest.raises(FieldError, match="after"):
        Cursor.parse("not-a-cursor")


@pytest.mark.parametrize(
    ("person", "moved", "expected"),
    [
        (1, False, Placement(visible=True, remove=False, insert_at_top=False)),
        (1, True, Placement(visible=True, remove=True, insert_at_top=True)),
        (2, False, Placement(visible=False, remove=True, insert_at_top=False)),
        (2, True, Placement(visible=False, remove=True, insert_at_top=False)),
    ],
)
def test_place_card_on_filtered_board(
    person: int, moved: bool, expected: Placement
) -> None:
    record = {"owner": person, "team": None}

    assert (
        place_card(BoardFilter(person_id=1), record, "owner", moved, False) == expected
    )


def test_place_card_for_deleted_record_removes_it() -> None:
    placement = place_card(BoardFilter(), None, "owner", False, False)

    assert placement == Placement(visible=False, remove=True, insert_at_top=False)
