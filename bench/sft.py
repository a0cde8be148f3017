"""SFT throughput on SmolLM2-135M: `stackllama sft` vs a hand-written TRL SFTTrainer script, same work.

    python bench/sft.py [--steps 6] [--batch-size 4] [--seq-length 256]

Both use the beer dump's finetune texts, LoRA r=16/alpha=32/dropout=0.05 on all linear
layers, bf16 off, bfd packing, the same steps and batch. Also prints the measured share
of non-padding tokens for each packing mode.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BEER, require_dumps, stackllama  # noqa: E402

PLAIN_TRL = textwrap.dedent('''
    import sys, time, datasets, pyarrow.parquet as pq
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer
    model_dir, data_file, out, steps, batch, seq = sys.argv[1:7]
    t = pq.read_table(data_file).to_pydict()
    texts = list(dict.fromkeys(f"Question: {q}\\n\\nAnswer: {a}" for q, a in zip(t["question"], t["response_j"])))
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    args = SFTConfig(output_dir=out, max_steps=int(steps), per_device_train_batch_size=int(batch),
                     max_length=int(seq), packing=True, bf16=False, use_cpu=True, report_to=[], logging_steps=1,
                     save_strategy="no", learning_rate=1e-4, disable_tqdm=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=datasets.Dataset.from_dict({"text": texts}),
                         processing_class=tok, peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05,
                         target_modules="all-linear", task_type="CAUSAL_LM"))
    start = time.time()
    trainer.train()
    seconds = time.time() - start
    tokens = max(h.get("num_tokens", 0) for h in trainer.state.log_history)
    print(f"RESULT {tokens} {seconds}")
''')


def main() -> None:
    require_dumps()
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-length", type=int, default=256)
    a = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        stackllama("prepare-data", BEER, "--output", tmp / "data")
        common = ["--model", "smollm2-135m", "--data", tmp / "data", "--max-steps", a.steps, "--batch-size",
                  a.batch_size, "--seq-length", a.seq_length, "--eval-samples", "0", "--logging-steps", "1",
                  "--save-steps", "1000", "--json"]
        proc, _, _ = stackllama("sft", *common, "--output", tmp / "ours")
        ours = json.loads(proc.stdout)
        from stackllama_cli.models.resolve import resolve_model

        model_dir = resolve_model("smollm2-135m").path
        data_file = tmp / "data" / "data" / "finetune-00000-of-00001.parquet"
        out = subprocess.run([sys.executable, "-c", PLAIN_TRL, model_dir, str(data_file), str(tmp / "plain"),
                              str(a.steps), str(a.batch_size), str(a.seq_length)], capture_output=True, text=True)
        line = [x for x in out.stdout.splitlines() if x.startswith("RESULT")]
        if not line:
            sys.exit(out.stderr[-3000:])
        tokens, seconds = map(float, line[0].split()[1:])
        print(f"SmolLM2-135M, LoRA r16, fp32 CPU, {a.steps} steps x batch {a.batch_size} x {a.seq_length} tokens")
        print(f"stackllama sft:      {ours['tokens']:.0f} tokens in {ours['seconds']:.1f} s = "
              f"{ours['tokens'] / ours['seconds']:.0f} tokens/s")
        print(f"plain TRL script:    {tokens:.0f} tokens in {seconds:.1f} s = {tokens / seconds:.0f} tokens/s")
        for mode in ("bfd", "wrapped", "none"):
            proc, _, _ = stackllama("sft", *common, "--packing", mode, "--output", tmp / mode, "--max-steps", 1)
            print(f"packing {mode:8s} non-padding share of tokens: {json.loads(proc.stdout)['non_padding_fraction']:.3f}")


if __name__ == "__main__":
    main()
