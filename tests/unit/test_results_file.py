"""The submit command's results file: written line by line, read back by --resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.records import ERROR, REJECTED, SUCCEEDED, FileResult, from_job
from client.results_file import UnknownFormat, format_of, open_results, read_results

GOOD = FileResult(
    "imgs/a.jpg", SUCCEEDED, "ab" * 32, "job-1",
    [{"label": "tabby", "class_id": 281, "score": 0.83}, {"label": "tiger_cat", "class_id": 282, "score": 0.1}],
    model="mobilenet_v2@1",
)
BAD = FileResult("imgs/notes.txt", REJECTED, "cd" * 32, error_code="415", error="text/plain is not an image type")


def write(path: Path, *results: FileResult, append: bool = False, top_k: int = 2) -> None:
    writer = open_results(path, append=append, top_k=top_k)
    for result in results:
        writer.write(result)
    writer.close()


@pytest.mark.parametrize("name", ["out.jsonl", "out.csv"])
def test_round_trip(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    write(path, GOOD, BAD)

    read = read_results(path)

    assert set(read) == {"imgs/a.jpg", "imgs/notes.txt"}
    assert read["imgs/notes.txt"] == BAD
    assert read["imgs/a.jpg"].status == SUCCEEDED and read["imgs/a.jpg"].job_id == "job-1"
    assert [(p["label"], p["score"]) for p in read["imgs/a.jpg"].predictions] == [("tabby", 0.83), ("tiger_cat", 0.1)]


def test_csv_has_flat_columns(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    write(path, GOOD, top_k=3)

    header, row = path.read_text().splitlines()

    assert header == "file,status,sha256,job_id,model,label_1,score_1,label_2,score_2,label_3,score_3,error_code,error"
    assert row.startswith("imgs/a.jpg,succeeded,") and ",tabby,0.83,tiger_cat,0.1,,,," in row


@pytest.mark.parametrize("name", ["out.jsonl", "out.csv"])
def test_each_record_is_on_disk_as_soon_as_it_is_written(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    writer = open_results(path, append=False, top_k=2)
    writer.write(GOOD)

    assert "imgs/a.jpg" in read_results(path)  # before close: a killed run keeps it
    writer.close()


@pytest.mark.parametrize("name", ["out.jsonl", "out.csv"])
def test_a_line_cut_off_by_a_kill_is_ignored_then_trimmed_before_appending(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    write(path, GOOD)
    with open(path, "a") as f:
        f.write('{"file": "imgs/half' if name.endswith("jsonl") else "imgs/half.jpg,succeeded")

    assert set(read_results(path)) == {"imgs/a.jpg"}

    write(path, BAD, append=True)
    assert set(read_results(path)) == {"imgs/a.jpg", "imgs/notes.txt"}
    assert "half" not in path.read_text()


def test_appending_to_csv_keeps_its_header(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    write(path, GOOD)
    write(path, BAD, append=True, top_k=5)

    lines = path.read_text().splitlines()
    assert len(lines) == 3 and lines[0].startswith("file,") and "label_3" not in lines[0]


def test_without_append_the_file_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    write(path, GOOD)
    write(path, BAD)

    assert set(read_results(path)) == {"imgs/notes.txt"}


def test_a_file_recorded_twice_reads_as_its_newest_record(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    first = FileResult("./imgs/a.jpg", ERROR, error_code="timeout", error="not finished")
    write(path, first, GOOD)

    assert read_results(path)["imgs/a.jpg"] == GOOD


def test_damaged_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text('not json\n{"no_file": 1}\n[1, 2]\n')
    write(path, GOOD, append=True)

    assert set(read_results(path)) == {"imgs/a.jpg"}


def test_missing_file_reads_as_empty(tmp_path: Path) -> None:
    assert read_results(tmp_path / "none.jsonl") == {}


@pytest.mark.parametrize("name", ["out.txt", "out", "out.json"])
def test_unknown_extensions_are_refused(name: str) -> None:
    with pytest.raises(UnknownFormat, match=r"\.jsonl or \.csv"):
        format_of(Path(name))


def test_record_from_a_job_document() -> None:
    failed = {"id": "j", "status": "failed", "result": None, "model": {"name": "mobilenet_v2", "version": "1"},
              "error": {"code": "decode_error", "message": "broken\nJPEG", "retryable": False}}

    result = from_job("x.jpg", "ff", failed)

    assert result == FileResult("x.jpg", "failed", "ff", "j", [], "decode_error", "broken JPEG", "mobilenet_v2@1")
    assert result.reason == "failed (decode_error: broken JPEG)"
