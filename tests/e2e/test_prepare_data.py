"""prepare-data end to end: real dumps, exact counts computed independently, and bad input."""

import json
import math
import xml.etree.ElementTree as ET
from itertools import combinations
from pathlib import Path

import pytest

from stackllama_cli.data.datasets import SPLITS


def independent_pair_count(xml_path: Path, max_pairs: int = 10) -> dict:
    """Recount from the raw XML with a different parser (whole-file ElementTree)."""
    rows = [r.attrib for r in ET.parse(xml_path).getroot()]
    questions = {r["Id"]: r for r in rows if r["PostTypeId"] == "1"}
    answers = [r for r in rows if r["PostTypeId"] == "2" and r.get("Body", "").strip()]
    by_q: dict[str, list] = {}
    for a in answers:
        if a["ParentId"] in questions:
            score = int(a["Score"])
            s = -1 if score < 0 else round(math.log2(1 + score)) + (a["Id"] == questions[a["ParentId"]].get(
                "AcceptedAnswerId"))
            by_q.setdefault(a["ParentId"], []).append(s)
    pairs = sum(min(max_pairs, sum(1 for x, y in combinations(s, 2) if x != y)) for s in by_q.values())
    return {"rows": len(rows), "questions": len(questions),
            "answers": sum(1 for r in rows if r["PostTypeId"] == "2"), "pairs": pairs,
            "questions_with_pairs": sum(1 for s in by_q.values() if len(set(s)) > 1)}


def test_beer_dump_exact_counts(beer_posts, tmp_path, run_cli):
    import datasets

    out = tmp_path / "beer"
    result = run_cli("prepare-data", beer_posts, "--output", out, "--json")
    assert result.exit_code == 0, result
    stats = json.loads(result.stdout)
    expected = independent_pair_count(beer_posts)
    assert expected["pairs"] == 1267  # the figure in the dump's README
    for key, value in expected.items():
        assert stats[key] == value, key
    assert stats["dropped"]["other_post_types"] == 119
    ds = datasets.load_dataset("parquet", data_dir=str(out))
    assert sorted(ds) == sorted(SPLITS)
    assert sum(len(ds[s]) for s in SPLITS) == 1267
    qids = {s: set(ds[s]["qid"]) for s in SPLITS}
    for a, b in [(a, b) for a in SPLITS for b in SPLITS if a < b]:
        assert not qids[a] & qids[b], f"question in both {a} and {b}"
    for split in SPLITS:
        for row in ds[split]:
            assert row["score_j"] > row["score_k"]
            assert row["response_j"] and row["response_k"] and row["question"]
    # a known pair from the real dump: on question 3, answer 13 is preferred to answer 87
    rows = [r for s in SPLITS for r in ds[s] if r["qid"] == 3 and r["answer_id_j"] == 13 and r["answer_id_k"] == 87]
    assert rows and rows[0]["question"].startswith("How is reduced alcoholic beer made?")


def test_two_sites_jsonl_to_stdout(beer_posts, coffee_posts, tmp_path):
    from tests.conftest import run_cli_subprocess

    proc = run_cli_subprocess("prepare-data", beer_posts, coffee_posts, "--output", "-")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == 1267 + independent_pair_count(coffee_posts)["pairs"]
    assert {line["site"] for line in lines} == {"beer.stackexchange.com", "coffee.stackexchange.com"}
    assert {line["split"] for line in lines} == set(SPLITS)


def test_bundled_sample_and_determinism(tmp_path, run_cli):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli("prepare-data", "--output", a).exit_code == 0
    assert run_cli("prepare-data", "--output", b, "--format", "jsonl").exit_code == 0
    stats = json.loads((a / "stats.json").read_text())
    assert stats["pairs"] == 89 and stats["questions_with_pairs"] == 28
    assert all(stats["splits"][s]["pairs"] > 0 for s in SPLITS)
    import datasets

    pa = datasets.load_dataset("parquet", data_dir=str(a))
    js = datasets.load_dataset("json", data_dir=str(b))
    for s in SPLITS:
        assert pa[s]["response_j"] == js[s]["response_j"]
    assert (a / "stackllama_config.json").is_file()
    import os
    import stat

    umask = os.umask(0)
    os.umask(umask)
    for path in (a, a / "stats.json", a / "stackllama_config.json"):  # not private temp-file modes
        expected = (0o777 if path.is_dir() else 0o666) & ~umask
        assert stat.S_IMODE(path.stat().st_mode) == expected, path


def test_seven_zip_archive(beer_posts, tmp_path, run_cli):
    import py7zr

    archive = tmp_path / "beer.stackexchange.com.7z"
    with py7zr.SevenZipFile(archive, "w") as z:
        z.write(beer_posts, "Posts.xml")
        z.writestr(b"<users/>", "Users.xml")
    result = run_cli("prepare-data", archive, "--output", tmp_path / "out", "--json")
    assert result.exit_code == 0, result
    assert json.loads(result.stdout)["pairs"] == 1267


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("name, content, message", [
    ("missing", None, "does not exist"),
    ("users.xml", '<?xml version="1.0"?><users><row Id="1"/></users>', "not a StackExchange Posts.xml"),
    ("trunc.xml", '<posts><row Id="1" PostTypeId="1" Body="x" />\n<row Id="2" PostTy', "not well-formed XML"),
    ("notxml.xml", "hello world", "not well-formed XML"),
    ("nopairs.xml", '<posts><row Id="1" PostTypeId="1" Body="q" Title="t"/>'
                    '<row Id="2" PostTypeId="2" ParentId="1" Score="1" Body="a"/></posts>', "no preference pairs"),
])
def test_bad_input_is_one_clear_line_and_no_output(tmp_path, name, content, message):
    from tests.conftest import run_cli_subprocess

    src = tmp_path / name if content is None else write(tmp_path / name, content)
    out = tmp_path / "out"
    proc = run_cli_subprocess("prepare-data", src, "--output", out)
    assert proc.returncode == 1
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_archive_without_posts_and_folder_without_posts(tmp_path, run_cli):
    import py7zr

    archive = tmp_path / "x.7z"
    with py7zr.SevenZipFile(archive, "w") as z:
        z.writestr(b"<users/>", "Users.xml")
    result = run_cli("prepare-data", archive, "--output", tmp_path / "o")
    assert result.exit_code == 1 and "holds no Posts.xml" in result.stderr
    result = run_cli("prepare-data", tmp_path, "--output", tmp_path / "o")
    assert result.exit_code == 1 and "without Posts.xml" in result.stderr


def test_existing_output_needs_overwrite(tmp_path, run_cli):
    out = tmp_path / "out"
    assert run_cli("prepare-data", "--output", out).exit_code == 0
    result = run_cli("prepare-data", "--output", out)
    assert result.exit_code == 1 and "--overwrite" in result.stderr
    assert run_cli("prepare-data", "--output", out, "--overwrite").exit_code == 0


def test_parallel_conversion_gives_identical_output(beer_posts, tmp_path, run_cli):
    import pyarrow.parquet as pq

    for workers in ("1", "2"):  # --num-proc is the name for --workers
        result = run_cli("prepare-data", beer_posts, "--output", tmp_path / workers, "--num-proc", workers)
        assert result.exit_code == 0, result
    for split in SPLITS:
        name = f"data/{split}-00000-of-00001.parquet"
        assert pq.read_table(tmp_path / "1" / name).equals(pq.read_table(tmp_path / "2" / name)), split


def test_empty_split_gets_no_file_and_the_rest_still_loads(tmp_path, run_cli):
    import datasets

    out = tmp_path / "out"
    result = run_cli("prepare-data", "--output", out, "--splits", "finetune=0.5,reward=0.5", "--json")
    assert result.exit_code == 0, result
    stats = json.loads(result.stdout)
    assert stats["splits"]["rl"]["pairs"] == 0 and stats["splits"]["evaluation"]["pairs"] == 0
    assert sorted(p.name for p in (out / "data").iterdir()) == ["finetune-00000-of-00001.parquet",
                                                               "reward-00000-of-00001.parquet"]
    ds = datasets.load_dataset("parquet", data_dir=str(out))
    assert sorted(ds) == ["finetune", "reward"] and len(ds["finetune"]) + len(ds["reward"]) == 89


def test_site_folders_and_bare_posts_xml_name_their_sites(tmp_path):
    from stackllama_cli.data.prepare import SAMPLE_DUMP
    from tests.conftest import run_cli_subprocess

    for site in ("a.stackexchange.com", "b.stackexchange.com"):
        (tmp_path / site).mkdir()
        (tmp_path / site / "Posts.xml").write_bytes(SAMPLE_DUMP.read_bytes())
    proc = run_cli_subprocess("prepare-data", tmp_path / "a.stackexchange.com",
                              tmp_path / "b.stackexchange.com" / "Posts.xml", "--output", "-")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == 2 * 89
    assert {line["site"] for line in lines} == {"a.stackexchange.com", "b.stackexchange.com"}
    same = run_cli_subprocess("prepare-data", SAMPLE_DUMP, SAMPLE_DUMP, "--output", "-")
    assert same.returncode == 1 and "same site" in same.stderr and not same.stdout


def test_broken_later_input_fails_before_any_output(tmp_path):
    from stackllama_cli.data.prepare import SAMPLE_DUMP
    from tests.conftest import run_cli_subprocess

    broken = write(tmp_path / "broken.stackexchange.com-Posts.xml", '<posts><row Id="1" PostTypeId="1"')
    proc = run_cli_subprocess("prepare-data", SAMPLE_DUMP, broken, "--output", "-")
    assert proc.returncode == 1 and "not well-formed" in proc.stderr
    assert proc.stdout == ""  # pass 1 reads every input before the first row goes out
    proc = run_cli_subprocess("prepare-data", SAMPLE_DUMP, broken, "--output", tmp_path / "out")
    assert proc.returncode == 1 and not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_a_closed_stdout_pipe_ends_the_run_quietly(beer_posts):
    """`prepare-data ... -o - | head -1`: like a Unix tool fed to head, no error and nothing on stderr."""
    import subprocess
    import sys

    from tests.conftest import REPO

    proc = subprocess.Popen([sys.executable, "-m", "stackllama_cli", "prepare-data", str(beer_posts), "-o", "-"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    first = json.loads(proc.stdout.readline())
    proc.stdout.close()  # what head does after its line; the rest of the output (MBs) no longer fits the pipe
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=300) in (0, 141)
    # no error and no traceback; progress lines may be there (stderr is a pipe: plain lines, see core/console.py)
    assert "error" not in stderr.lower() and "Traceback" not in stderr, stderr
    assert first["site"] == "beer.stackexchange.com"


@pytest.mark.parametrize("splits", ["finetune=nan,reward=1", "finetune=0.5,reward=0.5,finetune=0.5"])
def test_bad_splits_are_usage_errors(tmp_path, run_cli, splits):
    result = run_cli("prepare-data", "--output", tmp_path / "out", "--splits", splits)
    assert result.exit_code == 2 and "--splits" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_duplicate_ids_on_stdout_are_dropped_not_a_crash(tmp_path):
    from tests.conftest import run_cli_subprocess

    dump = write(tmp_path / "dup.stackexchange.com-Posts.xml", """<posts>
  <row Id="1" PostTypeId="1" Title="T" Body="q" CreationDate="2020-01-01T00:00:00.000" />
  <row Id="11" PostTypeId="2" ParentId="1" Score="3" Body="good" />
  <row Id="12" PostTypeId="2" ParentId="1" Score="0" Body="meh" />
  <row Id="1" PostTypeId="2" ParentId="1" Score="9" Body="same id as the question" />
  <row Id="11" PostTypeId="2" ParentId="1" Score="3" Body="good" />
</posts>
""")
    proc = run_cli_subprocess("prepare-data", dump, "--output", "-")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(r["qid"], r["answer_id_j"], r["answer_id_k"]) for r in lines] == [(1, 11, 12)]
    result = run_cli_subprocess("prepare-data", "--help")
    assert "duplicate" in " ".join(result.stdout.split()).lower()
