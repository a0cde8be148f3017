"""The pipeline on five architectures (tests/tiny_models.py): Llama-3, Qwen2.5, Mistral, Gemma-2 and Phi-3,
each with its chat template and generation_config, through sft -> train-rm -> eval-rm -> ppo -> merge ->
generate in the chat prompt format, on CPU in seconds. Each stage's promise is checked per architecture."""

import io
import json
import math

import pytest
import torch

from tests.conftest import load_safetensors, run_ok
from tests.tiny_models import ARCHITECTURES, FAMILIES, build_tiny_model

QUESTIONS = ["What is the best temperature to serve a stout?", "How do I descale my espresso machine?"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models compute less than two threads spend keeping in step: one thread is faster, idle or busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def lora_tensors(directory) -> dict:
    return {k: v for k, v in load_safetensors(directory / "adapter_model.safetensors").items() if "lora_" in k}


@pytest.fixture(scope="module", params=ARCHITECTURES)
def run(request, sample_data_dir, tmp_path_factory):
    """One architecture through the whole pipeline in --prompt-format chat (given once, to sft only)."""
    from stackllama_cli.models.merge import merge
    from stackllama_cli.stages.eval_rm import evaluate
    from stackllama_cli.stages.generate import SamplingConfig, run_batch

    arch = request.param
    root = tmp_path_factory.mktemp(arch)
    base = build_tiny_model(arch, root / "base")
    data = sample_data_dir
    run_ok("sft", "--model", base, "--data", data, "--output", root / "sft", "--prompt-format", "chat",
           "--max-steps", "2", "--batch-size", "2", "--seq-length", "96", "--eval-samples", "2", "--learning-rate",
           "5e-3", "--warmup-steps", "0", "--logging-steps", "1")
    run_ok("train-rm", "--model", root / "sft", "--data", data, "--output", root / "rm", "--max-steps", "2",
           "--batch-size", "2", "--max-length", "128", "--truncate", "--eval-pairs", "2", "--stats-pairs", "2",
           "--learning-rate", "5e-3", "--warmup-steps", "0", "--logging-steps", "1", "--attn-implementation", "eager")
    merged_rm = merge(str(root / "rm"), str(root / "rm-merged"))
    evaluation = evaluate(str(root / "rm-merged"), str(data), limit=3, batch_size=3, max_length=96)
    run_ok("ppo", "--model", root / "sft", "--reward-model", root / "rm", "--data", data, "--output", root / "ppo",
           "--steps", "2", "--batch-size", "2", "--mini-batch-size", "2", "--ppo-epochs", "1", "--min-new-tokens", "3",
           "--max-new-tokens", "6", "--learning-rate", "1e-2", "--log-samples", "0", "--save-every", "1",
           "--max-prompt-length", "256")
    merged = merge(str(root / "ppo"), str(root / "merged"))
    out = io.StringIO()
    run_batch(str(root / "merged"), [{"question": q} for q in QUESTIONS], SamplingConfig(max_new_tokens=5, seed=1),
              batch_size=2, out=out)
    return dict(arch=arch, root=root, base=base, evaluation=evaluation, merged=merged, merged_rm=merged_rm,
                answers=[json.loads(line) for line in out.getvalue().splitlines()])


def config_of(directory) -> dict:
    return json.loads((directory / "stackllama_config.json").read_text())["config"]


def test_every_stage_ran_in_the_chat_format_it_inherited(run):
    root = run["root"]
    for stage in ("sft", "rm", "ppo"):
        assert json.loads((root / stage / "prompt_format.json").read_text()) == {"prompt_format": "chat"}, stage
        assert config_of(root / stage)["prompt_format"] == "chat", stage
    for merged in ("merged", "rm-merged"):
        assert json.loads((root / merged / "prompt_format.json").read_text())["prompt_format"] == "chat"
    assert run["evaluation"]["prompt_format"] == "chat"  # eval-rm read the merged reward model's record
    assert config_of(root / "rm")["attn_implementation"] == "eager"


def test_sft_and_reward_model_trained(run):
    root = run["root"]
    for stage, summary in (("sft", "sft_summary.json"), ("rm", "reward_summary.json")):
        record = json.loads((root / stage / summary).read_text())
        assert record["steps"] == 2 and math.isfinite(record["train_loss"]), (stage, record)
        lora = lora_tensors(root / stage)
        b = [v for k, v in lora.items() if "lora_B" in k]
        assert b and all(v.abs().sum() > 0 for v in b), stage  # LoRA's B starts at zero: all of them moved
    heads = [k for k in load_safetensors(root / "rm" / "adapter_model.safetensors") if "score" in k]
    assert heads, "the reward adapter carries its score head"
    evaluation = run["evaluation"]
    assert evaluation["pairs"] == 3 and 0 <= evaluation["accuracy"] <= 1
    assert math.isfinite(evaluation["reward_mean"]) and math.isfinite(evaluation["mean_margin"])


def test_ppo_trained_on_policy(run):
    root = run["root"]
    rows = [json.loads(line) for line in (root / "ppo" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        for key in ("reward_mean", "kl", "entropy", "pg_loss", "vf_loss", "response_length"):
            assert math.isfinite(r[key]), (key, r)
        # one mini-batch, one epoch: the update's forward is the rollout's, so the ratio is exactly 1
        assert r["ratio"] == 1.0 and r["approx_kl"] == 0.0, r
        assert 1 <= r["response_length"] <= 6
    start = lora_tensors(root / "ppo" / "checkpoints" / "step-1" / "adapter")
    final = lora_tensors(root / "ppo")
    assert [k for k in final if torch.equal(start[k], final[k])] == []


def test_merged_models_are_base_plus_adapters(run):
    assert run["merged"]["task"] == "CAUSAL_LM" and run["merged"]["max_abs_logit_diff"] < 1e-4
    assert run["merged_rm"]["task"] == "SEQ_CLS" and run["merged_rm"]["max_abs_logit_diff"] < 1e-4


def test_generate_writes_jsonl(run):
    answers = run["answers"]
    assert [a["question"] for a in answers] == QUESTIONS
    for a in answers:
        assert isinstance(a["response"], str) and a["finish_reason"] in ("eos", "length")
        assert 0 <= a["response_tokens"] <= 5


def test_stop_tokens_are_the_models_own(run):
    """Every id the model's generation_config names as EOS ends a response, and so does the token closing the
    chat template's assistant turn."""
    from transformers import AutoTokenizer, GenerationConfig

    from stackllama_cli.data.prompt_format import ChatFormat, stop_token_ids

    tokenizer = AutoTokenizer.from_pretrained(run["base"])
    generation = GenerationConfig.from_pretrained(run["base"])
    ids = stop_token_ids(tokenizer, generation.eos_token_id, ChatFormat(tokenizer))
    eos = FAMILIES[run["arch"]]["generation"]["eos_token_id"]
    expected = {tokenizer.convert_tokens_to_ids(t) for t in ([eos] if isinstance(eos, str) else eos)}
    assert set(ids) == expected and ids[0] == tokenizer.eos_token_id


@pytest.mark.parametrize("precision,atol", [("fp32", 1e-4), ("bf16", 1e-2)])
def test_ppo_samples_the_distribution_it_scores(run, monkeypatch, precision, atol):
    """The PPO policy built on the SFT adapter samples from softmax(logits / T) of its own forward pass: the model's
    generation_config (Qwen's repetition penalty, Gemma's hybrid cache, sampling defaults) bends nothing, and
    the log-probs PPO computes are the ones the tokens were drawn with, up to the first of the stop tokens.
    In bf16 (a CPU with AMX picks it for ppo) the incremental decoding and the update's full forward round
    differently: up to ~1e-3 nats a token, where an inherited logits processor moves them by 0.1 or more."""
    from stackllama_cli.data.prompt_format import ChatFormat, stop_token_ids
    from stackllama_cli.models.load import load_tokenizer
    from stackllama_cli.models.resolve import resolve_model
    from stackllama_cli.stages.ppo.config import PpoConfig
    from stackllama_cli.stages.ppo.experience import experience
    from stackllama_cli.stages.ppo.policy import build_policy

    cfg = PpoConfig(model=str(run["root"] / "sft"), batch_size=2, mini_batch_size=2, temperature=0.8,
                    precision=precision)
    spec = resolve_model(cfg.model)
    tokenizer = load_tokenizer(spec, padding_side="left")
    module = build_policy(cfg, spec).eval()
    with torch.no_grad():  # a trained-looking PPO adapter, so the policy is not the reference
        for name, p in module.policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.2, generator=torch.Generator().manual_seed(0))
    fmt = ChatFormat(tokenizer)
    stop = stop_token_ids(tokenizer, module.causal_lm().generation_config.eos_token_id, fmt)
    captured = {}
    sample = module.policy.generate

    def spy(*args, **kwargs):
        out = sample(*args, **kwargs, output_scores=True, return_dict_in_generate=True)
        captured["scores"] = torch.stack(out.scores, dim=1)
        return out.sequences

    monkeypatch.setattr(module.policy, "generate", spy)
    torch.manual_seed(0)
    rollout = module.sample(tokenizer, QUESTIONS, [fmt.prompt(q) for q in QUESTIONS], 8, temperature=cfg.temperature,
                            eos_token_ids=stop)
    exp = experience(module, module, rollout, torch.zeros(2), beta=0.0, cfg=cfg)
    sampled = torch.log_softmax(captured["scores"].float(), -1).gather(2, rollout.response_ids.unsqueeze(-1))[..., 0]
    mask = rollout.response_mask
    assert torch.allclose(exp["logp"] * mask, sampled * mask, atol=atol), ((exp["logp"] - sampled) * mask).abs().max()
