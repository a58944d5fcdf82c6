"""Files as a user's folders hold them: compressed, upper-case, with a BOM, and stray files.

Every declared csv and jsonl source gets this from its kind; the counts are exact:
records in = raw rows + rejected rows, and what was not loaded is named.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from project import Project, summary

CONFIG = """
[sources.people]
kind = "csv"
folder = "inbox/people"
key = "person_id"
max_rejected_rate = 1  # these files are a few rows each, some bad on purpose

[sources.clicks]
kind = "jsonl"
folder = "inbox/clicks"
key = "click_id"
max_rejected_rate = 1
"""
HEADER = "person_id,name\n"


def people(*ids: int) -> str:
    return HEADER + "".join(f"{i},P{i}\n" for i in ids)


def clicks(*ids: int) -> str:
    return "".join(json.dumps({"click_id": f"c{i}", "n": i}) + "\n" for i in ids)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project.create(tmp_path / "p", CONFIG).with_inbox("people", "clicks")


def test_gz_and_any_case_load_and_other_files_are_listed(project: Project) -> None:
    csv_dir, jsonl_dir = project.root / "inbox" / "people", project.root / "inbox" / "clicks"
    (csv_dir / "a.csv").write_text(people(1, 2))
    (csv_dir / "B.CSV").write_text(people(3))
    (csv_dir / "c.csv.gz").write_bytes(gzip.compress(people(4, 5).encode()))
    (csv_dir / "D.Csv.GZ").write_bytes(gzip.compress(people(6).encode()))
    whole = gzip.compress(people(7, 8).encode())
    (csv_dir / "e.csv.gz").write_bytes(whole[: len(whole) // 2])  # cut while being copied
    (csv_dir / "notes.txt").write_text("not an export")
    (jsonl_dir / "s1.jsonl").write_text(clicks(1, 2))
    (jsonl_dir / "S2.JSONL").write_text(clicks(3))
    (jsonl_dir / "s3.jsonl.gz").write_bytes(gzip.compress(clicks(4, 5, 6).encode()))
    (jsonl_dir / "readme.md").write_text("# clicks")

    done = project.run("python", "-m", "ingestion")
    assert done.returncode == 0, done.stderr
    table = summary(done.stdout)
    # 6 rows + the cut archive, rejected whole (one record)
    assert (table["people"]["read"], table["people"]["loaded"]) == ("7", "6")
    assert table["people"]["rejected"] == "1"
    assert (table["clicks"]["read"], table["clicks"]["loaded"]) == ("6", "6")
    assert "people: ignored, matching no pattern: notes.txt" in done.stdout
    assert "clicks: ignored, matching no pattern: readme.md" in done.stdout
    assert "people: rejected whole: e.csv.gz (invalid_gzip)" in done.stdout
    assert project.query(
        "select person_id, _source_file, _source_line from raw.people order by person_id"
    ) == [
        ("1", "a.csv", 2),
        ("2", "a.csv", 3),
        ("3", "B.CSV", 2),
        ("4", "c.csv.gz", 2),
        ("5", "c.csv.gz", 3),
        ("6", "D.Csv.GZ", 2),
    ]
    assert project.query("select click_id, _segment, _line from raw.clicks order by click_id") == [
        ("c1", "s1.jsonl", 1),
        ("c2", "s1.jsonl", 2),
        ("c3", "S2.JSONL", 1),
        ("c4", "s3.jsonl.gz", 1),
        ("c5", "s3.jsonl.gz", 2),
        ("c6", "s3.jsonl.gz", 3),
    ]
    assert project.query("select location, reason from raw._rejected_rows") == [
        ("e.csv.gz", "invalid_gzip")
    ]

    again = project.run("python", "-m", "ingestion")  # nothing new: nothing loaded twice
    assert again.returncode == 0, again.stderr
    assert {s: (r["read"], r["loaded"]) for s, r in summary(again.stdout).items()} == {
        "people": ("0", "0"),
        "clicks": ("0", "0"),
    }
    assert "notes.txt" in again.stdout  # still there, still listed


def test_a_byte_order_mark_is_not_part_of_the_first_record(project: Project) -> None:
    bom = "\ufeff"
    (project.root / "inbox" / "people" / "a.csv").write_text(bom + people(1, 2), "utf-8")
    (project.root / "inbox" / "clicks" / "s1.jsonl").write_text(bom + clicks(1, 2), "utf-8")
    (project.root / "inbox" / "clicks" / "s2.jsonl.gz").write_bytes(
        gzip.compress((bom + clicks(3)).encode())
    )
    done = project.run("python", "-m", "ingestion")
    assert done.returncode == 0, done.stderr
    assert project.query("select person_id, name from raw.people order by 1") == [
        ("1", "P1"),
        ("2", "P2"),
    ]
    assert project.query("select click_id, _line from raw.clicks order by 1") == [
        ("c1", 1),
        ("c2", 2),
        ("c3", 1),
    ]
    assert {s: (r["read"], r["rejected"]) for s, r in summary(done.stdout).items()} == {
        "people": ("2", "0"),
        "clicks": ("3", "0"),
    }


def test_columns_that_would_overwrite_another_are_rejected_and_lineage_is_ours(
    project: Project,
) -> None:
    inbox = project.root / "inbox"
    (inbox / "people" / "a.csv").write_text("person_id,name,UserId,user_id\n1,P1,7,7\n")
    (inbox / "people" / "b.csv").write_text(
        "person_id,name,_line,_loaded_at,_source_file\n2,P2,99,yesterday,fake.csv\n"
    )
    lines = [
        {"click_id": "c1", "n": 1},
        {"click_id": "c2", "clickId": "x"},  # would load into the key's column
        {"click_id": "c3", "_segment": "fake", "_line": 99, "_loaded_at": "x"},
        {"click_id": "c4", "n": 4},
    ]
    (inbox / "clicks" / "s1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))

    done = project.run("python", "-m", "ingestion")
    assert done.returncode == 0, done.stderr
    table = summary(done.stdout)
    assert [table[s][c] for s in ("people", "clicks") for c in ("read", "loaded", "rejected")] == [
        "2", "1", "1",  # a.csv rejected whole (one record), b.csv's row loaded
        "4", "3", "1",
    ]  # fmt: skip
    assert project.query(
        "select person_id, col_line, col_loaded_at, col_source_file, _source_file, _source_line"
        " from raw.people"
    ) == [("2", "99", "yesterday", "fake.csv", "b.csv", 2)]
    assert project.query(
        "select click_id, col_segment, col_line, col_loaded_at, _segment, _line"
        " from raw.clicks order by click_id"
    ) == [
        ("c1", None, None, None, "s1.jsonl", 1),
        ("c3", "fake", "99", "x", "s1.jsonl", 3),
        ("c4", None, None, None, "s1.jsonl", 4),
    ]
    rejects = project.query(
        "select source, location, reason, payload from raw._rejected_rows order by 1"
    )
    assert [r[:3] for r in rejects] == [
        ("clicks", "s1.jsonl:2", "duplicate_column_click_id"),
        ("people", "a.csv", "duplicate_column_user_id"),
    ]
    assert rejects[0][3] == json.dumps(lines[1])
    assert "UserId and user_id all load as user_id" in rejects[1][3]


def test_a_declared_name_that_is_not_a_raw_column_name_is_a_config_error(
    tmp_path: Path,
) -> None:
    project = Project.create(tmp_path / "p", CONFIG.replace('key = "click_id"', 'key = "clickId"'))
    project.with_inbox("people", "clicks")
    done = project.run("python", "-m", "ingestion", "clicks")
    assert done.returncode == 2  # a declaration error: nothing loads
    assert "sources.clicks.key (env SOURCES__CLICKS__KEY): 'clickId' loads as 'click_id'" in (
        done.stderr
    )


def test_quotes_long_fields_line_ends_and_utf16_load_row_by_row(project: Project) -> None:
    folder = project.root / "inbox" / "people"
    bom = "\ufeff"  # not part of the header's first name on this path either
    (folder / "a-stray.csv").write_text(bom + "person_id,height\n1,5'11\"\n2,6'0\"\n")
    (folder / "b-open.csv").write_text('person_id,name\n3,ok\n4,"never closed\n5,lost\n')
    blob = "x" * 5_000_000
    (folder / "c-big.csv").write_text(f"person_id,name\n6,{blob}\n7,small\n")
    (folder / "d-cr.csv").write_bytes(b"person_id,name\r8,A\r9,B\r")
    (folder / "e-utf16.csv").write_text("person_id,name\n10,Zoë\n", encoding="utf-16")

    done = project.run("python", "-m", "ingestion", "people")
    assert done.returncode == 0, done.stderr
    row = summary(done.stdout)["people"]
    assert (row["read"], row["loaded"], row["rejected"]) == ("9", "8", "1")
    assert project.query(
        "select _row_key, person_id, coalesce(height, name), length(name)"
        " from raw.people order by _row_key"
    ) == [
        ("a-stray.csv:2", "1", "5'11\"", None),
        ("a-stray.csv:3", "2", "6'0\"", None),
        ("b-open.csv:2", "3", "ok", 2),
        ("c-big.csv:2", "6", blob, 5_000_000),
        ("c-big.csv:3", "7", "small", 5),
        ("d-cr.csv:2", "8", "A", 1),
        ("d-cr.csv:3", "9", "B", 1),
        ("e-utf16.csv:2", "10", "Zoë", 3),
    ]
    assert project.query("select location, reason, payload from raw._rejected_rows") == [
        ("b-open.csv:3", "unterminated_quote", '4,"never closed\n5,lost')
    ]


def test_a_declared_utf16_export_without_a_byte_order_mark_loads(tmp_path: Path) -> None:
    project = Project.create(
        tmp_path / "p",
        CONFIG.replace('key = "person_id"', 'key = "person_id"\nencoding = "utf-16-le"', 1),
    )
    folder = project.with_inbox("people", "clicks").root / "inbox" / "people"
    (folder / "a.csv").write_bytes("person_id,name\n1,Zoë\n2,Åsa\n".encode("utf-16-le"))
    done = project.run("python", "-m", "ingestion", "people")
    assert done.returncode == 0, done.stderr
    assert project.query("select person_id, name from raw.people order by 1") == [
        ("1", "Zoë"),
        ("2", "Åsa"),
    ]
