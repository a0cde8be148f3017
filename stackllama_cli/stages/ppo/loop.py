"""RLHF with PPO on accelerate + peft (TRL 1.x has no PPO trainer).

Each step: 1 generate -> 2 score -> 3 policy/reference log-probs and values ->
4 per-token rewards (-beta * KL, RM score on the last token) -> 5 advantages (GAE) ->
6 optimise (PPO epochs over mini-batches) -> 7 KL control -> 8 log, sample, checkpoint.
Randomness is seeded per step, so a resumed run repeats an uninterrupted one exactly.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from stackllama_cli.core.config import save_config, to_dict
from stackllama_cli.core.console import console, info, summary_table
from stackllama_cli.core.errors import StackLlamaError
from stackllama_cli.core.files import prepare_output_dir, publish, write_json
from stackllama_cli.core.metrics import METRICS_FILENAME, MetricsLog, plot_curves, read_jsonl, truncate_jsonl
from stackllama_cli.data.prompts import format_prompt
from stackllama_cli.dist.ranks import is_main_process
from stackllama_cli.stages.ppo import math as pm
from stackllama_cli.stages.ppo.batches import load_prompts, prompt_batch, response_length, step_seed
from stackllama_cli.stages.ppo.checkpoint import VALUE_HEAD, checkpoint_dirs, load_checkpoint, save_checkpoint
from stackllama_cli.stages.ppo.config import PpoConfig
from stackllama_cli.stages.ppo.degenerate import degenerate_reason, reward_spike
from stackllama_cli.stages.ppo.experience import experience
from stackllama_cli.stages.ppo.policy import build_policy
from stackllama_cli.stages.ppo.reward import load_reward, score, shape_scores
from stackllama_cli.stages.ppo.rollout import generate
from stackllama_cli.stages.ppo.update import optimise
from stackllama_cli.stages.trackers import accelerate_trackers

SAMPLES = "samples.jsonl"


def run(cfg: PpoConfig) -> dict:
    from accelerate import Accelerator

    from stackllama_cli.models.card import write_model_card
    from stackllama_cli.models.load import load_tokenizer
    from stackllama_cli.models.resolve import make_adapter_portable, resolve_model
    

    out = prepare_output_dir_ppo(cfg)
    log_with, trackers = accelerate_trackers(cfg.report_to, cfg.run_name, out, to_dict(cfg))
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), log_with=log_with, project_dir=str(out))
    if trackers:
        accelerator.init_trackers(**trackers)
    world, rank = accelerator.num_processes, accelerator.process_index
    spec = resolve_model(cfg.model)
    tokenizer = load_tokenizer(spec, padding_side="left", trust_remote_code=cfg.trust_remote_code)
    prompts, dropped = load_prompts(cfg, tokenizer)
    reward_model, rm_tokenizer, reward_stats = load_reward(cfg, accelerator.device)
    module = build_policy(cfg, spec)
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=cfg.learning_rate)
    kl_ctl = pm.AdaptiveKLController(cfg.init_kl_coef, cfg.kl_target, cfg.kl_horizon) if cfg.adaptive_kl \
        else pm.FixedKLController(cfg.init_kl_coef)
    start_step = 0
    if cfg.resume:
        ckpt = checkpoint_dirs(out)[-1]
        start_step = load_checkpoint(ckpt, module, optimizer, kl_ctl)
        info(f"Resuming from {ckpt} (step {start_step})")
        if is_main_process():
            truncate_jsonl(out / METRICS_FILENAME, start_step)
            truncate_jsonl(out / SAMPLES, start_step)
    quantized = cfg.load_in_8bit or cfg.load_in_4bit
    module = accelerator.prepare_model(module, device_placement=not quantized)
    optimizer = accelerator.prepare_optimizer(optimizer)
    inner = accelerator.unwrap_model(module)
    if is_main_process():
        save_config(cfg, out)
    info(f"PPO: {len(prompts)} prompts ({dropped} over {cfg.max_prompt_length} tokens dropped), "
         f"{world} process(es) x batch {cfg.batch_size}, {cfg.steps} steps, policy {spec.name}, "
         f"reward model {cfg.reward_model}")
    metrics_log, samples_log = MetricsLog(out / METRICS_FILENAME), MetricsLog(out / SAMPLES)
    metrics_path = out / METRICS_FILENAME
    history = [r.get("reward_mean") for r in read_jsonl(metrics_path)] if metrics_path.is_file() else []
    degenerate_streak, last_kl = 0, None
    for step in range(start_step, cfg.steps):
        torch.manual_seed(step_seed(cfg, step, rank))
        questions = prompt_batch(prompts, step, cfg.batch_size, world, rank, cfg.seed)
        t0 = time.time()
        # 1. generate (adapter on, dropout off)
        inner.eval()
        rollout = generate(inner.policy, tokenizer, questions, [format_prompt(q) for q in questions],
                           response_length(cfg, step), cfg.top_k, cfg.top_p, cfg.temperature)
        t1 = time.time()
        # 2. score
        raw = score(reward_model, rm_tokenizer, questions, rollout.texts, cfg.rm_max_length)
        lengths = rollout.response_mask.sum(1)
        reasons = [degenerate_reason(t, ids[: int(n)].tolist())
                   for t, ids, n in zip(rollout.texts, rollout.response_ids, lengths)]
        degenerate = torch.tensor([r is not None for r in reasons], device=raw.device)
        scores = shape_scores(raw, cfg, reward_stats, degenerate)
        t2 = time.time()
        # 3-5. log-probs, rewards, advantages
        beta = kl_ctl.value
        exp = experience(module, inner, rollout, scores, beta, cfg)
        # 6. optimise
        opt = optimise(accelerator, module, optimizer, rollout, exp, cfg, step)
        t3 = time.time()
        # 7. KL control on the true mean KL (k1 summed over real tokens), over all processes' samples
        mask = rollout.response_mask
        seq_k1 = pm.masked_sum(exp["logp"] - exp["ref_logp"], mask, dim=1)
        seq_k3 = pm.masked_sum(pm.kl_estimate(exp["logp"], exp["ref_logp"], "k3"), mask, dim=1)
        g = accelerator.gather_for_metrics(torch.stack([raw, scores, seq_k1, seq_k3, lengths,
                                                        rollout.finished.float(), degenerate.float(),
                                                        rollout.query_mask.sum(1).float()], dim=1))
        raw_all, scores_all, k1_all, k3_all, len_all, eos_all, deg_all, prompt_all = g.T
        kl_ctl.update(float(k1_all.mean()), n_steps=int(g.shape[0]))
        # 8. log, samples, checkpoint
        record = {"step": step + 1, "reward_mean": float(raw_all.mean()), "reward_std": float(raw_all.std()) if
                  len(raw_all) > 1 else 0.0, "score_mean": float(scores_all.mean()), "kl": float(k1_all.mean()),
                  "kl_k3": float(k3_all.mean()), "negative_kl_share": float((k1_all < 0).float().mean()),
                  "beta": beta, "beta_next": kl_ctl.value,
                  "entropy": float(accelerator.reduce(exp["entropy"], "mean")),
                  "response_length": float(len_all.mean()), "prompt_length": float(prompt_all.mean()),
                  "eos_rate": float(eos_all.mean()),
                  "degenerate_rate": float(deg_all.mean()), **opt, "samples": int(g.shape[0]),
                  "time_generate": round(t1 - t0, 3), "time_score": round(t2 - t1, 3),
                  "time_optimise": round(t3 - t2, 3)}
        record["reward_spike"] = reward_spike([h for h in history if h is not None], record["reward_mean"],
                                              last_kl is not None and record["kl"] > last_kl)
        history.append(record["reward_mean"])
        last_kl = record["kl"]
        metrics_log.write(record)
        if cfg.report_to != "none":
            accelerator.log({k: v for k, v in record.items() if isinstance(v, (int, float))}, step=step + 1)
        print_step(record, cfg.steps)
        if cfg.log_samples and (step + 1) % cfg.log_samples == 0 or step == start_step:
            log_samples(samples_log, step + 1, questions, rollout.texts, raw.tolist(), reasons)
        if (step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps and is_main_process():
            save_checkpoint(out, step + 1, inner, optimizer, kl_ctl)
            plot(out)
        degenerate_streak = degenerate_streak + 1 if record["degenerate_rate"] > cfg.degenerate_stop_rate else 0
        if degenerate_streak >= cfg.degenerate_patience:
            if is_main_process():
                save_checkpoint(out, step + 1, inner, optimizer, kl_ctl)
            raise StackLlamaError(
                f"stopped at step {step + 1}: over {cfg.degenerate_stop_rate:.0%} of responses were degenerate "
                f"(repetition, code-fence runs) for {degenerate_streak} steps, a sign of reward hacking; lower "
                "--learning-rate, raise --init-kl-coef, or add --degenerate-penalty (checkpoint saved)")
    # final: adapter (loadable by merge/generate), value head, tokenizer, summary, plot
    accelerator.wait_for_everyone()

    def save(tmp: Path) -> None:
        from safetensors.torch import save_file

        inner.policy.save_pretrained(tmp, safe_serialization=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in inner.value_head.state_dict().items()},
                  tmp / VALUE_HEAD)
        tokenizer.save_pretrained(tmp)
        make_adapter_portable(tmp, spec)
        write_model_card(tmp, cfg, spec, summarise(read_jsonl(out / METRICS_FILENAME), dropped, len(prompts)))

    publish(save, out)
    accelerator.end_training()
    records = read_jsonl(out / METRICS_FILENAME) if (out / METRICS_FILENAME).is_file() else []
    summary = summarise(records, dropped, len(prompts))
    if is_main_process():
        write_json(out / "ppo_summary.json", summary)
        plot(out)
        summary_table(f"ppo -> {out}", {k: v for k, v in summary.items() if not isinstance(v, list)})
    return summary


def prepare_output_dir_ppo(cfg: PpoConfig) -> Path:
    out = Path(cfg.output)
    if cfg.resume and not checkpoint_dirs(out):
        raise StackLlamaError(f"nothing to resume: {out} has no PPO checkpoint; drop --resume to start afresh")
    if cfg.resume:
        return out
    return prepare_output_dir(out, resume=False, overwrite=cfg.overwrite, last_checkpoint=lambda o: None)


def summarise(records: list[dict], dropped: int, prompts: int) -> dict:
    def mean(key, part):
        values = [r[key] for r in part if r.get(key) is not None]
        return sum(values) / len(values) if values else None

    k = max(1, len(records) // 4)
    return {"steps": len(records), "prompts": prompts, "prompts_dropped_too_long": dropped,
            "reward_first_quarter": mean("reward_mean", records[:k]), "reward_last_quarter": mean("reward_mean",
                                                                                                  records[-k:]),
            "kl_last": records[-1]["kl"] if records else None, "beta_last": records[-1]["beta_next"] if records
            else None, "degenerate_rate_mean": mean("degenerate_rate", records),
            "negative_kl_share_mean": mean("negative_kl_share", records),
            "seconds_per_step": mean("time_generate", records) and sum(
                mean(t, records) for t in ("time_generate", "time_score", "time_optimise")),
            "skipped_minibatches": sum(r.get("skipped_minibatches", 0) for r in records)}


def print_step(r: dict, total: int) -> None:
    info(f"step {r['step']}/{total}  reward {r['reward_mean']:+.3f}±{r['reward_std']:.2f}  kl {r['kl']:+.3f} "
         f"(k3 {r['kl_k3']:.3f})  beta {r['beta']:.3f}  len {r['response_length']:.0f}  "
         f"deg {r['degenerate_rate']:.0%}  clip {r['clipfrac']:.2f}  "
         f"[dim]gen {r['time_generate']:.1f}s score {r['time_score']:.1f}s opt {r['time_optimise']:.1f}s[/]")


def log_samples(log: MetricsLog, step: int, questions, responses, rewards, reasons, n: int = 3) -> None:
    if not is_main_process():
        return
    from rich.table import Table

    table = Table(title=f"samples at step {step}", show_lines=True)
    for name in ("question", "response", "reward"):
        table.add_column(name, overflow="fold")
    for q, r, w, why in list(zip(questions, responses, rewards, reasons))[:n]:
        log.write({"step": step, "question": q, "response": r, "reward": w, "degenerate": why})
        table.add_row(q[:200], r[:400], f"{w:+.3f}" + (f" ({why})" if why else ""))
    console.print(table)


def plot(out: Path) -> None:
    if (out / METRICS_FILENAME).is_file():
        plot_curves(read_jsonl(out / METRICS_FILENAME), out / "ppo.png",
                    [("reward_mean", "reward"), ("kl", "KL (k1)"), ("beta", "beta")], "PPO")
