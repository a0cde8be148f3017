"""The dataset card (README.md) prepare-data writes beside its splits.

Front matter as the Hub and `datasets` read it: the licence (StackExchange content is CC BY-SA 4.0) and
`configs` naming each split's files, so `datasets.load_dataset(DIR)` and the Hub find the four splits.
Then the attribution (sites, links), the schema, the scoring formula, counts per split, the rows dropped
and why (stats.json), and the command that made it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stackllama_cli.core.cards import (
    CARD_FILENAME,
    CC_BY_SA,
    CC_BY_SA_LINK,
    code_block,
    command_section,
    render_card,
    table,
    versions_line,
)
from stackllama_cli.core.files import atomic_write_text
from stackllama_cli.data.datasets import SPLITS

DUMP_LINK = "https://archive.org/details/stackexchange"
SCORE_FORMULA = "round(log2(1 + upvotes)) + 1 if accepted, -1 for negative votes"
COLUMNS = (  # (name, Parquet type, meaning): the schema of data/writers.py
    ("qid", "int64", "the question's id on its site ((site, qid) names a question)"),
    ("question", "string", "the question: title, a blank line, then the body in Markdown"),
    ("date", "string", "the question's creation date (YYYY-MM-DD)"),
    ("metadata", "list<string>", "links: the question, answer j, answer k"),
    ("response_j", "string", "the preferred answer (Markdown): score_j > score_k"),
    ("response_k", "string", "the other answer (Markdown)"),
    ("answer_id_j", "int64", "answer j's id"),
    ("answer_id_k", "int64", "answer k's id"),
    ("score_j", "int64", f"answer j's score: {SCORE_FORMULA}"),
    ("score_k", "int64", "answer k's score, by the same formula (always lower than score_j)"),
    ("site", "string", "the StackExchange site, e.g. beer.stackexchange.com"),
)
SPLIT_USE = {"finetune": "supervised fine-tuning (sft)", "reward": "reward-model training (train-rm)",
             "rl": "PPO prompts (ppo)", "evaluation": "held-out pairs (eval-rm; sft's eval loss)"}
LANGUAGES = {"ru": "ru", "es": "es", "pt": "pt", "ja": "ja"}  # the sites in other languages: ru.stackoverflow.com ...
SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
         (10_000_000, "1M<n<10M"))


def write_dataset_card(folder: str | Path, stats: dict[str, Any], cfg) -> Path:
    """README.md in a prepare-data output folder; `stats` is what goes to stats.json."""
    return atomic_write_text(Path(folder) / CARD_FILENAME, dataset_card(stats, cfg))


def dataset_card(stats: dict[str, Any], cfg) -> str:
    written = [s for s in SPLITS if stats["splits"].get(s, {}).get("pairs")]  # an empty split has no file
    sites = list(stats.get("sites") or [])
    front = {
        "license": CC_BY_SA,
        "language": sorted({LANGUAGES.get(site.split(".")[0], "en") for site in sites} or {"en"}),
        "pretty_name": "StackExchange preference pairs (" + (", ".join(sites) if len(sites) <= 3 else
                                                              f"{len(sites)} sites") + ")",
        "size_categories": [size_category(stats.get("pairs", 0))],
        "task_categories": ["text-generation", "question-answering"],
        "tags": ["stackexchange", "preference", "rlhf", "reward-modeling", "stackllama"],
        "configs": [{"config_name": "default", "default": True,
                     "data_files": [{"split": s, "path": f"data/{s}-*"} for s in written]}],
    }
    sample = not cfg.inputs
    source = ("the bundled sample dump (synthetic posts written for stackllama, in StackExchange's format)"
              if sample else f"the StackExchange data dump ({DUMP_LINK}) of "
              + ", ".join(f"[{s}](https://{s})" for s in sites))
    body = [
        f"# {front['pretty_name']}",
        "Pairs of answers to the same question, the better-scored one first (`response_j`), made by "
        f"`stackllama prepare-data` from {source}. Each question's pairs go to one split, so no question "
        "is in two; the splits serve the StackLLaMA recipe: "
        + "; ".join(f"`{s}` {SPLIT_USE[s]}" for s in SPLITS) + ".",
        "## Licence and attribution",
        f"StackExchange content is licensed [CC BY-SA 4.0]({CC_BY_SA_LINK}). Reuse must credit the authors of "
        "the posts (each row's `metadata` links the question and both answers, where the authors are named) "
        "and share what is made from it under the same licence.",
        "## Load",
        code_block(f"import datasets\n\nds = datasets.load_dataset(\"{_builder(cfg.format)}\", data_dir=DIR)   # or "
                   "datasets.load_dataset(DIR): this card's configs\nds[\"finetune\"][0]", "python"),
        "## Splits",
        table(("split", "questions", "pairs", "file"),
              [(s, stats["splits"][s]["questions"], stats["splits"][s]["pairs"],
                f"`data/{s}-00000-of-00001.{cfg.format}`" if s in written else "(empty: no file)") for s in SPLITS]
              + [("total", stats.get("questions_with_pairs"), stats.get("pairs"), "")]),
        f"Split by a seeded hash of `site:qid` (seed {cfg.seed}, fractions {cfg.splits}): a question keeps its "
        "split when data is added.",
        "## Schema",
        table(("column", "type", "meaning"), [(f"`{n}`", t, m) for n, t, m in COLUMNS]),
        f"Answer score: `{SCORE_FORMULA}`, where upvotes is the answer's net vote count and halves round up. "
        f"Pairs: answers of one question with different scores, at most {cfg.max_pairs} per question (sampled "
        "with the seed when there are more); ties are not pairs. HTML bodies are converted to Markdown.",
        "## Counts",
        f"Read {stats.get('rows')} rows: {stats.get('questions')} questions and {stats.get('answers')} answers; "
        f"{stats.get('bodies_converted')} bodies converted to Markdown. Rows and pairs left out, by reason:",
        table(("reason", "count"), [(k.replace("_", " "), v) for k, v in (stats.get("dropped") or {}).items()]
              or [("(none)", 0)]),
        "## Command",
        command_section("This dataset") + f"\n\nWith {versions_line()}.",
    ]
    return render_card(front, "\n\n".join(body))


def _builder(fmt: str) -> str:
    return "parquet" if fmt == "parquet" else "json"


def size_category(pairs: int) -> str:
    for limit, name in SIZES:
        if pairs < limit:
            return name
    return "n>10M"
