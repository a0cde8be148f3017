"""Shared fixtures: a tiny LLaMA built locally (no download), the real dumps, CLI runners."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "stackexchange"
BEER = SHARED_DATA / "beer.stackexchange.com-Posts.xml"
COFFEE = SHARED_DATA / "coffee.stackexchange.com-Posts.xml"

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# A few hundred words of varied English and code so a byte-level BPE learns useful merges.
TOKENIZER_CORPUS = """
Question: What is the best temperature to serve a stout?
Answer: Stouts taste best slightly below cellar temperature, around 10 to 13 degrees Celsius.
Question: How do I descale my espresso machine?
Answer: Run a solution of citric acid through the boiler, then flush it with clean water twice.
Use `grep -r pattern .` to search, or ```python\nprint("hello")\n``` in a code block.
The quick brown fox jumps over the lazy dog. Coffee beans are roasted seeds of the Coffea plant.
Lager yeast ferments at cooler temperatures than ale yeast, which gives a cleaner flavour.
Hops add bitterness, aroma and act as a preservative. Grind size changes extraction time.
A pour-over needs a medium-fine grind; a French press needs a coarse grind and four minutes.
"""


def build_tiny_tokenizer(directory: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([TOKENIZER_CORPUS] * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.save_pretrained(directory)
    return fast


def build_tiny_llama(directory: Path, seed: int = 0) -> Path:
    """A 2-layer LLaMA with hidden size 32 and a byte-level BPE tokenizer, saved as safetensors."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer(directory)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=None, tie_word_embeddings=True)
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(directory, safe_serialization=True)
    return directory


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def beer_posts() -> Path:
    if not BEER.is_file():
        pytest.skip(f"real StackExchange dump not found at {BEER} (needs ../shared beside the checkout)")
    return BEER


@pytest.fixture(scope="session")
def coffee_posts() -> Path:
    if not COFFEE.is_file():
        pytest.skip(f"real StackExchange dump not found at {COFFEE} (needs ../shared beside the checkout)")
    return COFFEE


class CliResult:
    def __init__(self, exit_code: int, stdout: str, stderr: str):
        self.exit_code, self.stdout, self.stderr = exit_code, stdout, stderr

    def __repr__(self) -> str:
        return f"CliResult(exit_code={self.exit_code}, stderr={self.stderr[-2000:]!r})"


@pytest.fixture
def run_cli(capfd):
    """Run `stackllama ARGS...` in this process (fast); returns exit code, stdout, stderr."""
    from stackllama_cli.cli import main

    def run(*args: str) -> CliResult:
        code = 0
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capfd.readouterr()
        return CliResult(code, out, err)

    return run


def run_ok(*args) -> None:
    """Run `stackllama ARGS...` in this process; it must exit with 0 (for module fixtures: run_cli serves one test)."""
    from stackllama_cli.cli import main

    with pytest.raises(SystemExit) as done:
        main([str(a) for a in args])
    assert done.value.code in (0, None), args


def run_cli_subprocess(*args: str, input: str | None = None, env: dict | None = None,
                       timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `python -m stackllama_cli ARGS...` as a real process (exit codes, stdout purity)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "stackllama_cli", *map(str, args)], input=input,
                          capture_output=True, text=True, env=full_env, timeout=timeout, cwd=REPO)


@pytest.fixture(scope="session")
def sample_data_dir(tmp_path_factory) -> Path:
    """prepare-data output for the bundled sample dump (28 questions, 89 pairs)."""
    from stackllama_cli.data.prepare import PrepareConfig, run

    out = tmp_path_factory.mktemp("sample") / "data"
    run(PrepareConfig(output=str(out)))
    return out


@pytest.fixture(scope="session")
def tiny_rm(tiny_model_dir, sample_data_dir, tmp_path_factory) -> Path:
    """A reward model (LoRA adapter) trained 2 steps on the sample's pairs."""
    from stackllama_cli.stages.reward import RewardConfig, run

    out = tmp_path_factory.mktemp("tiny-rm") / "rm"
    run(RewardConfig(model=str(tiny_model_dir), data=str(sample_data_dir), output=str(out), max_steps=2,
                     max_length=256, eval_pairs=0, stats_pairs=8))
    return out


@pytest.fixture(scope="session")
def random_lora_adapter(tiny_model_dir, tmp_path_factory) -> Path:
    """A causal-LM LoRA adapter with random (non-zero) B matrices: a model that visibly differs from the base."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("random-lora") / "adapter"
    torch.manual_seed(1)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM",
                                      init_lora_weights=False))
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out


def records(path: Path) -> list[dict]:
    """Every line of a JSONL file (metrics.jsonl, samples.jsonl) as a dict."""
    import json

    return [json.loads(line) for line in path.read_text().splitlines()]


def load_safetensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))
