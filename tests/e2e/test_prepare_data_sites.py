"""prepare-data on many sites: the columnar tables against the previous implementation's pairs, site-parallel
against sequential output, a corrupt archive among good ones, folders of archives, spilled texts."""

import hashlib
import json
from pathlib import Path

from stackllama_cli.data.datasets import SPLITS

# (pairs, sha256 of one "site qid split answer_id_j answer_id_k score_j score_k date" line per row in output order)
# of `prepare-data DUMP -o -` as written by the implementation before the columnar tables (commit 67ee568)
GOLDEN = {
    "beer": (1267, "0a741370398b816c87519a7e464bce2ee45e3cb37472226ca3f15cec488884be"),
    "coffee": (129, "1e704b6d8d79eda024d022d3405e1e56e8fd871257911d5a4a2607affac5afa6"),
    "sample": (89, "023bfa7af9512919be0d087b3f5e4d72a78cb880d88e93e5d7c42695735d4576"),
}


def structure_hash(rows: list[dict]) -> str:
    text = "\n".join(f"{r['site']} {r['qid']} {r['split']} {r['answer_id_j']} {r['answer_id_k']} {r['score_j']} "
                     f"{r['score_k']} {r['date']}" for r in rows)
    return hashlib.sha256(text.encode()).hexdigest()


def stdout_rows(run_cli, *args) -> list[dict]:
    result = run_cli("prepare-data", *args, "--output", "-", "--quiet")
    assert result.exit_code == 0, result
    assert result.stderr == ""  # --quiet: no bar, no table
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_same_pairs_as_before_the_columnar_tables(beer_posts, coffee_posts, run_cli):
    from stackllama_cli.data.prepare import SAMPLE_DUMP

    for name, path in (("beer", beer_posts), ("coffee", coffee_posts), ("sample", SAMPLE_DUMP)):
        rows = stdout_rows(run_cli, path, "--workers", "1")
        assert (len(rows), structure_hash(rows)) == GOLDEN[name], name


def _dir_output(run_cli, out: Path, *args) -> tuple[dict, dict]:
    import pyarrow.parquet as pq

    result = run_cli("prepare-data", *args, "--output", out, "--json")
    assert result.exit_code == 0, result
    stats = json.loads(result.stdout)
    tables = {s: pq.read_table(out / "data" / f"{s}-00000-of-00001.parquet") for s in SPLITS}
    return stats, tables


def test_site_parallel_output_equals_sequential(beer_posts, coffee_posts, tmp_path, run_cli):
    from stackllama_cli.data.prepare import SAMPLE_DUMP

    inputs = (beer_posts, SAMPLE_DUMP, coffee_posts)
    one_stats, one = _dir_output(run_cli, tmp_path / "one", *inputs, "--workers", "1")
    two_stats, two = _dir_output(run_cli, tmp_path / "two", *inputs, "--workers", "2")
    for split in SPLITS:
        assert one[split].equals(two[split]), split
    for stats in (one_stats, two_stats):
        stats.pop("seconds"), stats.pop("rows_per_second")
    assert one_stats == two_stats
    assert one_stats["pairs"] == 1267 + 89 + 129 and list(one_stats["per_site"]) == [
        "beer.stackexchange.com", "sample.stackexchange.com", "coffee.stackexchange.com"]
    assert one_stats["per_site"]["coffee.stackexchange.com"]["pairs"] == 129
    assert one_stats["per_site"]["beer.stackexchange.com"]["dropped"]["other_post_types"] == 119
    # in input order, whatever the order sites finish in: beer's rows, then the sample's, then coffee's
    sites = one["finetune"]["site"].to_pylist()
    assert sites == sorted(sites, key=["beer.stackexchange.com", "sample.stackexchange.com",
                                       "coffee.stackexchange.com"].index)
    assert stdout_rows(run_cli, *inputs, "--workers", "1") == stdout_rows(run_cli, *inputs, "--workers", "2")


def seven_zip(path: Path, posts: Path | None = None, **members: bytes) -> Path:
    import py7zr

    with py7zr.SevenZipFile(path, "w") as z:
        if posts is not None:
            z.write(posts, "Posts.xml")
        for name, data in members.items():
            z.writestr(data, name)
    return path


def test_a_corrupt_archive_fails_the_run_unless_keep_going(coffee_posts, tmp_path, run_cli):
    from stackllama_cli.data.prepare import SAMPLE_DUMP
    from tests.conftest import run_cli_subprocess

    good = seven_zip(tmp_path / "sample.stackexchange.com.7z", SAMPLE_DUMP)
    data = seven_zip(tmp_path / "x.7z", coffee_posts).read_bytes()
    corrupt = tmp_path / "broken.stackexchange.com.7z"
    corrupt.write_bytes(data[: len(data) // 2])  # a download cut in the middle
    out = tmp_path / "out"
    proc = run_cli_subprocess("prepare-data", good, corrupt, coffee_posts, "-o", out, "--workers", "1")
    assert proc.returncode == 1 and "broken.stackexchange.com.7z" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
    proc = run_cli_subprocess("prepare-data", good, corrupt, coffee_posts, "-o", "-", "--workers", "2")
    assert proc.returncode == 1 and proc.stdout == "" and "broken.stackexchange.com.7z" in proc.stderr
    result = run_cli("prepare-data", good, corrupt, coffee_posts, "-o", tmp_path / "kept", "--keep-going",
                     "--workers", "2", "--json")
    assert result.exit_code == 0, result
    stats = json.loads(result.stdout)
    assert stats["sites"] == ["sample.stackexchange.com", "coffee.stackexchange.com"]
    assert stats["pairs"] == 89 + 129 and list(stats["failed"]) == [str(corrupt)]
    assert "cannot read archive" in stats["failed"][str(corrupt)]
    assert "left out" in result.stderr and str(corrupt) in " ".join(result.stderr.split())
    assert json.loads((tmp_path / "kept" / "stats.json").read_text())["failed"] == stats["failed"]
    also_corrupt = tmp_path / "broken2.stackexchange.com.7z"
    also_corrupt.write_bytes(corrupt.read_bytes())
    only_bad = run_cli("prepare-data", corrupt, also_corrupt, "-o", tmp_path / "none", "--keep-going")
    assert only_bad.exit_code == 1 and "every input failed" in only_bad.stderr
    assert not (tmp_path / "none").exists()


def test_a_folder_of_site_archives(coffee_posts, tmp_path, run_cli):
    from stackllama_cli.data.prepare import SAMPLE_DUMP

    dump = tmp_path / "stackexchange"
    dump.mkdir()
    seven_zip(dump / "sample.stackexchange.com.7z", SAMPLE_DUMP)
    seven_zip(dump / "coffee.stackexchange.com-Posts.7z", coffee_posts)  # the biggest sites come split by table
    seven_zip(dump / "coffee.stackexchange.com-Users.7z", None, **{"Users.xml": b"<users/>"})
    (dump / "Sites.xml").write_text("<sites/>")
    rows = stdout_rows(run_cli, dump)
    assert [len([r for r in rows if r["site"] == site]) for site in ("coffee.stackexchange.com",
                                                                    "sample.stackexchange.com")] == [129, 89]
    assert rows[0]["site"] == "coffee.stackexchange.com"  # name order


def test_texts_spilled_to_disk_give_the_same_output(beer_posts, run_cli, monkeypatch):
    from stackllama_cli.data import textstore

    spilled = []
    original = textstore.TextStore.close

    def close(self):
        spilled.append(self.spilled)
        original(self)

    monkeypatch.setattr(textstore, "DEFAULT_BUDGET", 20_000)  # characters: a few questions' texts
    monkeypatch.setattr(textstore.TextStore, "close", close)
    rows = stdout_rows(run_cli, beer_posts, "--workers", "1")
    assert spilled and spilled[0] > 100
    assert (len(rows), structure_hash(rows)) == GOLDEN["beer"]
