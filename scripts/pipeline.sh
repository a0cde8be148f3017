#!/usr/bin/env bash
# The StackLLaMA pipeline as individual commands: what `stackllama demo` runs, for people
# who want to run stages by hand or submit them to a cluster one by one.
#
#   scripts/pipeline.sh [DUMP] [RUN_DIR]      e.g. scripts/pipeline.sh beer.stackexchange.com.7z runs/beer
#
# Scale up by raising the step counts and adding e.g. `--gpus 8` to sft/train-rm/ppo.
set -euo pipefail
DUMP=${1:-}            # empty: the sample dump bundled with stackllama
RUN=${2:-runs/pipeline}
MODEL=${MODEL:-smollm2-135m}

stackllama prepare-data $DUMP --output "$RUN/data"
stackllama sft --model "$MODEL" --data "$RUN/data" --output "$RUN/sft" --max-steps 30 --seq-length 256
stackllama train-rm --model "$RUN/sft" --data "$RUN/data" --output "$RUN/reward" --max-steps 40 --max-length 256
stackllama eval-rm "$RUN/reward" --data "$RUN/data" --json > "$RUN/eval-rm.json"
stackllama ppo --model "$RUN/sft" --reward-model "$RUN/reward" --data "$RUN/data" --output "$RUN/ppo" \
  --steps 8 --batch-size 8 --kl-target 6
stackllama merge "$RUN/ppo" --output "$RUN/ppo-merged"
echo "What is the best way to store coffee beans?" \
  | stackllama generate "$RUN/ppo-merged" --max-new-tokens 64 \
  | stackllama eval-rm "$RUN/reward" --score
