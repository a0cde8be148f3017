"""One site through prepare-data: pass 1 (tables.py) then pass 2 here, rows into a SplitWriters.

Pass 2 streams Posts.xml again and converts to Markdown only the bodies that pairs need: a
question's own and its paired answers'. A question's rows are written as soon as its last body is
converted; bodies converted before that wait in a TextStore (memory up to a budget, then disk).
"""

from __future__ import annotations

import bisect
import collections
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

from stackllama_cli.data.markdown import html_to_markdown
from stackllama_cli.data.pairs import assign_split
from stackllama_cli.data.stackexchange import ANSWER, QUESTION, iter_rows, open_source, parse_int
from stackllama_cli.data.tables import ID_LIMIT, PairPlan, SeenIds, plan_pairs, scan, valid_id
from stackllama_cli.data.textstore import TextStore
from stackllama_cli.data.writers import SplitWriters

BATCH = 128  # bodies per task for the conversion workers

# report(site, phase, event, n): event "start" (n = bytes to read), "read" (n bytes read), "end"
Report = Callable[[str, str, str, int], None]


def no_report(site: str, phase: str, event: str, n: int) -> None:
    pass


def prepare_site(path: Path, cfg, fractions: dict[str, float], writers: SplitWriters, stats: Counter,
                 report: Report = no_report, workers: int = 1) -> str:
    """Both passes over one input (a Posts.xml, site folder or archive); returns the site's name."""
    with open_source(path) as source:
        plan = plan_site(source, cfg, stats, report)
        write_site(source, plan, cfg, fractions, stats, writers, report, workers)
        return source.site


def plan_site(source, cfg, stats: Counter, report: Report = no_report) -> PairPlan:
    tables = scan(source.xml, stats, _reader(report, source, "scan"))
    report(source.site, "scan", "end", 0)
    return plan_pairs(tables, cfg.max_pairs, cfg.seed, source.site, stats)


def _reader(report: Report, source, phase: str) -> Callable[[int], None]:
    report(source.site, phase, "start", source.xml.stat().st_size)
    return lambda n: report(source.site, phase, "read", n)


def worker_count(requested: int, bodies: int) -> int:
    """Processes for the conversion: as asked, else one per core (at most 8) for jobs big enough
    to repay starting a pool (~2000 bodies is about half a second of conversion)."""
    if requested:
        return requested
    return 1 if bodies < 2000 else min(8, os.cpu_count() or 1)


def needed_posts(xml: Path, plan: PairPlan, on_read=None) -> Iterator[tuple[int, int, str, str, str]]:
    """(question index, post id, title, HTML body, date) of the posts whose bodies pairs need, in file order."""
    qids, starts = memoryview(plan.qids), memoryview(plan.starts)
    chosen, rejected = memoryview(plan.chosen), memoryview(plan.rejected)
    seen = SeenIds()  # the rows pass 1 kept: the first of each id
    try:
        for row in iter_rows(xml, on_read):
            post_id = valid_id(row, seen)
            if post_id is None:
                continue
            kind = row.get("PostTypeId")
            if kind == QUESTION:
                qi = bisect.bisect_left(qids, post_id)
                if qi < len(qids) and qids[qi] == post_id:
                    yield qi, post_id, row.get("Title", ""), row.get("Body") or "", row.get("CreationDate", "")[:10]
            elif kind == ANSWER:
                parent = parse_int(row.get("ParentId"))
                if parent is None or not 0 <= parent < ID_LIMIT:
                    continue
                qi = bisect.bisect_left(qids, parent)
                if qi < len(qids) and qids[qi] == parent:
                    s, e = starts[qi], starts[qi + 1]
                    if post_id in chosen[s:e] or post_id in rejected[s:e]:
                        yield qi, post_id, "", row.get("Body") or "", ""
    finally:
        seen.close()


def converted_posts(posts: Iterator[tuple], workers: int = 1) -> Iterator[tuple]:
    """`posts` with each HTML body replaced by its Markdown, in the same order.

    Conversion dominates the run time; with several workers, batches of bodies are converted in
    parallel while the XML streams on. Results are taken in submission order, so the output does not
    depend on the number of workers, and at most a few batches per worker are in flight, so memory
    does not grow with the dump.
    """
    if workers <= 1:
        for qi, post_id, title, body, date in posts:
            yield qi, post_id, title, html_to_markdown(body), date
        return
    batch: list[tuple] = []
    in_flight: collections.deque = collections.deque()
    with ProcessPoolExecutor(workers) as pool:
        try:
            for post in posts:
                batch.append(post)
                if len(batch) == BATCH:
                    in_flight.append((batch, pool.submit(_convert_many, [p[3] for p in batch])))
                    batch = []
                    while len(in_flight) > 4 * workers:
                        yield from _results(*in_flight.popleft())
            if batch:
                in_flight.append((batch, pool.submit(_convert_many, [p[3] for p in batch])))
            while in_flight:
                yield from _results(*in_flight.popleft())
        finally:
            for _, future in in_flight:
                future.cancel()


def _results(batch: list[tuple], future) -> Iterator[tuple]:
    for (qi, post_id, title, _, date), markdown in zip(batch, future.result()):
        yield qi, post_id, title, markdown, date


def _convert_many(bodies: list[str]) -> list[str]:
    return [html_to_markdown(b) for b in bodies]


def question_text(title: str, body: str) -> str:
    title, body = title.strip(), body.strip()
    return f"{title}\n\n{body}" if title and body else (title or body)


def write_site(source, plan: PairPlan, cfg, fractions: dict[str, float], stats: Counter, writers: SplitWriters,
               report: Report = no_report, workers: int = 1) -> None:
    """Pass 2 for one site: rows go out in the order questions complete (file order of their last body)."""
    waiting = plan.waiting
    texts = TextStore()
    try:
        posts = needed_posts(source.xml, plan, _reader(report, source, "convert"))
        for qi, post_id, title, markdown, date in converted_posts(posts, worker_count(workers, int(waiting.sum()))):
            stats["bodies_converted"] += 1
            texts.put(post_id, (title, markdown, date) if post_id == plan.qids[qi] else (markdown,))
            waiting[qi] -= 1
            if waiting[qi] == 0:
                write_question(qi, plan, texts, source.site, fractions, cfg.seed, stats, writers)
        report(source.site, "convert", "end", 0)
    finally:
        texts.close()


def write_question(qi: int, plan: PairPlan, texts: TextStore, site: str, fractions: dict[str, float], seed: int,
                   stats: Counter, writers: SplitWriters) -> None:
    qid = int(plan.qids[qi])
    title, body, date = texts.pop(qid)
    question = question_text(title, body)
    split = assign_split(f"{site}:{qid}", fractions, seed)
    s, e = int(plan.starts[qi]), int(plan.starts[qi + 1])
    chosen, rejected = plan.chosen[s:e].tolist(), plan.rejected[s:e].tolist()
    answers = {answer_id: texts.pop(answer_id)[0] for answer_id in dict.fromkeys(chosen + rejected)}
    kept = 0
    for j, k, score_j, score_k in zip(chosen, rejected, plan.chosen_score[s:e].tolist(),
                                      plan.rejected_score[s:e].tolist()):
        response_j, response_k = answers[j], answers[k]
        if not (question and response_j and response_k):
            stats["dropped.pairs_empty_after_conversion"] += 1
            continue
        kept += 1
        writers.write(split, {
            "qid": qid, "question": question, "date": date,
            "metadata": [f"https://{site}/questions/{qid}", f"https://{site}/a/{j}", f"https://{site}/a/{k}"],
            "response_j": response_j, "response_k": response_k,
            "answer_id_j": j, "answer_id_k": k, "score_j": score_j, "score_k": score_k,
            "site": site,
        })
    if kept:
        stats[f"split.{split}.questions"] += 1
        stats[f"split.{split}.pairs"] += kept
