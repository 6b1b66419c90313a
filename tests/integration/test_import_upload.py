"""Starting an import from the web: the form's checks."""

from __future__ import annotations

from typing import Any

from app.imports.tables import ImportJob
from tests.browserless import Session
from tests.factories import make_user


async def test_start_import_without_files_names_field(server) -> None:
    user = await make_user("admin")
    session = Session(server.url)
    await session.sign_in(user.email)
    headers = {"x-csrftoken": session.csrf_token}
    jobs_before = await ImportJob.count()
    requests: list[dict[str, Any]] = [
        {"data": {"source": "tickets"}},
        {"files": {"source": (None, "tickets")}},
        {"files": {"source": (None, "tickets"), "files": (None, "not a file")}},
        {"files": {"source": (None, "tickets"), "files": ("", b"")}},
    ]

    for request in requests:
        response = await session.http.post("/import/", headers=headers, **request)

        assert response.status_code == 422, request
        assert 'data-field="files"' in response.text, request
        assert "Files must include at least one file." in response.text, request
    assert await ImportJob.count() == jobs_before
    await session.close()


async def test_start_import_with_unknown_source_names_field(server) -> None:
    user = await make_user("admin")
    session = Session(server.url)
    await session.sign_in(user.email)

    response = await session.http.post(
        "/import/",
        data={"source": "nope"},
        files={"files": ("a.csv", b"x\n", "text/csv")},
        headers={"x-csrftoken": session.csrf_token},
    )

    assert response.status_code == 422
    assert 'data-field="source"' in response.text
    assert "&#39;nope&#39;" in response.text or "'nope'" in response.text
    await session.close()


async def test_mapping_upload_not_utf8_names_file_once(server) -> None:
    user = await make_user("admin")
    session = Session(server.url)
    await session.sign_in(user.email)

    response = await session.http.post(
        "/import/map",
        data={"target": "deal"},
        files={"file": ("latin.csv", "name\nCafé\n".encode("latin-1"), "text/csv")},
        headers={"x-csrftoken": session.csrf_token},
    )

    assert response.status_code == 422
    text = response.text.replace("&#39;", "'")
    assert "File 'latin.csv' is not valid UTF-8" in text
    assert "latin.csv latin.csv" not in text
    assert "again.." not in text
    await session.close()
