"""Submitted webhook URLs reach the log without their credentials."""

from __future__ import annotations

import pytest

from app.webhooks.routes import loggable


@pytest.mark.parametrize(
    ("value", "logged"),
    [
        ("http://user:pw@127.0.0.1/hook", "http://[credentials]@127.0.0.1/hook"),
        (
            "https://token@hooks.example.test",
            "https://[credentials]@hooks.example.test",
        ),
        (
            "https://hooks.example.test/in?to=a@b",
            "https://hooks.example.test/in?to=a@b",
        ),
        ("https://hooks.example.test/in", "https://hooks.example.test/in"),
        (None, None),
    ],
)
def test_loggable_drops_credentials(value: str | None, logged: str | None) -> None:
    assert loggable(value) == logged
