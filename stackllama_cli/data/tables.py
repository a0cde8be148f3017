"""Pass 1 of prepare-data in compact columns: a site's structure (ids, parents, scores, accepted answers)
as int32 arrays, then its preference pairs as arrays too, so that memory grows by bytes per post, not by
Python objects per post.

- `scan`: one streaming pass over Posts.xml -> `SiteTables` (questions: id, accepted answer; answers:
  id, parent, net score); rows are validated, deduplicated (the first row with an id wins) and the
  dropped ones counted by reason.
- `plan_pairs`: answers grouped by question with one in-place sort, each question's pairs chosen by
  `pairs.select_pairs` -> `PairPlan`, all pass 2 needs: the questions with pairs (sorted ids), their
  pairs (answer ids and scores) and how many bodies each question waits for.

An answer's score is kept as `answer_score(votes, False)` (int8) and the accepted answer's +1 added
when pairing: `answer_score(votes, True)` is that plus 1 unless the votes are negative.
"""

from __future__ import annotations

import mmap
from array import array
from collections import Counter
from dataclasses import dataclass

import numpy as np

from stackllama_cli.data.pairs import ScoredAnswer, answer_score, select_pairs
from stackllama_cli.data.stackexchange import ANSWER, QUESTION, iter_rows, parse_int

ID_LIMIT = 2**31  # ids are stored as int32: StackOverflow's are below 10**8


class SeenIds:
    """First-wins duplicate detection over ids in [0, ID_LIMIT): one bit per possible id in an anonymous
    mapping, so only the pages of ids that occur take memory (~1 bit per id up to the largest)."""

    def __init__(self):
        self._map = mmap.mmap(-1, ID_LIMIT // 8)
        self._bits = memoryview(self._map)

    def first(self, post_id: int) -> bool:
        """True the first time `post_id` is seen (and marks it)."""
        i, bit = post_id >> 3, 1 << (post_id & 7)
        byte = self._bits[i]
        if byte & bit:
            return False
        self._bits[i] = byte | bit
        return True

    def close(self) -> None:
        self._bits.release()
        self._map.close()


def valid_id(row, seen: SeenIds, stats: Counter | None = None) -> int | None:
    """The row's Id when it is an integer in range that no earlier row had; else None (counted in `stats`).
    Both passes call this on every row, so both keep the same row of a repeated id."""
    post_id = parse_int(row.get("Id"))
    if post_id is None:
        reason = "rows_without_id"
    elif not 0 <= post_id < ID_LIMIT:
        reason = "ids_out_of_range"
    elif not seen.first(post_id):  # a later row with an id already seen: the first one wins
        reason = "duplicate_ids"
    else:
        return post_id
    if stats is not None:
        stats[f"dropped.{reason}"] += 1
    return None


@dataclass
class SiteTables:
    """9 bytes per answer, 8 per question."""

    q_id: np.ndarray  # int32, questions in file order
    q_accepted: np.ndarray  # int32, -1 = none
    a_id: np.ndarray  # int32, answers with a body and an integer score, in file order
    a_parent: np.ndarray  # int32, -1 = none
    a_base: np.ndarray  # int8: answer_score(net votes, not accepted); acceptance adds 1 to a base >= 0


def scan(xml, stats: Counter, on_read=None) -> SiteTables:
    """Pass 1: the columns of one Posts.xml; counts rows, questions, answers and what is dropped."""
    q_id, q_acc, a_id, a_parent, a_base = array("i"), array("i"), array("i"), array("i"), array("b")
    seen = SeenIds()
    try:
        for row in iter_rows(xml, on_read):
            stats["rows"] += 1
            post_id = valid_id(row, seen, stats)
            if post_id is None:
                continue
            kind = row.get("PostTypeId")
            if kind == QUESTION:
                stats["questions"] += 1
                accepted = row.get("AcceptedAnswerId")
                accepted_id = parse_int(accepted)
                if accepted is not None and accepted_id is None:  # it decides a +1: never guessed
                    stats["dropped.questions_with_invalid_accepted_answer_id"] += 1
                    continue
                q_id.append(post_id)
                q_acc.append(accepted_id if accepted_id is not None and 0 <= accepted_id < ID_LIMIT else -1)
            elif kind == ANSWER:
                stats["answers"] += 1
                net = parse_int(row.get("Score"))
                if net is None or not -2**63 <= net < 2**63:  # no votes to score by: never guessed as 0
                    stats["dropped.answers_with_invalid_score"] += 1
                elif not (row.get("Body") or "").strip():
                    stats["dropped.empty_answer_bodies"] += 1
                else:
                    parent = parse_int(row.get("ParentId"))
                    a_id.append(post_id)
                    a_parent.append(parent if parent is not None and 0 <= parent < ID_LIMIT else -1)
                    a_base.append(answer_score(net, False))
            else:
                stats["dropped.other_post_types"] += 1
    finally:
        seen.close()
    return SiteTables(*(np.frombuffer(col, dtype=col.typecode) if len(col) else np.zeros(0, col.typecode)
                        for col in (q_id, q_acc, a_id, a_parent, a_base)))


@dataclass
class PairPlan:
    """A site's pairs, grouped by question in ascending question id: 10 bytes per pair, 12 per question."""

    qids: np.ndarray  # int32, sorted: the questions with pairs
    starts: np.ndarray  # int32, len(qids) + 1: question i's pairs are [starts[i], starts[i + 1])
    chosen: np.ndarray  # int32 answer ids (j, the better answer)
    rejected: np.ndarray  # int32 answer ids (k)
    chosen_score: np.ndarray  # int8
    rejected_score: np.ndarray  # int8
    waiting: np.ndarray  # int32: bodies question i still needs (itself and its answers in pairs)


def plan_pairs(tables: SiteTables, max_pairs: int, seed: int, site: str, stats: Counter,
               chunk: int = 1 << 14) -> PairPlan:
    """Group answers by question, then select each question's pairs; `chunk` rows at a time, so that
    no temporary spans a whole table. Empties `tables`."""
    q_id, q_acc = tables.q_id, tables.q_accepted
    if len(q_id) > 1 and not (q_id[1:] > q_id[:-1]).all():  # dumps come in id order: usually nothing to do
        order = np.argsort(q_id, kind="stable")
        q_id, q_acc = q_id[order], q_acc[order]
        del order
    tables.q_id = tables.q_accepted = None
    offsets, ids, bases = group_answers(q_id, tables, stats, chunk)
    out = _PlanBuilder()
    for first in range(0, len(q_id), chunk):
        sizes = np.diff(offsets[first:first + chunk + 1])
        stats["dropped.questions_without_answers"] += int((sizes == 0).sum())
        stats["dropped.questions_without_pairs"] += int((sizes == 1).sum())
        for i in (first + np.flatnonzero(sizes > 1)).tolist():
            s, e = int(offsets[i]), int(offsets[i + 1])
            accepted = int(q_acc[i])
            scored = [ScoredAnswer(aid, base + (base >= 0 and aid == accepted))
                      for aid, base in zip(ids[s:e].tolist(), bases[s:e].tolist())]
            out.add(int(q_id[i]), scored, max_pairs, seed, site, stats)
    return out.plan()


def group_answers(q_id: np.ndarray, tables: SiteTables, stats: Counter, chunk: int):
    """A counting sort of the answers by question (`q_id` sorted): (offsets, int32 len(q_id) + 1; answer
    ids, int32; bases, int8), question i's answers at [offsets[i], offsets[i + 1]) in file order.
    Answers whose question is not in the dump are dropped and counted. Empties `tables`' answers."""
    a_id, question, a_base = tables.a_id, tables.a_parent, tables.a_base  # parents become question indices
    tables.a_id = tables.a_parent = tables.a_base = None
    nq = len(q_id)
    offsets = np.zeros(nq + 1, np.int32)  # first the counts, at i + 1
    for s in range(0, len(a_id), chunk):  # parent id -> question index (-1: none)
        parent = question[s:s + chunk]
        qi = np.searchsorted(q_id, parent)
        found = qi < nq
        found[found] = q_id[qi[found]] == parent[found]
        parent[:] = np.where(found, qi, -1)
        np.add.at(offsets, qi[found] + 1, 1)
    np.cumsum(offsets, out=offsets)
    stats["dropped.orphan_answers"] += len(a_id) - int(offsets[-1])
    ids, bases = np.empty(int(offsets[-1]), np.int32), np.empty(int(offsets[-1]), np.int8)
    cursor = offsets[:-1].copy()  # next free place of each question's group
    for s in range(0, len(a_id), chunk):
        keep = np.flatnonzero(question[s:s + chunk] >= 0)
        qi = question[s:s + chunk][keep]
        order = np.argsort(qi, kind="stable")
        qi, keep = qi[order], keep[order] + s
        new_group = np.concatenate(([True], qi[1:] != qi[:-1]))
        rank = np.arange(len(qi)) - np.maximum.accumulate(np.where(new_group, np.arange(len(qi)), 0))
        where = cursor[qi] + rank  # answers of one question keep their file order
        ids[where], bases[where] = a_id[keep], a_base[keep]
        np.add.at(cursor, qi, 1)
    return offsets, ids, bases


class _PlanBuilder:
    def __init__(self):
        self.qids, self.starts, self.waiting = array("i"), array("i", [0]), array("i")
        self.chosen, self.rejected, self.cs, self.rs = array("i"), array("i"), array("b"), array("b")

    def add(self, qid: int, scored: list[ScoredAnswer], max_pairs: int, seed: int, site: str, stats: Counter):
        pairs, capped = select_pairs(scored, max_pairs, seed, f"{site}:{qid}")
        n = len(scored)
        stats["dropped.tied_pairs"] += n * (n - 1) // 2 - len(pairs) - capped
        stats["dropped.pairs_over_max_pairs"] += capped
        if not pairs:
            stats["dropped.questions_without_pairs"] += 1
            return
        self.qids.append(qid)
        for pair in pairs:
            self.chosen.append(pair.chosen.answer_id)
            self.rejected.append(pair.rejected.answer_id)
            self.cs.append(pair.chosen.score)
            self.rs.append(pair.rejected.score)
        self.starts.append(len(self.chosen))
        self.waiting.append(1 + len({a for p in pairs for a in (p.chosen.answer_id, p.rejected.answer_id)}))

    def plan(self) -> PairPlan:
        cols = [np.frombuffer(c, dtype=c.typecode) if len(c) else np.zeros(0, c.typecode)
                for c in (self.qids, self.starts, self.chosen, self.rejected, self.cs, self.rs, self.waiting)]
        cols[-1] = cols[-1].copy()  # waiting counts down in pass 2
        return PairPlan(*cols)
