"""RLHF with PPO on accelerate + peft (TRL 1.x has no PPO trainer).

Before step 1 of a fresh run: the reward's scale and the value head's start (warmstart.py).
Each step: 1 generate -> 2 score -> 3 policy/reference log-probs and values ->
4 per-token rewards (-beta * KL, RM score on the last token) -> 5 advantages (GAE) ->
6 optimise (PPO epochs over mini-batches) -> 7 KL control -> 8 log, sample, checkpoint.
Randomness is seeded per step and what a step hands the next is checkpointed (checkpoint.LoopState),
so a resumed run repeats an uninterrupted one exactly.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from stackllama_cli.core.config import save_config, to_dict
from stackllama_cli.core.console import info, summary_table
from stackllama_cli.core.errors import StackLlamaError
from stackllama_cli.core.files import publish, write_json
from stackllama_cli.core.metrics import METRICS_FILENAME, MetricsLog, read_jsonl, truncate_jsonl
from stackllama_cli.core.rundir import finish_run, open_stage_run
from stackllama_cli.data.prompt_format import prompt_format, stop_token_ids, write_record
from stackllama_cli.dist.ranks import is_main_process
from stackllama_cli.stages.ppo import math as pm
from stackllama_cli.stages.ppo.batches import load_prompts, prompt_batch, response_length, step_seed
from stackllama_cli.stages.ppo.checkpoint import (
    VALUE_HEAD,
    LoopState,
    checkpoint_dirs,
    last_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from stackllama_cli.stages.ppo.config import PpoConfig
from stackllama_cli.stages.ppo.degenerate import degenerate_reason, reward_spike
from stackllama_cli.stages.ppo.experience import experience
from stackllama_cli.stages.ppo.policy import build_policy, save_adapter
from stackllama_cli.stages.ppo.report import log_samples, plot, print_step, summarise
from stackllama_cli.stages.ppo.reward import load_reward, score, shape_scores
from stackllama_cli.stages.ppo.update import optimise
from stackllama_cli.stages.ppo.warmstart import init_value_head, reward_stats
from stackllama_cli.stages.trackers import accelerate_trackers

SAMPLES = "samples.jsonl"


def run(cfg: PpoConfig) -> dict:
    from accelerate import Accelerator

    from stackllama_cli.models.card import write_model_card
    from stackllama_cli.models.load import load_tokenizer
    from stackllama_cli.models.resolve import make_adapter_portable, resolve_model
    from stackllama_cli.stages.common import stage_prompt_format

    run_dir = open_stage_run(cfg, last_checkpoint, inputs=(cfg.model, cfg.reward_model, cfg.data))
    out = run_dir.work
    log_with, trackers = accelerate_trackers(cfg.report_to, cfg.run_name, out, to_dict(cfg))
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), log_with=log_with, project_dir=str(out))
    if trackers:
        accelerator.init_trackers(**trackers)
    world, rank = accelerator.num_processes, accelerator.process_index
    spec = resolve_model(cfg.model)
    tokenizer = load_tokenizer(spec, padding_side="left", trust_remote_code=cfg.trust_remote_code)
    # the policy's prompts and the reward model's inputs in the format both were trained with
    models = {spec.name: spec, cfg.reward_model: resolve_model(cfg.reward_model)}
    fmt = stage_prompt_format(cfg.prompt_format, models, tokenizer, spec.name)
    cfg.prompt_format = fmt.name  # recorded in stackllama_config.json
    prompts, dropped = load_prompts(cfg, tokenizer, fmt)
    reward_model, rm_tokenizer, file_stats = load_reward(cfg, accelerator.device)
    rm_fmt = prompt_format(fmt.name, rm_tokenizer, cfg.reward_model)
    module = build_policy(cfg, spec)
    stop_ids = stop_token_ids(tokenizer, module.causal_lm().generation_config.eos_token_id, fmt)
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=cfg.learning_rate)
    kl_ctl = pm.AdaptiveKLController(cfg.init_kl_coef, cfg.kl_target, cfg.kl_horizon) if cfg.adaptive_kl \
        else pm.FixedKLController(cfg.init_kl_coef)
    start_step, state = 0, LoopState()
    if cfg.resume:
        ckpt = checkpoint_dirs(out)[-1]
        start_step, state = load_checkpoint(ckpt, module, optimizer, kl_ctl)
        info(f"Resuming from {ckpt} (step {start_step})")
        if is_main_process():
            truncate_jsonl(out / METRICS_FILENAME, start_step)
            truncate_jsonl(out / SAMPLES, start_step)
    # A quantised model sits where it was loaded (its value head too: policy.py); accelerate must not move it.
    quantized = cfg.load_in_8bit or cfg.load_in_4bit
    module = accelerator.prepare_model(module, device_placement=not quantized)
    optimizer = accelerator.prepare_optimizer(optimizer)
    inner = accelerator.unwrap_model(module)
    if cfg.resume:
        state.reward_stats = resumed_reward_stats(cfg, state, file_stats)
    else:
        state.reward_stats = reward_stats(cfg, accelerator, inner, tokenizer, prompts, reward_model, rm_tokenizer,
                                          file_stats, fmt, rm_fmt, stop_ids)
        if cfg.value_init == "reward-model":
            init_value_head(inner.value_head, reward_model, state.reward_stats, cfg.reward_baseline)
    if is_main_process():
        save_config(cfg, out)
    info(f"PPO: {len(prompts)} prompts ({dropped} over {cfg.max_prompt_length} tokens dropped), "
         f"{world} process(es) x batch {cfg.batch_size}, {cfg.steps} steps, policy {spec.name}, "
         f"reward model {cfg.reward_model}")
    metrics_log, samples_log = MetricsLog(out / METRICS_FILENAME), MetricsLog(out / SAMPLES)
    for step in range(start_step, cfg.steps):
        torch.manual_seed(step_seed(cfg, step, rank))
        questions = prompt_batch(prompts, step, cfg.batch_size, world, rank, cfg.seed)
        t0 = time.time()
        # 1. generate (adapter on, dropout off)
        inner.eval()
        rollout = inner.sample(tokenizer, questions, [fmt.prompt(q) for q in questions], response_length(cfg, step),
                               cfg.top_k, cfg.top_p, cfg.temperature, stop_ids)
        t1 = time.time()
        # 2. score
        raw = score(reward_model, rm_tokenizer, questions, rollout.texts, cfg.rm_max_length, rm_fmt)
        lengths = rollout.response_mask.sum(1)
        reasons = [degenerate_reason(t, ids[: int(n)].tolist())
                   for t, ids, n in zip(rollout.texts, rollout.response_ids, lengths)]
        degenerate = torch.tensor([r is not None for r in reasons], device=raw.device)
        scores = shape_scores(raw, cfg, state.reward_stats, degenerate, rollout.finished.to(raw.device))
        t2 = time.time()
        # 3-5. log-probs, rewards, advantages
        beta = kl_ctl.value
        exp = experience(module, inner, rollout, scores, beta, cfg)
        t3 = time.time()
        # 6. optimise
        opt = optimise(accelerator, module, optimizer, rollout, exp, cfg, step)
        t4 = time.time()
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
                  "time_experience": round(t3 - t2, 3), "time_optimise": round(t4 - t3, 3)}
        record["reward_spike"] = reward_spike(state.reward_history, record["reward_mean"],
                                              state.last_kl is not None and record["kl"] > state.last_kl)
        state.reward_history.append(record["reward_mean"])
        state.last_kl = record["kl"]
        state.degenerate_streak = state.degenerate_streak + 1 if record["degenerate_rate"] > \
            cfg.degenerate_stop_rate else 0
        record["degenerate_streak"] = state.degenerate_streak
        metrics_log.write(record)
        if cfg.report_to != "none":
            accelerator.log({k: v for k, v in record.items() if isinstance(v, (int, float))}, step=step + 1)
        print_step(record, cfg.steps)
        if cfg.log_samples and ((step + 1) % cfg.log_samples == 0 or step == 0):
            log_samples(samples_log, step + 1, questions, rollout.texts, raw.tolist(), reasons)
        stop = state.degenerate_streak >= cfg.degenerate_patience
        if is_main_process() and (stop or ((step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps)):
            save_checkpoint(out, step + 1, inner, optimizer, kl_ctl, state)
            plot(out)
        if stop:
            raise StackLlamaError(
                f"stopped at step {step + 1}: over {cfg.degenerate_stop_rate:.0%} of responses were degenerate "
                f"(repetition, code-fence runs) for {state.degenerate_streak} steps, a sign of reward hacking; "
                "lower --learning-rate, raise --init-kl-coef, or add --degenerate-penalty (checkpoint saved)")
    # final: adapter (loadable by merge/generate), value head, tokenizer, summary, plot
    accelerator.wait_for_everyone()

    def save(tmp: Path) -> None:
        from safetensors.torch import save_file

        save_adapter(inner.policy, tmp)
        save_file({k: v.detach().cpu().contiguous() for k, v in inner.value_head.state_dict().items()},
                  tmp / VALUE_HEAD)
        tokenizer.save_pretrained(tmp)
        write_record(tmp, fmt.name)
        make_adapter_portable(tmp, spec)
        write_model_card(tmp, cfg, spec, summarise(read_jsonl(out / METRICS_FILENAME), dropped, len(prompts)))

    publish(save, out)
    records = read_jsonl(out / METRICS_FILENAME) if (out / METRICS_FILENAME).is_file() else []
    summary = summarise(records, dropped, len(prompts))
    if is_main_process():
        write_json(out / "ppo_summary.json", summary)
        plot(out)
        summary_table(f"ppo -> {run_dir.final}", {k: v for k, v in summary.items() if not isinstance(v, list)})
    finish_run(run_dir)  # its barrier needs the process group, which end_training tears down
    accelerator.end_training()
    return summary


def resumed_reward_stats(cfg: PpoConfig, state: LoopState, file_stats: dict | None) -> dict | None:
    """The reward scale a resumed run goes on with: the one its checkpoint used (so it scores as before)."""
    if cfg.reward_norm == "none":
        return None
    if state.reward_stats is not None:
        return state.reward_stats
    if cfg.reward_norm == "policy":
        raise StackLlamaError("--reward-norm policy: the checkpoint holds no reward scale (its run started "
                              "without one); resume with the options the run started with")
    return {"mean": float(file_stats["mean"]), "std": float(file_stats["std"])}
