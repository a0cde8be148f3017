"""Streaming dump reader and pass 1 (scan, score, pair) on small hand-written dumps."""

from collections import Counter
from pathlib import Path

import pytest

from stackllama_cli.core.errors import StackLlamaError
from stackllama_cli.data.prepare import PrepareConfig
from stackllama_cli.data.stackexchange import iter_rows, site_name
from stackllama_cli.data.tables import ID_LIMIT, SeenIds, plan_pairs, scan

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


def pairs_of(plan, qi: int) -> list[tuple[int, int, int, int]]:
    s, e = plan.starts[qi], plan.starts[qi + 1]
    return list(zip(plan.chosen[s:e].tolist(), plan.rejected[s:e].tolist(), plan.chosen_score[s:e].tolist(),
                    plan.rejected_score[s:e].tolist()))


def test_scan_and_pairs_hand_counted(dump):
    stats = Counter()
    tables = scan(dump, stats)
    assert stats["rows"] == 13 and stats["questions"] == 3 and stats["answers"] == 9
    assert stats["dropped.other_post_types"] == 1 and stats["dropped.empty_answer_bodies"] == 1
    assert tables.q_id.tolist() == [1, 2, 3] and tables.q_accepted.tolist() == [11, -1, -1]
    assert tables.a_id.tolist() == [11, 12, 13, 14, 15, 21, 22, 91]  # file order; 16 has an empty body
    assert tables.a_parent.tolist() == [1, 1, 1, 1, 1, 2, 2, 99]
    assert tables.a_base.tolist() == [2, 1, 0, -1, 1, 2, 2, 2]  # scores before acceptance: net 3 -> 2, 4 -> 2
    plan = plan_pairs(tables, 10, 0, "tiny.stackexchange.com", stats)
    assert plan.qids.tolist() == [1] and plan.waiting.tolist() == [6]  # q1 and its five answers
    pairs = pairs_of(plan, 0)
    assert {(j, k) for j, k, _, _ in pairs} == {(11, 12), (11, 13), (11, 14), (11, 15), (12, 13), (12, 14), (13, 14),
                                                (15, 13), (15, 14)}
    assert all(sj > sk for _, _, sj, sk in pairs)
    assert {j: sj for j, _, sj, _ in pairs}[11] == 3  # 2 + 1 for the accepted answer
    assert stats["dropped.tied_pairs"] == 2  # (12, 15) and (21, 22)
    assert stats["dropped.orphan_answers"] == 1  # 91: its question 99 is not in the dump
    assert stats["dropped.questions_without_answers"] == 1 and stats["dropped.questions_without_pairs"] == 1


def test_accepted_and_negative_scores_from_the_stored_base():
    """answer_score(net, True) == answer_score(net, False) + 1 unless net < 0: what plan_pairs relies on."""
    from stackllama_cli.data.pairs import answer_score

    for net in range(-3, 3000):
        base = answer_score(net, False)
        assert answer_score(net, True) == base + (base >= 0)


def test_chunks_end_on_question_boundaries(tmp_path):
    rows = [f'<row Id="{q}" PostTypeId="1" Title="t" Body="q" AcceptedAnswerId="{q * 100 + 2}"/>'
            for q in range(1, 40)]
    rows += [f'<row Id="{q * 100 + a}" PostTypeId="2" ParentId="{q}" Score="{(q * a) % 7 - 1}" Body="x"/>'
             for a in range(5) for q in range(1, 40) if a <= q % 5]  # answers interleaved across questions
    path = tmp_path / "Posts.xml"
    path.write_text("<posts>" + "".join(rows) + "</posts>")
    plans = []
    for chunk in (1, 3, 1 << 16):
        stats = Counter()
        plan = plan_pairs(scan(path, Counter()), 10, 0, "x", stats, chunk=chunk)
        plans.append(([pairs_of(plan, i) for i in range(len(plan.qids))], plan.qids.tolist(), plan.waiting.tolist(),
                      sorted(stats.items())))
    assert plans[0] == plans[1] == plans[2] and len(plans[0][1]) > 20


def test_pairs_come_in_the_order_of_pairs_select_pairs(dump):
    from stackllama_cli.data.pairs import ScoredAnswer, select_pairs

    plan = plan_pairs(scan(dump, Counter()), 4, 7, "tiny.stackexchange.com", Counter())
    answers = [ScoredAnswer(11, 3), ScoredAnswer(12, 1), ScoredAnswer(13, 0), ScoredAnswer(14, -1),
               ScoredAnswer(15, 1)]
    expected, _ = select_pairs(answers, 4, 7, "tiny.stackexchange.com:1")
    assert pairs_of(plan, 0) == [(p.chosen.answer_id, p.rejected.answer_id, p.chosen.score, p.rejected.score)
                                 for p in expected]


def test_max_pairs_caps_and_counts(dump):
    stats = Counter()
    plan = plan_pairs(scan(dump, Counter()), 4, 0, "tiny.stackexchange.com", stats)
    assert len(pairs_of(plan, 0)) == 4 and stats["dropped.pairs_over_max_pairs"] == 5


def test_empty_tables_plan_no_pairs(tmp_path):
    path = tmp_path / "Posts.xml"
    path.write_text('<posts><row Id="1" PostTypeId="1" Title="t"/><row Id="2" PostTypeId="4"/></posts>')
    stats = Counter()
    plan = plan_pairs(scan(path, stats), 10, 0, "x", stats)
    assert len(plan.qids) == 0 and plan.starts.tolist() == [0]
    assert stats["dropped.questions_without_answers"] == 1


def test_seen_ids_first_wins_and_costs_only_touched_pages():
    import resource

    seen = SeenIds()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert seen.first(0) and seen.first(7) and seen.first(8) and seen.first(ID_LIMIT - 1)
    assert not seen.first(7) and not seen.first(ID_LIMIT - 1) and seen.first(6)
    assert all(seen.first(i) for i in range(10**6, 10**6 + 1000, 3))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 4096  # KiB: a 256 MiB mapping, untouched
    seen.close()


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
    ("stackoverflow.com-Posts.7z", "stackoverflow.com"),
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


def test_a_folder_without_posts_xml_stands_for_its_sites(tmp_path):
    from stackllama_cli.data.stackexchange import expand_inputs

    for name in ("b.stackexchange.com.7z", "a.stackexchange.com.7z", "stackoverflow.com-Posts.7z",
                 "stackoverflow.com-Users.7z", "stackoverflow.com-PostHistory.7z", "c.stackexchange.com-Posts.xml",
                 "Sites.xml", "readme.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "d.stackexchange.com").mkdir()
    (tmp_path / "d.stackexchange.com" / "Posts.xml").write_text("<posts/>")
    (tmp_path / "empty").mkdir()
    other = tmp_path / "x.xml"
    assert [p.name for p in expand_inputs([tmp_path, other])] == [
        "a.stackexchange.com.7z", "b.stackexchange.com.7z", "c.stackexchange.com-Posts.xml", "d.stackexchange.com",
        "stackoverflow.com-Posts.7z", "x.xml"]
    assert expand_inputs([tmp_path / "d.stackexchange.com"]) == [tmp_path / "d.stackexchange.com"]
    with pytest.raises(StackLlamaError, match="without Posts.xml"):
        expand_inputs([tmp_path / "empty"])


def test_text_store_spills_the_oldest_beyond_its_budget():
    from stackllama_cli.data.textstore import TextStore

    store = TextStore(budget=100)
    for key in range(20):
        store.put(key, (f"title {key}", "x" * 30, "2020"))
    assert store.spilled > 0 and store.held <= 100 and store.folder.is_dir()
    folder = store.folder
    assert store.pop(0) == ("title 0", "x" * 30, "2020") and store.pop(19)[0] == "title 19"
    with pytest.raises(KeyError):
        store.pop(0)
    store.close()
    assert not folder.exists()


def test_worker_progress_is_throttled_and_flushed_before_each_event():
    from stackllama_cli.data.progress import QueueReport

    class Queue(list):
        put = list.append

    queue = Queue()
    report = QueueReport(queue, every=1000, seconds=3600)
    report("s", "scan", "start", 5000)
    for _ in range(25):
        report("s", "scan", "read", 100)
    report("s", "scan", "end", 0)
    assert queue == [("s", "scan", "start", 5000), ("s", "scan", "read", 1000), ("s", "scan", "read", 1000),
                     ("s", "scan", "read", 500), ("s", "scan", "end", 0)]
