"""`stackllama compare`: several models answer the same held-out questions; one reward model scores them all.

Steps: 1 questions (the evaluation split's distinct questions, or a file) -> 2 reward model (and judge)
-> 3 each model in turn: load, answer with the same seeded sampling (stages/generate.py), and, when it
shares the first model's vocabulary, its KL to the first model along its own answers -> 4 score every
answer as train-rm reads it (stages/eval_rm.py:score_answers) -> 5 statistics (stages/compare_stats.py)
-> 6 table on stderr; answers.jsonl, compare.json and reward_vs_length.png in --output.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from stackllama_cli.core.config import require
from stackllama_cli.core.errors import StackLlamaError, UsageError
from stackllama_cli.data.prompts import format_prompt

LENGTH_CONTROL = ("residual: one least-squares line reward ~ a + b * length over every answer of every model; "
                  "per question, the model's reward residual against the first model's")


@dataclasses.dataclass
class CompareConfig:
    models: list[str] = dataclasses.field(default_factory=list)
    reward_model: str = "runs/reward"
    labels: str | None = None  # comma-separated, one per model (default: each model's directory name)
    data: str = "runs/demo/data"
    split: str = "evaluation"
    questions: str | None = None  # a file of questions instead of the split (plain lines or JSONL)
    limit: int = 100
    max_new_tokens: int = 128
    temperature: float = 0.7  # stages/generate.py's defaults
    top_p: float = 0.95
    top_k: int = 50
    seed: int = 0
    batch_size: int = 8
    judge: str | None = None
    rm_max_length: int = 1024
    kl: bool = True
    resamples: int = 2000
    output: str | None = None
    overwrite: bool = False
    precision: str = "auto"
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        if not self.models:
            raise UsageError("give at least one model to compare (the first one is the baseline)")
        require(self.limit >= 1 and self.batch_size >= 1, "--limit and --batch-size must be at least 1")
        require(self.max_new_tokens >= 1 and self.rm_max_length >= 16,
                "--max-new-tokens must be at least 1 and --rm-max-length at least 16")
        require(self.resamples >= 100, "--resamples must be at least 100")
        if len(set(self.label_list)) != len(self.models):
            raise UsageError(f"--labels needs {len(self.models)} distinct comma-separated names, one per model")

    @property
    def label_list(self) -> list[str]:
        if self.labels:
            return [s.strip() for s in self.labels.split(",") if s.strip()]
        names = [Path(m.rstrip("/")).name or m for m in self.models]
        return [n if names.count(n) == 1 else f"{n}-{i + 1}" for i, n in enumerate(names)]


def load_questions(cfg: CompareConfig) -> list[str]:
    """The first --limit distinct questions of the split (never trained on), or of --questions."""
    if cfg.questions:
        from stackllama_cli.stages.generate import read_questions

        path = Path(cfg.questions)
        if not path.is_file():
            raise StackLlamaError(f"questions file {path} does not exist")
        with open(path, encoding="utf-8") as fh:
            questions = [row["question"] for row in read_questions(fh)]
    else:
        from stackllama_cli.data.datasets import load_split

        questions = list(load_split(cfg.data, cfg.split, columns=("question",))["question"])
    return list(dict.fromkeys(q for q in questions if q.strip()))[: cfg.limit]


def answer_all(lm, tokenizer, questions: list[str], cfg: CompareConfig, label: str) -> list[dict]:
    """One seeded answer per question (the same random stream for every model), with its token ids."""
    from transformers import set_seed

    from stackllama_cli.core.console import progress
    from stackllama_cli.stages.generate import SamplingConfig, batches, generate_batch

    sampling = SamplingConfig(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                              top_k=cfg.top_k, seed=cfg.seed)
    set_seed(cfg.seed)
    rows: list[dict] = []
    with progress(transient=True) as bar:
        task = bar.add_task(f"answer ({label})", total=len(questions), extra="")
        for chunk in batches(questions, cfg.batch_size):
            for question, result in zip(chunk, generate_batch(lm, tokenizer, chunk, sampling)):
                ids = tokenizer(result["response"], add_special_tokens=False)["input_ids"]
                if result["finish_reason"] == "eos":
                    ids = ids + [tokenizer.eos_token_id]
                rows.append({"question": question, **result, "_ids": ids})
            bar.advance(task, len(chunk))
    return rows


def sequence_kl(lm, reference, tokenizer, rows: list[dict]) -> list[float]:
    """Per answer: the sum over its tokens of KL(model || reference) of the next-token distributions at
    temperature 1, exact over the vocabulary, given the same prefix (the model's own answer so far)."""
    import torch

    out = []
    with torch.no_grad():
        for row in rows:
            prompt = tokenizer(format_prompt(row["question"]))["input_ids"]
            answer = row["_ids"]
            if not answer:
                out.append(0.0)
                continue
            ids = torch.tensor([prompt + answer], device=lm.device)
            # the logits at positions len(prompt) - 1 ... end - 1 predict the answer's tokens
            span = slice(len(prompt) - 1, len(prompt) + len(answer) - 1)
            logp = torch.log_softmax(lm(input_ids=ids).logits[0, span].float(), -1)
            ref = torch.log_softmax(reference(input_ids=ids.to(reference.device)).logits[0, span].float(), -1)
            out.append(float((logp.exp() * (logp - ref.to(logp.device))).sum()))
    return out


def shares_vocabulary(tok_a, tok_b, lm_a, lm_b) -> bool:
    return tok_a.get_vocab() == tok_b.get_vocab() and \
        lm_a.get_output_embeddings().weight.shape[0] == lm_b.get_output_embeddings().weight.shape[0]


def generate_answers(cfg: CompareConfig, questions: list[str]) -> tuple[dict[str, list[dict]], str | None]:
    """label -> answer rows (with `kl_to_first` when computed); and why KL is missing, if it is."""
    import gc

    from stackllama_cli.core.console import info
    from stackllama_cli.stages.generate import load_for_generation

    load = dict(precision=cfg.precision, trust_remote_code=cfg.trust_remote_code)
    answers, first, kl_note = {}, None, None if cfg.kl else "not computed (--no-kl)"
    for i, (label, model) in enumerate(zip(cfg.label_list, cfg.models)):
        lm, tokenizer = load_for_generation(model, **load)
        rows = answer_all(lm, tokenizer, questions, cfg, label)
        if cfg.kl and i == 0:
            first = (lm, tokenizer)
            for row in rows:
                row["kl_to_first"] = 0.0
        elif cfg.kl and shares_vocabulary(tokenizer, first[1], lm, first[0]):
            for row, kl in zip(rows, sequence_kl(lm, first[0], tokenizer, rows)):
                row["kl_to_first"] = kl
        elif cfg.kl:
            kl_note = "not computed for models whose vocabulary differs from the first model's"
        answers[label] = rows
        info(f"{label}: {len(rows)} answers from {model}")
        if first is None or lm is not first[0]:
            del lm
            gc.collect()
    return answers, kl_note


def load_scorers(cfg: CompareConfig) -> dict:
    """The reward model (and the judge), loaded before any answer is generated: a wrong path fails fast. Each as
    (model, tokenizer, the prompt format it reads)."""
    from stackllama_cli.stages.eval_rm import load_scorer, scorer_format

    load = dict(precision=cfg.precision, trust_remote_code=cfg.trust_remote_code)
    scorers = {}
    for name, path in (("reward", cfg.reward_model), ("judge", cfg.judge)):
        if path:
            model, tokenizer = load_scorer(path, **load)
            scorers[name] = (model, tokenizer, scorer_format(path, None, tokenizer))
    return scorers


def score_answers(scorer, pairs: list[tuple[str, str]], cfg: CompareConfig, what: str) -> list[float]:
    """Rewards of (question, answer) pairs, read as train-rm reads them (stages/eval_rm.py:score_answers)."""
    from stackllama_cli.stages.eval_rm import score_answers as score

    model, tokenizer, fmt = scorer
    return score(model, tokenizer, [q for q, _ in pairs], [a for _, a in pairs], cfg.batch_size, cfg.rm_max_length,
                 what, fmt.example)


def run(cfg: CompareConfig) -> dict:
    from stackllama_cli.core.files import check_output_dir
    from stackllama_cli.models.resolve import resolve_model
    from stackllama_cli.stages.compare_output import build_result, print_table, write_outputs
    from stackllama_cli.stages.ppo.degenerate import degenerate_reason
    from stackllama_cli.models.load import check_causal_lm

    # 1. inputs checked before anything loads
    if cfg.output:
        check_output_dir(cfg.output, cfg.overwrite)
    for model in cfg.models:
        check_causal_lm(resolve_model(model))
    questions = load_questions(cfg)
    if not questions:
        raise StackLlamaError("no questions to answer")
    scorers = load_scorers(cfg)

    # 2-3. answers, model by model
    answers, kl_note = generate_answers(cfg, questions)

    # 4. scores (reward model, judge), lengths in the reward model's tokens (one unit for every model)
    flat = [(label, row) for label, rows in answers.items() for row in rows]
    pairs = [(row["question"], row["response"]) for _, row in flat]
    rewards = score_answers(scorers["reward"], pairs, cfg, "score")
    judge = score_answers(scorers["judge"], pairs, cfg, "judge") if cfg.judge else [None] * len(flat)
    rm_tokenizer = scorers["reward"][1]
    lengths = [len(ids) for ids in rm_tokenizer([r["response"] for _, r in flat], add_special_tokens=False)
               ["input_ids"]]
    for (_, row), reward, judged, length in zip(flat, rewards, judge, lengths):
        row.update(reward=reward, judge_reward=judged, length=length, degenerate=degenerate_reason(
            row["response"], row["_ids"]))

    # 5-6. statistics, table, files
    result = build_result(cfg, questions, answers, kl_note)
    print_table(result)
    if cfg.output:
        write_outputs(cfg, result, answers)
    return result
