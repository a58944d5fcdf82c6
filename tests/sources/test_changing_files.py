"""Files that change after they were loaded: raw and the rejected rows hold one reading of
each file, the latest; never a stale row, a stale reject or a silent skip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from project import Project, summary

CONFIG = """
[sources.people]
kind = "csv"
folder = "inbox/people"
key = "person_id"
max_rejected_rate = 1

[sources.clicks]
kind = "jsonl"
folder = "inbox/clicks"
key = "click_id"
max_rejected_rate = 1
"""
HEADER = "person_id,name,city\n"


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project.create(tmp_path / "p", CONFIG).with_inbox("people", "clicks")


def ingest(project: Project, source: str) -> dict[str, str]:
    done = project.run("python", "-m", "ingestion", source)
    assert done.returncode == 0, done.stderr
    return summary(done.stdout)[source]


def test_a_changed_csv_file_replaces_its_rows_and_rejects(project: Project) -> None:
    folder = project.root / "inbox" / "people"
    (folder / "b.csv").write_text(HEADER + "10,B10,Oslo\nbroken\n")  # never changes
    half = HEADER + "1,P1,Oslo\n2,P2"  # copied in while still being written
    (folder / "a.csv").write_text(half)

    def reading() -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
        rows = project.query("select _row_key, name from raw.people order by _row_key")
        rejects = project.query("select location, reason from raw._rejected_rows order by 1")
        return rows, rejects

    first = ingest(project, "people")
    assert (first["read"], first["loaded"], first["rejected"]) == ("4", "2", "2")
    assert reading() == (
        [("a.csv:2", "P1"), ("b.csv:2", "B10")],
        [("a.csv:3", "wrong_field_count"), ("b.csv:3", "wrong_field_count")],
    )

    (folder / "a.csv").write_text(HEADER + "1,P1,Oslo\n2,P2,Rome\n3,P3,Lima\n")  # complete
    second = ingest(project, "people")
    assert (second["read"], second["loaded"], second["rejected"]) == ("3", "3", "0")
    assert reading() == (  # the cut line's reject is gone with the reading it belonged to
        [("a.csv:2", "P1"), ("a.csv:3", "P2"), ("a.csv:4", "P3"), ("b.csv:2", "B10")],
        [("b.csv:3", "wrong_field_count")],
    )

    (folder / "a.csv").write_text(HEADER + "1,P1b,Oslo\n")  # rewritten shorter
    third = ingest(project, "people")
    assert (third["read"], third["loaded"], third["rejected"]) == ("1", "1", "0")
    assert reading() == (
        [("a.csv:2", "P1b"), ("b.csv:2", "B10")],
        [("b.csv:3", "wrong_field_count")],
    )

    (folder / "a.csv").write_text("person_id,name,city\nbad\n")  # now nothing loads from it
    fourth = ingest(project, "people")
    assert (fourth["read"], fourth["loaded"], fourth["rejected"]) == ("1", "0", "1")
    assert reading() == (
        [("b.csv:2", "B10")],
        [("a.csv:2", "wrong_field_count"), ("b.csv:3", "wrong_field_count")],
    )

    again = ingest(project, "people")  # unchanged: nothing read, nothing moves
    assert (again["read"], again["loaded"], again["rejected"]) == ("0", "0", "0")
    assert len(reading()[0]) == 1


def clicks(*ids: int) -> str:
    return "".join(json.dumps({"click_id": f"c{i}"}) + "\n" for i in ids)


def test_a_segment_only_grows_and_a_changed_one_is_refused_not_skipped(
    project: Project,
) -> None:
    folder = project.root / "inbox" / "clicks"
    segment = folder / "s1.jsonl"
    segment.write_text(clicks(1, 2, 3) + '{"click_id": "c4"')  # the last line is being written
    first = ingest(project, "clicks")
    assert (first["read"], first["loaded"]) == ("3", "3")

    grown = clicks(1, 2, 3, 4, 5)
    segment.write_text(grown)  # completed and grown: the new lines load
    second = ingest(project, "clicks")
    assert (second["read"], second["loaded"]) == ("2", "2")

    segment.write_text(grown.replace("c2", "c9"))  # rewritten, same size
    (folder / "s2.jsonl").write_text(clicks(6))
    refused = project.run("python", "-m", "ingestion", "clicks")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "error: clicks: refused s1.jsonl (rewritten after lines 1-5 loaded): a segment only "
        "grows; put new lines in a new segment, or reload the source (python -m ingestion "
        "clicks --full-refresh); the other segments loaded"
    ]
    assert summary(refused.stdout)["clicks"]["loaded"] == "1"  # s2.jsonl's c6
    keys = "select click_id from raw.clicks order by 1"
    assert project.query(keys) == [(f"c{i}",) for i in range(1, 7)]

    segment.write_text(clicks(1, 2))  # cut shorter than what was loaded
    shorter = project.run("python", "-m", "ingestion", "clicks")
    assert shorter.returncode == 1
    assert "refused s1.jsonl (cut shorter after lines 1-5 loaded)" in shorter.stderr

    segment.write_text(grown)  # put back as it was: nothing new, nothing refused
    back = ingest(project, "clicks")
    assert (back["read"], back["loaded"]) == ("0", "0")
    assert project.query(keys) == [(f"c{i}",) for i in range(1, 7)]
