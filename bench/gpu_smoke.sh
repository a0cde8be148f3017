#!/usr/bin/env bash
# GPU smoke test, by hand on a machine with a GPU (CI never needs it): the whole pipeline on SmolLM2-135M in
# bf16 on the bundled sample dump, then sft, ppo and generate with --load-in-8bit and --load-in-4bit, all
# on one GPU. Prints a table: stage, precision, seconds, peak GPU memory, ok or failed with the last line
# of the stage's error. Aims at under 8 minutes (most of it is each command's start-up).
#
#   bench/gpu_smoke.sh [--dry-run] [RUN_DIR]        RUN_DIR default: runs/gpu-smoke (stages use --overwrite)
#
#   --dry-run        print the commands it would run, run nothing (needs no GPU)
#   GPU=N            which GPU (default: the first of CUDA_VISIBLE_DEVICES, else 0)
#   STACKLLAMA=CMD   how to run stackllama (default: `stackllama` if on PATH, else `python3 -m stackllama_cli`)
#   STAGE_TIMEOUT=S  seconds before a stage counts as failed (default 240)
#
# Each stage's stderr is kept in RUN_DIR/logs/; peak memory is the most nvidia-smi saw in use on the GPU
# while the stage ran (every 200 ms).
set -uo pipefail

DRY_RUN=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY_RUN=1; shift; fi
if [[ "${1:-}" == -* ]]; then echo "usage: $0 [--dry-run] [RUN_DIR]" >&2; exit 2; fi
RUN=${1:-runs/gpu-smoke}
LOGS="$RUN/logs"
GPU=${GPU:-${CUDA_VISIBLE_DEVICES:-0}}
GPU=${GPU%%,*}
STAGE_TIMEOUT=${STAGE_TIMEOUT:-240}
if [[ -n "${STACKLLAMA:-}" ]]; then read -r -a SL <<< "$STACKLLAMA"
elif command -v stackllama > /dev/null; then SL=(stackllama)
else SL=(python3 -m stackllama_cli); fi

MODEL=smollm2-135m
ONE_GPU=(--gpus 1 --precision bf16)
SFT_ARGS=(--data "$RUN/data" --seq-length 256 --batch-size 8 --logging-steps 5 --overwrite "${ONE_GPU[@]}")
PPO_ARGS=(--model "$RUN/sft" --reward-model "$RUN/reward" --data "$RUN/data" --batch-size 8 --mini-batch-size 4
          --min-new-tokens 16 --max-new-tokens 48 --log-samples 0 --overwrite "${ONE_GPU[@]}")
GEN_ARGS=("$RUN/ppo-merged" --input "$RUN/questions.txt" --batch --max-new-tokens 48 --precision bf16)

ROWS=()
FAILED=0
N=0

# stage NAME PRECISION STDOUT_FILE -- ARGS...: run `stackllama ARGS` (or print it with --dry-run)
stage() {
  local name=$1 precision=$2 out=$3
  shift 4
  N=$((N + 1))
  if ((DRY_RUN)); then
    echo "stackllama $*${out:+ > $out}"
    return
  fi
  local log="$LOGS/$(printf %02d "$N")-$name-$precision.log" mem="$LOGS/.memory" poll=""
  if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i "$GPU" -lms 200 > "$mem" 2> /dev/null &
    poll=$!
  fi
  local start end rc status peak="n/a"
  start=$(date +%s.%N)
  timeout "$STAGE_TIMEOUT" "${SL[@]}" "$@" > "${out:-$log.stdout}" 2> "$log"
  rc=$?
  end=$(date +%s.%N)
  if [[ -n "$poll" ]]; then
    kill "$poll" 2> /dev/null
    wait "$poll" 2> /dev/null
    peak=$(sort -n "$mem" | tail -1)
    peak=${peak:+$peak MiB}
    peak=${peak:-n/a}
  fi
  if ((rc == 0)); then status=ok
  elif ((rc == 124)); then status="failed: timed out after ${STAGE_TIMEOUT} s"
  else status="failed: $(grep -v '^[[:space:]]*$' "$log" | tail -1 | cut -c1-160)"; fi
  ((rc == 0)) || FAILED=$((FAILED + 1))
  ROWS+=("$name|$precision|$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')|$peak|$status")
  printf '%-14s %-6s %s\n' "$name" "$precision" "$status" >&2
}

if ((DRY_RUN)); then
  echo "# GPU smoke on GPU $GPU into $RUN (dry run: nothing runs); each stage: CUDA_VISIBLE_DEVICES=$GPU, stderr to $LOGS/"
  echo "stackllama env --json > $LOGS/env.json"
  echo "# stops unless env.json says cuda_available; writes $RUN/questions.txt: 4 questions, one per line"
else
  mkdir -p "$LOGS" || exit 1
  export CUDA_VISIBLE_DEVICES=$GPU
  if ! "${SL[@]}" env --json > "$LOGS/env.json" 2> "$LOGS/env.log" \
     || ! grep -q '"cuda_available": true' "$LOGS/env.json"; then
    echo "error: no CUDA GPU visible to torch (see $LOGS/env.json, $LOGS/env.log); --dry-run shows the commands" >&2
    exit 1
  fi
  printf '%s\n' "How do I store coffee beans?" "What temperature should a stout be served at?" \
    "Why does my espresso taste sour?" "How long should a lager ferment?" > "$RUN/questions.txt"
  echo "GPU smoke on GPU $GPU into $RUN ($(grep -o '"name": "[^"]*"' "$LOGS/env.json" | head -1 | cut -d'"' -f4))" >&2
fi
T0=$(date +%s)

# the whole pipeline in bf16
stage prepare-data - "" -- prepare-data --output "$RUN/data" --overwrite
stage sft bf16 "" -- sft --model "$MODEL" --output "$RUN/sft" --max-steps 20 "${SFT_ARGS[@]}"
stage train-rm bf16 "" -- train-rm --model "$RUN/sft" --data "$RUN/data" --output "$RUN/reward" --max-steps 20 \
  --max-length 256 --truncate --batch-size 8 --logging-steps 5 --overwrite "${ONE_GPU[@]}"
stage eval-rm bf16 "$RUN/eval-rm.json" -- eval-rm "$RUN/reward" --data "$RUN/data" --json "${ONE_GPU[@]}"
stage ppo bf16 "" -- ppo --output "$RUN/ppo" --steps 4 "${PPO_ARGS[@]}"
stage merge fp32 "" -- merge "$RUN/ppo" --output "$RUN/ppo-merged" --overwrite
stage generate bf16 "$RUN/answers.jsonl" -- generate "${GEN_ARGS[@]}"
# the quantised paths (bitsandbytes)
for bits in 8 4; do
  stage sft "${bits}-bit" "" -- sft --model "$MODEL" --output "$RUN/sft-${bits}bit" --max-steps 10 "${SFT_ARGS[@]}" \
    "--load-in-${bits}bit"
  stage ppo "${bits}-bit" "" -- ppo --output "$RUN/ppo-${bits}bit" --steps 2 "${PPO_ARGS[@]}" "--load-in-${bits}bit"
  stage generate "${bits}-bit" "$RUN/answers-${bits}bit.jsonl" -- generate "${GEN_ARGS[@]}" "--load-in-${bits}bit"
done

((DRY_RUN)) && exit 0
TOTAL=$(($(date +%s) - T0))
echo
printf '%-14s %-9s %9s %12s  %s\n' stage precision seconds "peak GPU" result
for row in "${ROWS[@]}"; do
  IFS='|' read -r name precision seconds peak status <<< "$row"
  printf '%-14s %-9s %9s %12s  %s\n' "$name" "$precision" "$seconds" "$peak" "$status"
done
echo "total ${TOTAL} s$( ((TOTAL > 480)) && echo ' (over the 8-minute aim)'); ${FAILED} failed; logs in $LOGS/"
((FAILED == 0))
