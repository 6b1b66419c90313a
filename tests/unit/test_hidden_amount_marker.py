"""The marker that permission tests search for finds amounts, not timestamps."""

import pytest

from tests.factories import shows_hidden_amount


@pytest.mark.parametrize(
    "text",
    ["987654.32", "$987,654", '"amount": "987654.32"', "<td>987,654.32</td>"],
)
def test_finds_the_amount(text: str) -> None:
    assert shows_hidden_amount(text)


@pytest.mark.parametrize(
    "text",
    ["2026-12-05T07:49:23.987654+00:00", "id 19876543", "12:987654", "9876540"],
)
def test_ignores_the_same_digits_elsewhere(text: str) -> None:
    assert not shows_hidden_amount(text)
