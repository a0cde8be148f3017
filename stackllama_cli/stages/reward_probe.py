"""train-rm --method probe: a linear reward head on the frozen model's features, fitted in seconds.

1 features: each distinct reward-model input (`prompts.reward_inputs`) goes through the decoder once,
  forward only, in batches of similar length; its feature is the final hidden state at the token the
  sequence classifier reads (the last one that is not padding).
2 head: pairwise logistic regression on feature differences, P(j > k) = sigmoid(w . (f_j - f_k) - margin),
  L2-regularised, full-batch L-BFGS to convergence (hundreds of passes over every pair in seconds); the
  L2 weight is chosen by 5-fold cross-validation grouped by question.
3 the head is the classifier's own `score` layer (a linear map of that same hidden state, no bias), so
  the probe is saved as an ordinary train-rm output - a SEQ_CLS adapter whose LoRA matrices are still
  zero (B = 0 at initialisation: the decoder is unchanged) and whose score head holds w. eval-rm, ppo and
  merge load it unchanged and read exactly the rewards computed here.

Last-token features rather than mean-pooled ones for that reason: a mean-pooled probe would need its
own model class everywhere a reward model is loaded.
"""

from __future__ import annotations

import math
import random
import time
from typing import Callable, Sequence

L2_GRID = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
CHUNK_PAIRS = 16  # training pairs whose features are computed between two looks at the clock


def last_token_features(model, tokenizer, rows: Sequence[Sequence[int]], batch_size: int = 8,
                        on_batch: Callable[[int], None] | None = None):
    """[len(rows), hidden] float64 tensor: the final hidden state at each row's last non-pad token, i.e. what
    the sequence classifier's `score` reads (transformers' `...ForSequenceClassification.forward`)."""
    import torch

    from stackllama_cli.data.prompts import pad_reward_ids

    decoder = getattr(model, model.base_model_prefix)
    pad_id = model.config.pad_token_id
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    out = [None] * len(rows)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        enc = pad_reward_ids(tokenizer, [list(rows[i]) for i in idx]).to(model.device)
        with torch.inference_mode():
            hidden = decoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
            positions = torch.arange(enc["input_ids"].shape[1], device=hidden.device)
            last = (positions * (enc["input_ids"] != pad_id)).argmax(-1)
            feats = hidden[torch.arange(len(idx), device=hidden.device), last].double().cpu()
        for i, f in zip(idx, feats):
            out[i] = f
        if on_batch is not None:
            on_batch(len(idx))
    return torch.stack(out) if out else torch.zeros(0, model.config.hidden_size, dtype=torch.float64)


def fit_head(diffs, margins=None, l2: float = 1e-2, max_iter: int = 500):
    """w minimising mean softplus(-(diffs @ w - margin)) + l2/2 |w|^2 (diffs: standardised feature
    differences, chosen minus rejected). Returns (w, final mean pairwise log-loss)."""
    import torch

    diffs = diffs.double()
    margins = torch.zeros(len(diffs), dtype=torch.float64) if margins is None else margins.double()
    w = torch.zeros(diffs.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.softplus(-(diffs @ w - margins)).mean() + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        loss = torch.nn.functional.softplus(-(diffs @ w - margins)).mean().item()
    return w.detach(), loss


def folds(groups: Sequence, k: int = 5, seed: int = 0) -> list[list[int]]:
    """Pair indices in `k` folds, all pairs of one group (question) in the same fold."""
    names = sorted(set(groups), key=str)
    random.Random(seed).shuffle(names)
    fold_of = {g: i % k for i, g in enumerate(names)}
    return [[i for i, g in enumerate(groups) if fold_of[g] == f] for f in range(min(k, len(names)))]


def choose_l2(diffs, margins, groups: Sequence, grid: Sequence[float] = L2_GRID, seed: int = 0) -> tuple[float, dict]:
    """The L2 weight with the lowest held-out pairwise log-loss over question-grouped folds."""
    import torch

    parts = folds(groups, seed=seed)
    if len(parts) < 2:
        return grid[len(grid) // 2], {}
    scores = {}
    for l2 in grid:
        total = 0.0
        for held in parts:
            mask = torch.ones(len(diffs), dtype=torch.bool)
            mask[held] = False
            w, _ = fit_head(diffs[mask], None if margins is None else margins[mask], l2)
            z = diffs[~mask] @ w - (0 if margins is None else margins[~mask])
            total += torch.nn.functional.softplus(-z).sum().item()
        scores[l2] = total / len(diffs)
    best = min(scores, key=scores.get)
    return best, scores


def train_probe(features, pairs_j: Sequence[int], pairs_k: Sequence[int], groups: Sequence,
                margins: Sequence[float] | None = None, seed: int = 0) -> tuple:
    """(weight over raw features [hidden], info): standardised features, L2 by grouped CV, refit on all pairs."""
    import torch

    scale = features.std(0).clamp_min(1e-6) if len(features) > 1 else torch.ones(features.shape[1])
    diffs = (features[list(pairs_j)] - features[list(pairs_k)]) / scale
    m = None if margins is None else torch.tensor(list(margins), dtype=torch.float64)
    l2, cv = choose_l2(diffs, m, groups, seed=seed)
    w, loss = fit_head(diffs, m, l2)
    train_acc = ((diffs @ w) > 0).double().mean().item() if len(diffs) else float("nan")
    return w / scale, {"l2": l2, "cv_log_loss": cv, "train_loss": loss, "train_accuracy": train_acc}


class FeatureCache:
    """Features of distinct token rows, computed on demand under a clock; counts tokens/s as it goes."""

    def __init__(self, model, tokenizer, batch_size: int, progress_advance: Callable[[int], None] | None = None):
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.index: dict[tuple, int] = {}
        self.rows: list = []
        self.tokens = 0
        self.seconds = 0.0
        self.advance = progress_advance

    def seconds_per_token(self) -> float:
        return self.seconds / self.tokens if self.tokens else math.nan

    def missing_tokens(self, rows: Sequence[Sequence[int]]) -> int:
        return sum(len(r) for r in dict.fromkeys(map(tuple, rows)) if r not in self.index)

    def add(self, rows: Sequence[Sequence[int]]) -> None:
        new = [r for r in dict.fromkeys(map(tuple, rows)) if r not in self.index]
        if not new:
            return
        start = time.perf_counter()
        feats = last_token_features(self.model, self.tokenizer, new, self.batch_size, self.advance)
        self.seconds += time.perf_counter() - start
        self.tokens += sum(len(r) for r in new)
        for r, f in zip(new, feats):
            self.index[r] = len(self.rows)
            self.rows.append(f)

    def get(self, rows: Sequence[Sequence[int]]) -> list[int]:
        return [self.index[tuple(r)] for r in rows]

    def matrix(self):
        import torch

        return torch.stack(self.rows) if self.rows else torch.zeros(0)


def run_probe(cfg, clock, model, tokenizer, train_ids: dict, train_pairs, eval_pairs, fmt=None):
    """Features of the training pairs (in a seeded random order, as many as --max-minutes allows) and of the
    evaluation pairs, the fitted head, and the classifier carrying it.
    Returns (SEQ_CLS peft model, statistics rewards, (eval rewards j, eval rewards k), fit info)."""
    import torch
    from peft import get_peft_model

    from stackllama_cli.core.console import info, progress, warn
    from stackllama_cli.core.errors import StackLlamaError
    from stackllama_cli.data.prompt_format import RECIPE
    from stackllama_cli.stages.budget import size_after_training
    from stackllama_cli.stages.common import lora_config
    from stackllama_cli.stages.reward import SAVE_SECONDS, tokenize_pairs

    if not isinstance(getattr(model, "score", None), torch.nn.Linear):
        raise StackLlamaError(f"--method probe needs a classifier with a linear `score` head; "
                              f"{type(model).__name__} has none (use --method lora)")
    start = time.perf_counter()
    chosen, rejected = train_ids["chosen_ids"], train_ids["rejected_ids"]
    order = list(range(len(chosen)))
    random.Random(cfg.seed).shuffle(order)
    ev = tokenize_pairs(eval_pairs, tokenizer, cfg.max_length, True, fmt=fmt or RECIPE)[0] \
        if eval_pairs is not None else None
    ev_j, ev_k = (ev["chosen_ids"], ev["rejected_ids"]) if ev else ([], [])
    n_eval = len(ev_j)
    total = len(set(map(tuple, chosen + rejected + ev_j + ev_k)))
    used: list[int] = []
    with progress() as bar:
        task = bar.add_task("probe features", total=total, extra="")
        cache = FeatureCache(model, tokenizer, cfg.batch_size, lambda k: bar.advance(task, k))
        for c in range(0, len(order), CHUNK_PAIRS):
            chunk = order[c : c + CHUNK_PAIRS]
            rows = [chosen[i] for i in chunk] + [rejected[i] for i in chunk]
            if clock.limited and used:
                rate, left = cache.seconds_per_token(), clock.left() - SAVE_SECONDS
                if used == order[:CHUNK_PAIRS] and n_eval:  # first look at the speed: size the evaluation
                    per_pair = rate * cache.missing_tokens(ev_j + ev_k) / n_eval
                    n_eval = size_after_training(left, per_pair, n_eval, 0)[0]
                if left - rate * (cache.missing_tokens(ev_j[:n_eval] + ev_k[:n_eval]) + cache.missing_tokens(rows)) < 0:
                    break
            cache.add(rows)
            used += chunk
        if n_eval < len(ev_j) or len(used) < len(order):
            warn(f"--max-minutes {cfg.max_minutes:g}: probe features for {len(used)} of {len(order)} training pairs "
                 f"and {n_eval} of {len(ev_j)} evaluation pairs")
        cache.add(ev_j[:n_eval] + ev_k[:n_eval])
    features_seconds = time.perf_counter() - start

    used.sort()
    feats = cache.matrix()
    j_idx, k_idx = cache.get([chosen[i] for i in used]), cache.get([rejected[i] for i in used])
    groups = list(train_pairs["qid"]) if "qid" in train_pairs.column_names else list(train_pairs["question"])
    margins = [train_ids["margin"][i] for i in used] if "margin" in train_ids else None
    w, fit = train_probe(feats, j_idx, k_idx, [groups[i] for i in used], margins, seed=cfg.seed)
    rewards = (feats @ w).tolist()
    n_stats = min(cfg.stats_pairs, len(used))
    stats = [rewards[i] for i in j_idx[:n_stats] + k_idx[:n_stats]]
    evaluation = ([rewards[i] for i in cache.get(ev_j[:n_eval])], [rewards[i] for i in cache.get(ev_k[:n_eval])])
    info(f"probe: features of {len(cache.rows)} texts in {features_seconds:.0f} s "
         f"({cache.tokens / max(cache.seconds, 1e-9):.0f} tokens/s), L2 {fit['l2']:g} by grouped 5-fold CV, "
         f"training accuracy {fit['train_accuracy']:.3f}")

    with torch.no_grad():
        model.score.weight.copy_(w.to(model.score.weight.dtype).view(1, -1))
    # LoRA B matrices start at zero: the adapter leaves the decoder as it is and carries the score head
    peft_model = get_peft_model(model, lora_config(cfg, "SEQ_CLS", model)).eval()
    fit.update(pairs=len(used), seconds=time.perf_counter() - start, features_seconds=features_seconds,
               texts=len(cache.rows))
    return peft_model, stats, evaluation, fit
