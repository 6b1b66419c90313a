"""Import file errors name the files, never the server's folders."""

from __future__ import annotations

import pytest

from app.imports import maven
from app.imports.report import ImportFileError
from app.imports.service import collect_files


def test_no_known_file_names_files_not_folder(tmp_path) -> None:
    folder = tmp_path / "uploads" / "import-3"
    folder.mkdir(parents=True)
    (folder / "deals.csv").write_text("name,amount\nAcme,10\n")

    with pytest.raises(ImportFileError) as raised:
        collect_files(maven, [folder])

    message = str(raised.value)
    assert "deals.csv" in message
    assert str(tmp_path) not in message
    assert "import-3" not in message
