"""The submit command's pure parts: which files it sends, which it skips on --resume, and
one-line messages for bad input (no gateway needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from asyncinfer_client import content_key
from cli.main import main
from client.files import MissingPath, discover
from client.records import CANCELLED, ERROR, FAILED, REJECTED, SUCCEEDED, FileResult
from client.resume import split_done


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name in ["b.jpg", "a.PNG", "notes.txt", "sub/c.webp", "sub/deeper/d.gif"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    return tmp_path


def test_a_directory_gives_its_images_sorted(tree: Path) -> None:
    assert discover([str(tree)], recursive=False) == [tree / "a.PNG", tree / "b.jpg"]


def test_recursive_descends(tree: Path) -> None:
    found = discover([str(tree)], recursive=True)
    assert [p.relative_to(tree).as_posix() for p in found] == ["a.PNG", "b.jpg", "sub/c.webp", "sub/deeper/d.gif"]


def test_named_files_are_sent_whatever_their_name_and_only_once(tree: Path) -> None:
    found = discover([str(tree / "notes.txt"), str(tree), str(tree / "b.jpg")], recursive=False)
    assert found == [tree / "notes.txt", tree / "a.PNG", tree / "b.jpg"]


def test_a_missing_path_is_named(tree: Path) -> None:
    with pytest.raises(MissingPath, match=r"nope\.jpg: no such file"):
        discover([str(tree / "nope.jpg")], recursive=False)


def test_idempotency_key_depends_on_content_model_and_top_k_only() -> None:
    sha, key = content_key(b"image bytes", 5)
    assert sha in key
    assert content_key(b"image bytes", 5) == (sha, key)
    assert content_key(b"image bytes", 3)[1] != key
    assert content_key(b"image bytes", 5, "mobilenet_v3_small")[1] != key
    assert content_key(b"other bytes", 5)[0] != sha


def test_resume_skips_settled_files_and_retries_the_rest() -> None:
    files = [Path(name) for name in ["ok.jpg", "bad.txt", "broken.jpg", "gone.jpg", "timeout.jpg", "new.jpg"]]
    previous = {
        "ok.jpg": FileResult("ok.jpg", SUCCEEDED),
        "bad.txt": FileResult("bad.txt", REJECTED),
        "broken.jpg": FileResult("broken.jpg", FAILED),
        "gone.jpg": FileResult("gone.jpg", CANCELLED),
        "timeout.jpg": FileResult("timeout.jpg", ERROR),
    }

    todo, done = split_done(files, previous)

    assert todo == [Path("timeout.jpg"), Path("new.jpg")]
    assert [r.file for r in done] == ["ok.jpg", "bad.txt", "broken.jpg", "gone.jpg"]


def test_resume_matches_paths_however_they_were_written() -> None:
    todo, done = split_done([Path("./imgs/a.jpg")], {"imgs/a.jpg": FileResult("imgs/./a.jpg", SUCCEEDED)})
    assert todo == [] and len(done) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing-dir"], "missing-dir: no such file or directory"),
        (["{tree}", "--out", "results.txt"], "the extension must be .jsonl or .csv, not .txt"),
        (["{tree}", "--resume"], "--resume needs --out FILE"),
        (["{tree}", "--top-k", "0"], "--top-k must be from 1 to 20"),
        (["{tree}", "--concurrency", "0"], "--concurrency must be at least 1"),
        (["{tree}/empty"], "no image files found in"),
    ],
)
def test_bad_input_gets_one_line(tree: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree)
    argv = ["submit", *(arg.format(tree=tree) for arg in args), "--url", "http://127.0.0.1:9"]

    assert main(argv) == 2

    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("asyncinfer submit: ") and message in err
