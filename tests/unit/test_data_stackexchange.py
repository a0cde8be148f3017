"""Streaming dump reader and pass 1 (scan, score, pair) on small hand-written dumps."""

from collections import Counter
from pathlib import Path

import pytest

from stackllama_cli.core.errors import StackLlamaError
from stackllama_cli.data.prepare import PrepareConfig, build_pairs, plan_site, scan
from stackllama_cli.data.stackexchange import DumpSource, iter_rows, site_name

# q1: accepted a11 (net 3 -> 2 + 1 = 3), a12 (net 1 -> 1), a13 (net 0 -> 0), a14 (net -2 -> -1),
#     a15 (net 1 -> 1, ties a12), a16 empty body: 5 scored answers, 10 combinations, 1 tie -> 9 pairs
# q2: a21 (net 2 -> 2), a22 (net 2 -> 2): one tied combination, no pair
# q3: no answers; a91: orphan (parent 99 missing); row 5: tag wiki (PostTypeId 4)
DUMP = """<?xml version="1.0" encoding="utf-8"?>
<posts>
  <row Id="11" PostTypeId="2" ParentId="1" Score="3" Body="&lt;p&gt;best&lt;/p&gt;" />
  <row Id="1" PostTypeId="1" AcceptedAnswerId="11" CreationDate="2020-01-02T03:04:05.000" Score="5"
       Title="Why?" Body="&lt;p&gt;Because.&lt;/p&gt;" />
  <row Id="12" PostTypeId="2" ParentId="1" Score="1" Body="&lt;p&gt;ok&lt;/p&gt;" />
  <row Id="13" PostTypeId="2" ParentId="1" Score="0" Body="meh" />
  <row Id="14" PostTypeId="2" ParentId="1" Score="-2" Body="&lt;p&gt;wrong&lt;/p&gt;" />
  <row Id="15" PostTypeId="2" ParentId="1" Score="1" Body="also ok" />
  <row Id="16" PostTypeId="2" ParentId="1" Score="9" Body="  " />
  <row Id="2" PostTypeId="1" CreationDate="2021-05-06T00:00:00.000" Title="Tie" Body="q" />
  <row Id="21" PostTypeId="2" ParentId="2" Score="2" Body="x" />
  <row Id="22" PostTypeId="2" ParentId="2" Score="2" Body="y" />
  <row Id="3" PostTypeId="1" Title="Alone" Body="q" />
  <row Id="91" PostTypeId="2" ParentId="99" Score="4" Body="orphan" />
  <row Id="5" PostTypeId="4" Body="tag wiki" />
</posts>
"""


@pytest.fixture
def dump(tmp_path) -> Path:
    path = tmp_path / "tiny.stackexchange.com-Posts.xml"
    path.write_text(DUMP)
    return path


def test_iter_rows_streams_rows_and_counts_bytes(dump):
    seen = []
    ids = [row.get("Id") for row in iter_rows(dump, seen.append)]
    assert ids == ["11", "1", "12", "13", "14", "15", "16", "2", "21", "22", "3", "91", "5"]
    assert sum(seen) == dump.stat().st_size


def test_scan_and_pairs_hand_counted(dump):
    stats = Counter()
    source = DumpSource("tiny.stackexchange.com", dump, dump)
    questions = scan(source, stats, None)
    assert stats["rows"] == 13 and stats["questions"] == 3 and stats["answers"] == 9
    assert stats["dropped.other_post_types"] == 1 and stats["dropped.orphan_answers"] == 1
    assert stats["dropped.empty_answer_bodies"] == 1
    assert questions[1].accepted == 11 and questions[1].date == "2020-01-02"
    assert sorted(questions[1].answers) == [(11, 3), (12, 1), (13, 0), (14, -2), (15, 1)]
    pairs = build_pairs(questions, PrepareConfig(max_pairs=10), source.site, stats)
    assert list(pairs) == [1]
    got = {(p.chosen.answer_id, p.rejected.answer_id) for p in pairs[1]}
    assert got == {(11, 12), (11, 13), (11, 14), (11, 15), (12, 13), (12, 14), (13, 14), (15, 13), (15, 14)}
    assert all(p.chosen.score > p.rejected.score for p in pairs[1])
    assert {p.chosen.answer_id: p.chosen.score for p in pairs[1]}[11] == 3  # 2 + 1 for the accepted answer
    assert stats["dropped.tied_pairs"] == 2  # (12, 15) and (21, 22)
    assert stats["dropped.questions_without_answers"] == 1 and stats["dropped.questions_without_pairs"] == 1


def test_max_pairs_caps_and_counts(dump):
    stats = Counter()
    source = DumpSource("tiny.stackexchange.com", dump, dump)
    pairs = build_pairs(scan(source, Counter(), None), PrepareConfig(max_pairs=4), source.site, stats)
    assert len(pairs[1]) == 4 and stats["dropped.pairs_over_max_pairs"] == 5


def test_plan_waits_for_the_bodies_of_each_question(dump):
    from stackllama_cli.core.console import progress

    source = DumpSource("tiny.stackexchange.com", dump, dump)
    with progress(transient=True) as bar:
        plan = plan_site(source, PrepareConfig(), Counter(), bar)
    assert plan.owner == {1: 1, 11: 1, 12: 1, 13: 1, 14: 1, 15: 1}  # only posts in pairs get converted
    assert plan.waiting == {1: 6} and plan.dates == {1: "2020-01-02"}


@pytest.mark.parametrize("text, message", [
    ('<?xml version="1.0"?><users><row Id="1"/></users>', "root element <users>"),
    ("<tags/>", "root element <tags>"),
    ("", "not well-formed"),
    ('<posts><row Id="1" PostTypeId="1"/><row Id="2"', "not well-formed"),
    ('<posts><row Id="1" PostTypeId="1"/>', "not well-formed"),  # truncated before </posts>
    ('<posts><row Id="1" Body="a & b"/></posts>', "not well-formed"),
    ("\x00\x01binary", "not well-formed"),
])
def test_iter_rows_errors_are_one_clear_line(tmp_path, text, message):
    path = tmp_path / "Posts.xml"
    path.write_text(text)
    with pytest.raises(StackLlamaError, match=message) as info:
        list(iter_rows(path))
    assert "\n" not in str(info.value)


def test_empty_posts_file_yields_nothing(tmp_path):
    path = tmp_path / "Posts.xml"
    path.write_text("<posts>\n</posts>\n")
    assert list(iter_rows(path)) == []


@pytest.mark.parametrize("name, expected", [
    ("beer.stackexchange.com-Posts.xml", "beer.stackexchange.com"),
    ("beer.stackexchange.com.7z", "beer.stackexchange.com"),
    ("coffee.stackexchange.com_Posts.xml", "coffee.stackexchange.com"),
])
def test_site_name_from_file_names(tmp_path, name, expected):
    assert site_name(tmp_path / name) == expected


def test_site_name_of_folder_and_bare_posts_xml(tmp_path):
    folder = tmp_path / "linux.stackexchange.com"
    folder.mkdir()
    assert site_name(folder) == "linux.stackexchange.com"
    assert site_name(folder / "Posts.xml") == "linux.stackexchange.com"


def prepare(tmp_path: Path, text: str, **options) -> tuple[dict, list[dict]]:
    """Run prepare-data on a dump given as text; (stats, output rows in order)."""
    import json

    from stackllama_cli.data.prepare import run

    tmp_path.mkdir(parents=True, exist_ok=True)
    src = tmp_path / "tiny.stackexchange.com-Posts.xml"
    src.write_text(text)
    out = tmp_path / "out"
    stats = run(PrepareConfig(inputs=[str(src)], output=str(out), format="jsonl", workers=1, overwrite=True,
                              **options))
    rows = [json.loads(line) for path in sorted((out / "data").glob("*.jsonl")) for line in path.open()]
    return stats, rows


def pair_ids(rows: list[dict]) -> list[tuple[int, int, int, int, int]]:
    return sorted((r["qid"], r["answer_id_j"], r["answer_id_k"], r["score_j"], r["score_k"]) for r in rows)


def test_every_row_twice_gives_each_pair_once_and_counts_the_duplicates(tmp_path):
    lines = DUMP.splitlines(keepends=True)
    rows_start = next(i for i, line in enumerate(lines) if "<row" in line)
    rows_end = next(i for i, line in enumerate(lines) if "</posts>" in line)
    body = "".join(lines[rows_start:rows_end])
    doubled = "".join(lines[:rows_start]) + body + body + "".join(lines[rows_end:])
    once_stats, once = prepare(tmp_path / "once", DUMP)
    stats, rows = prepare(tmp_path / "twice", doubled)
    assert len(rows) == len(once) == 9
    assert pair_ids(rows) == pair_ids(once)
    assert stats["dropped"]["duplicate_ids"] == 13 and "duplicate_ids" not in once_stats["dropped"]
    assert stats["rows"] == 26 and stats["pairs"] == 9


def test_an_answer_sharing_its_question_id_is_dropped_as_a_duplicate(tmp_path):
    dump = """<posts>
  <row Id="1" PostTypeId="1" Title="T" Body="q" CreationDate="2020-01-01T00:00:00.000" />
  <row Id="11" PostTypeId="2" ParentId="1" Score="3" Body="good" />
  <row Id="12" PostTypeId="2" ParentId="1" Score="0" Body="meh" />
  <row Id="1" PostTypeId="2" ParentId="1" Score="9" Body="same id as the question" />
  <row Id="12" PostTypeId="1" Title="T2" Body="same id as an answer" />
</posts>
"""
    stats, rows = prepare(tmp_path, dump)  # first wins: the question 1, the answer 12
    assert pair_ids(rows) == [(1, 11, 12, 2, 0)]
    assert rows[0]["question"] == "T\n\nq" and rows[0]["response_k"] == "meh"
    assert stats["dropped"]["duplicate_ids"] == 2


@pytest.mark.parametrize("score", ['Score="abc"', 'Score="1.5"', 'Score=""', "", 'Score=" 7"', 'Score="٣"'])
def test_an_answer_without_an_integer_score_is_dropped_and_counted(tmp_path, score):
    dump = f"""<posts>
  <row Id="1" PostTypeId="1" Title="T" Body="q" CreationDate="2020-01-01T00:00:00.000" />
  <row Id="11" PostTypeId="2" ParentId="1" Score="3" Body="good" />
  <row Id="12" PostTypeId="2" ParentId="1" Score="-1" Body="bad" />
  <row Id="13" PostTypeId="2" ParentId="1" {score} Body="unknown votes" />
</posts>
"""
    stats, rows = prepare(tmp_path, dump)
    assert pair_ids(rows) == [(1, 11, 12, 2, -1)]  # 13 would have scored 0 (or 2 for 1.5) had it been guessed
    assert stats["dropped"]["answers_with_invalid_score"] == 1
