"""The prepare-data stage: dump(s) -> scored answers -> preference pairs -> four splits by question.

Two streaming passes per site keep memory bounded by what pairing needs:
1. scan ids, scores, parents and accepted answers (no bodies), build pairs;
2. convert to Markdown only the bodies of posts that ended up in a pair.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from stackllama_cli.config import require, save_config
from stackllama_cli.console import console, info, progress
from stackllama_cli.data.datasets import SPLITS, data_filename
from stackllama_cli.data.markdown import html_to_markdown
from stackllama_cli.data.pairs import Pair, ScoredAnswer, answer_score, assign_split, select_pairs
from stackllama_cli.data.stackexchange import ANSWER, QUESTION, DumpSource, iter_rows, open_sources, to_int
from stackllama_cli.errors import StackLlamaError
from stackllama_cli.files import atomic_dir, write_json

DEFAULT_SPLITS = "finetune=0.35,reward=0.35,rl=0.15,evaluation=0.15"
SAMPLE_DUMP = Path(__file__).resolve().parent.parent / "demo_data" / "sample.stackexchange.com-Posts.xml"


def parse_split_fractions(text: str) -> dict[str, float]:
    """'finetune=0.4,reward=0.3,rl=0.2,evaluation=0.1' -> dict in canonical split order (sums to 1)."""
    fractions: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in SPLITS:
            raise StackLlamaError(f"--splits takes name=fraction pairs with names from {', '.join(SPLITS)}; "
                                  f"got {part!r}")
        try:
            fractions[name] = float(value)
        except ValueError:
            raise StackLlamaError(f"--splits: {value!r} is not a number") from None
    if any(v < 0 for v in fractions.values()) or abs(sum(fractions.values()) - 1.0) > 1e-6:
        raise StackLlamaError(f"--splits fractions must be non-negative and sum to 1 (got {sum(fractions.values()):g})")
    return {name: fractions.get(name, 0.0) for name in SPLITS}


@dataclasses.dataclass
class PrepareConfig:
    inputs: list[str] = dataclasses.field(default_factory=list)  # empty: the bundled sample dump
    output: str = "runs/demo/data"  # '-' = JSONL on stdout
    format: str = "parquet"
    max_pairs: int = 10
    seed: int = 0
    splits: str = DEFAULT_SPLITS
    workers: int = 0  # processes converting HTML to Markdown; 0 = one per CPU core (at most 8)
    overwrite: bool = False

    def __post_init__(self) -> None:
        require(self.format in ("parquet", "jsonl"), "--format must be parquet or jsonl")
        require(self.workers >= 0, "--workers must be non-negative")
        require(self.max_pairs >= 1, "--max-pairs must be at least 1")
        parse_split_fractions(self.splits)


@dataclasses.dataclass
class QuestionInfo:
    accepted: int | None
    date: str
    answers: list[tuple[int, int]] = dataclasses.field(default_factory=list)  # (answer id, net score)


def scan(source: DumpSource, stats: Counter, on_read) -> dict[int, QuestionInfo]:
    """Pass 1: questions with their non-empty answers' ids and net scores; counts what is skipped."""
    questions: dict[int, QuestionInfo] = {}
    answers: list[tuple[int, int, int]] = []  # (parent, id, score)
    for row in iter_rows(source.xml, on_read):
        stats["rows"] += 1
        kind = row.get("PostTypeId")
        post_id = to_int(row.get("Id"))
        if post_id is None:
            stats["dropped.rows_without_id"] += 1
        elif kind == QUESTION:
            stats["questions"] += 1
            questions[post_id] = QuestionInfo(to_int(row.get("AcceptedAnswerId")), row.get("CreationDate", "")[:10])
        elif kind == ANSWER:
            stats["answers"] += 1
            if not (row.get("Body") or "").strip():
                stats["dropped.empty_answer_bodies"] += 1
                continue
            answers.append((to_int(row.get("ParentId"), -1), post_id, to_int(row.get("Score"), 0)))
        else:
            stats["dropped.other_post_types"] += 1
    for parent, post_id, score in answers:  # answers may precede their question in the file
        if parent in questions:
            questions[parent].answers.append((post_id, score))
        else:
            stats["dropped.orphan_answers"] += 1
    return questions


def build_pairs(questions: dict[int, QuestionInfo], cfg: PrepareConfig, site: str,
                stats: Counter) -> dict[int, list[Pair]]:
    pairs_by_q: dict[int, list[Pair]] = {}
    for qid, q in questions.items():
        if not q.answers:
            stats["dropped.questions_without_answers"] += 1
            continue
        scored = [ScoredAnswer(aid, answer_score(score, aid == q.accepted)) for aid, score in q.answers]
        pairs, capped = select_pairs(scored, cfg.max_pairs, cfg.seed, f"{site}:{qid}")
        n = len(scored)
        stats["dropped.tied_pairs"] += n * (n - 1) // 2 - len(pairs) - capped
        stats["dropped.pairs_over_max_pairs"] += capped
        if pairs:
            pairs_by_q[qid] = pairs
        else:
            stats["dropped.questions_without_pairs"] += 1
    return pairs_by_q


def worker_count(requested: int) -> int:
    return requested or min(8, os.cpu_count() or 1)


def convert_needed(source: DumpSource, needed: set[int], stats: Counter, on_read,
                   workers: int = 1) -> dict[int, tuple[str, str]]:
    """Pass 2: Markdown bodies (and titles) of the posts used in pairs only.

    Conversion (markdownify) dominates the run time; with several workers, bodies are
    converted in parallel in batches while the XML streams on.
    """
    texts: dict[int, tuple[str, str]] = {}
    batch: list[tuple[int, str, str]] = []
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    pending = []

    def flush() -> None:
        ids, titles, bodies = zip(*batch)
        if pool is None:
            converted = [html_to_markdown(b) for b in bodies]
            texts.update(zip(ids, zip(titles, converted)))
        else:
            pending.append((ids, titles, pool.submit(_convert_many, bodies)))
        batch.clear()

    try:
        for row in iter_rows(source.xml, on_read):
            post_id = to_int(row.get("Id"))
            if post_id in needed:
                batch.append((post_id, row.get("Title", ""), row.get("Body") or ""))
                stats["bodies_converted"] += 1
                if len(batch) == 256:
                    flush()
        if batch:
            flush()
        for ids, titles, future in pending:
            texts.update(zip(ids, zip(titles, future.result())))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return texts


def _convert_many(bodies: tuple[str, ...]) -> list[str]:
    return [html_to_markdown(b) for b in bodies]


def question_text(title: str, body: str) -> str:
    title, body = title.strip(), body.strip()
    return f"{title}\n\n{body}" if title and body else (title or body)


def site_rows(source: DumpSource, cfg: PrepareConfig, fractions: dict[str, float], stats: Counter,
              bar) -> dict[str, list[dict]]:
    size = source.xml.stat().st_size
    task = bar.add_task(f"scan {source.site}", total=size, extra="")
    questions = scan(source, stats, lambda n: bar.advance(task, n))
    pairs_by_q = build_pairs(questions, cfg, source.site, stats)
    needed = set(pairs_by_q) | {a.answer_id for ps in pairs_by_q.values() for p in ps for a in (p.chosen, p.rejected)}
    task = bar.add_task(f"convert {source.site}", total=size, extra=f"{len(needed)} bodies")
    texts = convert_needed(source, needed, stats, lambda n: bar.advance(task, n), worker_count(cfg.workers))

    rows: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for qid in sorted(pairs_by_q):
        title, body = texts[qid]
        question = question_text(title, body)
        split = assign_split(f"{source.site}:{qid}", fractions, cfg.seed)
        kept = 0
        for pair in pairs_by_q[qid]:
            j, k = pair.chosen, pair.rejected
            response_j, response_k = texts[j.answer_id][1], texts[k.answer_id][1]
            if not (question and response_j and response_k):
                stats["dropped.pairs_empty_after_conversion"] += 1
                continue
            kept += 1
            rows[split].append({
                "qid": qid, "question": question, "date": questions[qid].date,
                "metadata": [f"https://{source.site}/questions/{qid}", f"https://{source.site}/a/{j.answer_id}",
                             f"https://{source.site}/a/{k.answer_id}"],
                "response_j": response_j, "response_k": response_k,
                "answer_id_j": j.answer_id, "answer_id_k": k.answer_id, "score_j": j.score, "score_k": k.score,
                "site": source.site,
            })
        if kept:
            stats[f"split.{split}.questions"] += 1
            stats[f"split.{split}.pairs"] += kept
    return rows


def collect_stats(stats: Counter, cfg: PrepareConfig, sources: list[DumpSource], seconds: float) -> dict:
    out = {"inputs": [str(s.origin) for s in sources], "sites": [s.site for s in sources],
           "rows": stats["rows"], "questions": stats["questions"], "answers": stats["answers"],
           "pairs": sum(stats[f"split.{s}.pairs"] for s in SPLITS),
           "questions_with_pairs": sum(stats[f"split.{s}.questions"] for s in SPLITS),
           "bodies_converted": stats["bodies_converted"],
           "splits": {s: {"questions": stats[f"split.{s}.questions"], "pairs": stats[f"split.{s}.pairs"]}
                      for s in SPLITS},
           "dropped": {k.split(".", 1)[1]: v for k, v in sorted(stats.items()) if k.startswith("dropped.")},
           "seconds": round(seconds, 2)}
    out["rows_per_second"] = round(out["rows"] / seconds, 1) if seconds > 0 else None
    return out


def write_split(path: Path, rows: list[dict], fmt: str) -> None:
    if fmt == "jsonl":
        with open(path, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("qid", pa.int64()), ("question", pa.string()), ("date", pa.string()),
                        ("metadata", pa.list_(pa.string())), ("response_j", pa.string()),
                        ("response_k", pa.string()), ("answer_id_j", pa.int64()), ("answer_id_k", pa.int64()),
                        ("score_j", pa.int64()), ("score_k", pa.int64()), ("site", pa.string())])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def run(cfg: PrepareConfig) -> dict:
    """Run the stage; returns the stats (also written to OUTPUT/stats.json)."""
    fractions = parse_split_fractions(cfg.splits)
    inputs = [Path(p) for p in cfg.inputs] or [SAMPLE_DUMP]
    to_stdout = cfg.output == "-"
    start = time.time()
    stats: Counter = Counter()
    rows: dict[str, list[dict]] = {name: [] for name in SPLITS}
    with open_sources(inputs) as sources:
        sites = [s.site for s in sources]
        if len(set(sites)) != len(sites):
            raise StackLlamaError(f"two inputs are the same site ({', '.join(sites)}): question ids would collide")
        with progress(transient=True) as bar:
            for source in sources:
                for split, site_split_rows in site_rows(source, cfg, fractions, stats, bar).items():
                    rows[split].extend(site_split_rows)
        summary = collect_stats(stats, cfg, sources, time.time() - start)
    if summary["pairs"] == 0:
        raise StackLlamaError(f"no preference pairs in {', '.join(map(str, inputs))}: no question has two answers "
                              "with different scores")
    if to_stdout:
        out = sys.stdout
        for split in SPLITS:
            for row in rows[split]:
                out.write(json.dumps({"split": split, **row}, ensure_ascii=False) + "\n")
        out.flush()
    else:
        check_empty_splits(summary, fractions)
        with atomic_dir(cfg.output, overwrite=cfg.overwrite) as tmp:
            (tmp / "data").mkdir()
            for split in SPLITS:
                write_split(tmp / "data" / data_filename(split, cfg.format), rows[split], cfg.format)
            write_json(tmp / "stats.json", summary)
            save_config(cfg, tmp)
    return summary


def check_empty_splits(summary: dict, fractions: dict[str, float]) -> None:
    empty = [s for s in SPLITS if fractions[s] > 0 and summary["splits"][s]["pairs"] == 0]
    if empty:
        info(f"[yellow]warning:[/] split(s) {', '.join(empty)} got no pairs; the dump may be too small "
             "for these --splits fractions")


def print_summary(summary: dict, output: str) -> None:
    from rich.table import Table

    table = Table(title=f"prepare-data: {', '.join(summary['sites'])}")
    table.add_column("split")
    table.add_column("questions", justify="right")
    table.add_column("pairs", justify="right")
    for split, counts in summary["splits"].items():
        table.add_row(split, str(counts["questions"]), str(counts["pairs"]))
    table.add_row("[bold]total", f"[bold]{summary['questions_with_pairs']}", f"[bold]{summary['pairs']}")
    console.print(table)
    dropped = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in summary["dropped"].items() if v)
    console.print(f"{summary['rows']} rows ({summary['questions']} questions, {summary['answers']} answers) "
                  f"in {summary['seconds']} s; {summary['bodies_converted']} bodies converted to Markdown.")
    if dropped:
        console.print(f"[dim]Skipped: {dropped}.[/]")
    if output != "-":
        console.print(f"Wrote [bold]{output}[/] (load with datasets.load_dataset('parquet', data_dir=...)).")
