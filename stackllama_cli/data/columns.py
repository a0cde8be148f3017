"""Other datasets' columns in our schema: `--columns` mappings and TRL's preference format.

Our columns (data/writers.py): question, response_j (the preferred answer), response_k, and optionally
qid, date, metadata, answer_id_j/k, score_j/k, site. TRL's standard preference format names them
prompt, chosen, rejected (prompt-completion data: prompt, completion), as plain strings or as
conversations (lists of {"role", "content"}); without a prompt column the prompt is the part that
chosen and rejected share. `normalise` turns any of these into our columns.
"""

from __future__ import annotations

from typing import Any

from stackllama_cli.core.errors import StackLlamaError

OUR_COLUMNS = ("qid", "question", "date", "metadata", "response_j", "response_k", "answer_id_j", "answer_id_k",
               "score_j", "score_k", "site")
# TRL's names (and UltraFeedback's scores) -> ours, used when our own column is absent
TRL_COLUMNS = (("prompt", "question"), ("chosen", "response_j"), ("rejected", "response_k"),
               ("completion", "response_j"), ("score_chosen", "score_j"), ("score_rejected", "score_k"))


def parse_column_map(text: str | None) -> dict[str, str]:
    """'question=prompt,response_j=chosen' -> {"question": "prompt", "response_j": "chosen"} (ours -> theirs)."""
    mapping: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        ours, sep, theirs = (s.strip() for s in part.partition("="))
        if not sep or not ours or not theirs:
            raise StackLlamaError(f"--columns takes OURS=THEIRS pairs, e.g. question=prompt,response_j=chosen; "
                                  f"got {part!r}")
        if ours not in OUR_COLUMNS:
            raise StackLlamaError(f"--columns: {ours!r} is not one of our columns ({', '.join(OUR_COLUMNS)})")
        if ours in mapping:
            raise StackLlamaError(f"--columns names {ours!r} twice")
        mapping[ours] = theirs
    return mapping


def renames(available: list[str], mapping: dict[str, str], where: str) -> dict[str, str]:
    """{their column: our column}: the explicit `mapping` first, then TRL's names for columns still missing."""
    out: dict[str, str] = {}
    for ours, theirs in mapping.items():
        if theirs not in available:
            raise StackLlamaError(f"--columns {ours}={theirs}: {where} has no column {theirs!r} "
                                  f"(has: {', '.join(available)})")
        out[theirs] = ours
    for theirs, ours in TRL_COLUMNS:
        taken = ours in available and ours not in out or ours in out.values()
        if theirs in available and theirs not in out and not taken:
            out[theirs] = ours
    return out


def message_text(value: Any, whole_prompt: bool = False) -> Any:
    """A conversation as text: one message -> its content; a prompt of several -> "role: content" blocks;
    a completion of several -> the contents. Anything that is not a conversation is returned as it is."""
    if not (isinstance(value, list) and all(isinstance(m, dict) and "content" in m for m in value)):
        return value
    if len(value) == 1:
        return str(value[0]["content"])
    if whole_prompt:
        return "\n\n".join(f"{m.get('role', 'user')}: {m['content']}" for m in value)
    return "\n\n".join(str(m["content"]) for m in value)


def split_prompt(chosen: Any, rejected: Any) -> tuple[Any, Any, Any]:
    """TRL's implicit prompt: (prompt, chosen, rejected) with the shared beginning taken out as the prompt.

    Conversations share whole messages; strings share characters, cut back to the last whitespace so a
    word is not split.
    """
    if isinstance(chosen, list) and isinstance(rejected, list):
        n = 0
        while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
            n += 1
        return chosen[:n], chosen[n:], rejected[n:]
    chosen, rejected = str(chosen), str(rejected)
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    if n < min(len(chosen), len(rejected)):  # they differ inside a word: cut at the whitespace before it
        while n > 0 and not chosen[n - 1].isspace():
            n -= 1
    return chosen[:n].rstrip(), chosen[n:].lstrip(), rejected[n:].lstrip()


def normalise(ds, columns: str | None, where: str):
    """`ds` with our column names and plain-text question/response_j/response_k."""
    import datasets

    mapping = parse_column_map(columns)
    rename = renames(list(ds.column_names), mapping, where)
    replaced = [c for c in ds.column_names if c in rename.values() and c not in rename]
    if replaced:  # an explicit mapping wins over a column of the same name
        ds = ds.remove_columns(replaced)
    if any(k != v for k, v in rename.items()):
        ds = ds.rename_columns({k: v for k, v in rename.items() if k != v})
    has = set(ds.column_names)
    implicit = "question" not in has and {"response_j", "response_k"} <= has
    text_columns = [c for c in ("question", "response_j", "response_k") if c in has]
    if len(ds) == 0 or not (implicit or any(isinstance(ds[0][c], list) for c in text_columns)):
        return ds

    def convert(batch: dict) -> dict:
        if implicit:
            parts = [split_prompt(j, k) for j, k in zip(batch["response_j"], batch["response_k"])]
            batch["question"], batch["response_j"], batch["response_k"] = (list(p) for p in zip(*parts))
        for column in ("question", "response_j", "response_k"):
            if column in batch:
                batch[column] = [message_text(v, whole_prompt=column == "question") for v in batch[column]]
        return batch

    quiet = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()  # our own progress and messages, not datasets' bars
    try:
        return ds.map(convert, batched=True, load_from_cache_file=False)
    finally:
        if not quiet:
            datasets.enable_progress_bars()
