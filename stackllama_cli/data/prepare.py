"""The prepare-data stage: dump(s) -> scored answers -> preference pairs -> four splits by question.

Two streaming passes per site keep memory bounded by what pairing needs:
1. scan ids, scores, parents and accepted answers (no bodies), build pairs;
2. convert to Markdown only the bodies of posts that ended up in a pair, and write a
   question's rows as soon as its last body is converted.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import math
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterator

from stackllama_cli.core.config import require, save_config
from stackllama_cli.core.console import console, info, progress
from stackllama_cli.core.errors import StackLlamaError, UsageError
from stackllama_cli.core.files import atomic_dir, check_output_dir, write_json
from stackllama_cli.data.datasets import SPLITS
from stackllama_cli.data.markdown import html_to_markdown
from stackllama_cli.data.pairs import Pair, ScoredAnswer, answer_score, assign_split, select_pairs
from stackllama_cli.data.stackexchange import ANSWER, QUESTION, DumpSource, iter_rows, open_sources, parse_int
from stackllama_cli.data.writers import SplitWriters

DEFAULT_SPLITS = "finetune=0.35,reward=0.35,rl=0.15,evaluation=0.15"
SAMPLE_DUMP = Path(__file__).resolve().parent.parent / "demo_data" / "sample.stackexchange.com-Posts.xml"


def parse_split_fractions(text: str) -> dict[str, float]:
    """'finetune=0.4,reward=0.3,rl=0.2,evaluation=0.1' -> dict in canonical split order (sums to 1).

    Usage errors (exit 2): unknown or repeated names, values that are not finite numbers >= 0, a sum other than 1.
    """
    fractions: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in SPLITS:
            raise UsageError(f"--splits takes name=fraction pairs with names from {', '.join(SPLITS)}; "
                             f"got {part!r}")
        if name in fractions:
            raise UsageError(f"--splits names {name} twice")
        try:
            fractions[name] = float(value)
        except ValueError:
            raise UsageError(f"--splits: {value!r} is not a number") from None
        if not math.isfinite(fractions[name]) or fractions[name] < 0:
            raise UsageError(f"--splits: {name}={value.strip()} is not a fraction between 0 and 1")
    if abs(sum(fractions.values()) - 1.0) > 1e-6:
        raise UsageError(f"--splits fractions must sum to 1 (got {sum(fractions.values()):g})")
    return {name: fractions.get(name, 0.0) for name in SPLITS}


@dataclasses.dataclass
class PrepareConfig:
    inputs: list[str] = dataclasses.field(default_factory=list)  # empty: the bundled sample dump
    output: str = "runs/demo/data"  # '-' = JSONL on stdout
    format: str = "parquet"
    max_pairs: int = 10
    seed: int = 0
    splits: str = DEFAULT_SPLITS
    workers: int = 0  # processes converting HTML to Markdown; 0 = one per CPU core (at most 8) for big dumps
    overwrite: bool = False

    def __post_init__(self) -> None:
        require(self.format in ("parquet", "jsonl"), "--format must be parquet or jsonl")
        require(self.workers >= 0, "--workers must be non-negative")
        require(self.max_pairs >= 1, "--max-pairs must be at least 1")
        parse_split_fractions(self.splits)


@dataclasses.dataclass(slots=True)
class QuestionInfo:
    accepted: int | None
    date: str
    answers: list[tuple[int, int]] = dataclasses.field(default_factory=list)  # (answer id, net score)


@dataclasses.dataclass
class SitePlan:
    """What pass 1 decided for one site: the pairs, and which converted bodies each question waits for."""

    source: DumpSource
    dates: dict[int, str]  # qid -> creation date, for questions with pairs
    pairs: dict[int, list[Pair]]  # qid -> its selected pairs
    owner: dict[int, int]  # post id (question or answer) -> the qid whose rows need its body
    waiting: dict[int, int]  # qid -> bodies still to convert before its rows can be written


def scan(source: DumpSource, stats: Counter, on_read) -> dict[int, QuestionInfo]:
    """Pass 1: questions with their non-empty answers' ids and net scores; counts what is skipped."""
    questions: dict[int, QuestionInfo] = {}
    answers: list[tuple[int, int, int]] = []  # (parent, id, score)
    seen: set[int] = set()
    for row in iter_rows(source.xml, on_read):
        stats["rows"] += 1
        kind = row.get("PostTypeId")
        post_id = parse_int(row.get("Id"))
        if post_id is None:
            stats["dropped.rows_without_id"] += 1
            continue
        if post_id in seen:  # a later row with an id already seen: the first one wins
            stats["dropped.duplicate_ids"] += 1
            continue
        seen.add(post_id)
        if kind == QUESTION:
            stats["questions"] += 1
            accepted = row.get("AcceptedAnswerId")
            if accepted is not None and parse_int(accepted) is None:
                stats["dropped.questions_with_invalid_accepted_answer_id"] += 1
                continue
            questions[post_id] = QuestionInfo(parse_int(accepted), row.get("CreationDate", "")[:10])
        elif kind == ANSWER:
            stats["answers"] += 1
            score = parse_int(row.get("Score"))
            if score is None:  # no votes to score by: never guessed as 0
                stats["dropped.answers_with_invalid_score"] += 1
            elif not (row.get("Body") or "").strip():
                stats["dropped.empty_answer_bodies"] += 1
            else:
                parent = parse_int(row.get("ParentId"))
                answers.append((-1 if parent is None else parent, post_id, score))
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


def plan_site(source: DumpSource, cfg: PrepareConfig, stats: Counter, bar) -> SitePlan:
    """Pass 1 for one site: scan, score, pair; only ids, scores and dates are kept."""
    task = bar.add_task(f"scan {source.site}", total=_mib(source.xml.stat().st_size), extra="MiB")
    questions = scan(source, stats, lambda n: bar.advance(task, _mib(n)))
    pairs = build_pairs(questions, cfg, source.site, stats)
    owner: dict[int, int] = {}
    for qid, question_pairs in pairs.items():
        owner[qid] = qid
        for pair in question_pairs:
            owner[pair.chosen.answer_id] = owner[pair.rejected.answer_id] = qid
    waiting = Counter(owner.values())
    return SitePlan(source, {qid: questions[qid].date for qid in pairs}, pairs, owner, dict(waiting))


def _mib(n: int) -> float:
    return n / 2**20


def worker_count(requested: int, bodies: int) -> int:
    """Processes for the conversion: as asked, else one per core (at most 8) for jobs big enough
    to repay starting a pool (~2000 bodies is about half a second of conversion)."""
    if requested:
        return requested
    return 1 if bodies < 2000 else min(8, os.cpu_count() or 1)


def converted_posts(source: DumpSource, needed: dict[int, int], stats: Counter, on_read,
                    workers: int = 1) -> Iterator[tuple[int, str, str]]:
    """Pass 2: (post id, title, Markdown body) of the posts in `needed`, in file order.

    Conversion (markdownify) dominates the run time; with several workers, batches of bodies
    are converted in parallel while the XML streams on. Results are taken in submission
    order, so the output does not depend on the number of workers, and at most a few
    batches per worker are in flight, so memory does not grow with the dump.
    """
    batch: list[tuple[int, str, str]] = []
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    in_flight: collections.deque = collections.deque()

    def results(limit: int) -> Iterator[tuple[int, str, str]]:
        while len(in_flight) > limit:
            ids, titles, future = in_flight.popleft()
            yield from zip(ids, titles, future.result())

    done: set[int] = set()  # a needed id's first row is the one pass 1 kept; later rows are duplicates
    try:
        for row in iter_rows(source.xml, on_read):
            post_id = parse_int(row.get("Id"))
            if post_id not in needed or post_id in done:
                continue
            done.add(post_id)
            stats["bodies_converted"] += 1
            title, body = row.get("Title", ""), row.get("Body") or ""
            if pool is None:
                yield post_id, title, html_to_markdown(body)
                continue
            batch.append((post_id, title, body))
            if len(batch) == 128:
                ids, titles, bodies = zip(*batch)
                in_flight.append((ids, titles, pool.submit(_convert_many, bodies)))
                batch.clear()
                yield from results(4 * workers)
        if batch:
            ids, titles, bodies = zip(*batch)
            in_flight.append((ids, titles, pool.submit(_convert_many, bodies)))
        yield from results(0)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _convert_many(bodies: tuple[str, ...]) -> list[str]:
    return [html_to_markdown(b) for b in bodies]


def question_text(title: str, body: str) -> str:
    title, body = title.strip(), body.strip()
    return f"{title}\n\n{body}" if title and body else (title or body)


def write_site(plan: SitePlan, cfg: PrepareConfig, fractions: dict[str, float], stats: Counter, bar,
               writers: SplitWriters) -> None:
    """Pass 2 for one site: convert the bodies pairs need; a question's rows go out once its last body is in.

    Rows come out in the order questions complete (file order), so only the texts of
    questions still waiting for a body are held in memory.
    """
    source, site = plan.source, plan.source.site
    task = bar.add_task(f"convert {site}", total=_mib(source.xml.stat().st_size),
                        extra=f"MiB, {len(plan.owner)} bodies")
    texts: dict[int, tuple[str, str]] = {}
    workers = worker_count(cfg.workers, len(plan.owner))
    for post_id, title, markdown in converted_posts(source, plan.owner, stats,
                                                    lambda n: bar.advance(task, _mib(n)), workers):
        texts[post_id] = (title, markdown)
        qid = plan.owner[post_id]
        plan.waiting[qid] -= 1
        if plan.waiting[qid] == 0:
            write_question(qid, plan, texts, fractions, cfg.seed, stats, writers)


def write_question(qid: int, plan: SitePlan, texts: dict[int, tuple[str, str]], fractions: dict[str, float],
                   seed: int, stats: Counter, writers: SplitWriters) -> None:
    site = plan.source.site
    question = question_text(*texts.pop(qid))
    split = assign_split(f"{site}:{qid}", fractions, seed)
    kept = 0
    for pair in plan.pairs[qid]:
        j, k = pair.chosen, pair.rejected
        response_j, response_k = texts[j.answer_id][1], texts[k.answer_id][1]
        if not (question and response_j and response_k):
            stats["dropped.pairs_empty_after_conversion"] += 1
            continue
        kept += 1
        writers.write(split, {
            "qid": qid, "question": question, "date": plan.dates[qid],
            "metadata": [f"https://{site}/questions/{qid}", f"https://{site}/a/{j.answer_id}",
                         f"https://{site}/a/{k.answer_id}"],
            "response_j": response_j, "response_k": response_k,
            "answer_id_j": j.answer_id, "answer_id_k": k.answer_id, "score_j": j.score, "score_k": k.score,
            "site": site,
        })
    for pair in plan.pairs[qid]:  # every answer belongs to this one question: free its text
        texts.pop(pair.chosen.answer_id, None)
        texts.pop(pair.rejected.answer_id, None)
    if kept:
        stats[f"split.{split}.questions"] += 1
        stats[f"split.{split}.pairs"] += kept


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


def run(cfg: PrepareConfig) -> dict:
    """Run the stage; returns the stats (also written to OUTPUT/stats.json).

    Pass 1 runs over every input before anything is written, so broken XML in any input,
    or a dump without pairs, fails before output starts (stdout stays empty, no directory).
    """
    fractions = parse_split_fractions(cfg.splits)
    inputs = [Path(p) for p in cfg.inputs] or [SAMPLE_DUMP]
    to_stdout = cfg.output == "-"
    if not to_stdout:
        check_output_dir(cfg.output, cfg.overwrite)  # fail before the long work, not after
    start = time.time()
    stats: Counter = Counter()
    bar = progress(transient=True)
    bar.disable = bar.disable or not console.is_terminal  # off a terminal a bar is only a stray blank line
    with open_sources(inputs) as sources, bar:
        sites = [s.site for s in sources]
        if len(set(sites)) != len(sites):
            raise StackLlamaError(f"two inputs are the same site ({', '.join(sites)}): question ids would collide")
        plans = [plan_site(source, cfg, stats, bar) for source in sources]
        if not any(plan.pairs for plan in plans):
            raise_no_pairs(inputs)
        with output_writers(cfg) as (writers, folder):
            for plan in plans:
                write_site(plan, cfg, fractions, stats, bar, writers)
            writers.close()
            summary = collect_stats(stats, cfg, sources, time.time() - start)
            if summary["pairs"] == 0:
                raise_no_pairs(inputs)
            if folder is not None:
                check_empty_splits(summary, fractions)
                write_json(folder / "stats.json", summary)
                save_config(cfg, folder)
    return summary


def raise_no_pairs(inputs: list[Path]) -> None:
    raise StackLlamaError(f"no preference pairs in {', '.join(map(str, inputs))}: no question has two answers "
                          "with different scores")


@contextlib.contextmanager
def output_writers(cfg: PrepareConfig) -> Iterator[tuple[SplitWriters, Path | None]]:
    """Writers into a temp dir renamed into place on success (or JSONL on stdout for '-')."""
    if cfg.output == "-":
        yield SplitWriters(None), None
        return
    with atomic_dir(cfg.output, overwrite=cfg.overwrite) as tmp:
        writers = SplitWriters(tmp / "data", cfg.format)
        try:
            yield writers, tmp
        finally:
            writers.close()


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
