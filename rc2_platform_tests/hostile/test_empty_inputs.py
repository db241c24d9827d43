"""Careless inputs that used to 'succeed' doing nothing or leave debris behind."""

from __future__ import annotations

from pathlib import Path

from rc2_platform.butler import Butler
from rc2_platform_tests.hostile.conftest import expect_cli_refusal, run_cli


def test_ingest_raws_of_folders_without_fits_files_is_refused(tmp_path: Path) -> None:
    Butler.create(tmp_path / "repo").close()
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no raws here")
    for folders in (["empty"], ["empty", "notes"]):
        args = ["ingest-raws", str(tmp_path / "repo"), *(str(tmp_path / f) for f in folders)]
        result = expect_cli_refusal(args, match="no raw files")
        assert result.exit_code == 1
    with Butler(tmp_path / "repo") as butler:
        assert "HSC/raw/all" not in butler.registry.query_collections()


def test_create_against_an_unreachable_server_leaves_no_folder(tmp_path: Path) -> None:
    target = tmp_path / "new" / "repo"
    url = "postgresql+psycopg://root@127.0.0.1:1/none"
    result = run_cli(["create", str(target), "--registry-url", url])
    assert result.exit_code != 0 and "cannot connect" in result.output
    assert "Traceback" not in result.output
    assert not target.exists()
    existing = tmp_path / "mine"
    existing.mkdir()
    run_cli(["create", str(existing), "--registry-url", url])
    assert existing.is_dir(), "a folder the user made is never removed"
