#!/usr/bin/env bash
# The real-width GPU check: one prepared run for a lent GPU (H200 class), JSON lines out.
#
#   bash bench/gpu_check.sh [OUT_DIR]        # default: $OUT, else ./gpu_check_out
#
# What it measures (bench/real_width_gpu.py, one Python process per section, each under its own
# time limit so that one failure or OOM costs only its section): for Qwen2-7B, Llama-3-8B and
# Vicuna-13B at full depth with random weights in bfloat16, TG-LLaVA and its LLaVA-1.5 baseline:
# prefill and decode tokens/s at batch 1 and 8, TG over baseline, greedy answers at batch 1 vs 8,
# peak CUDA memory next to an estimate; one stage-1 and one stage-2 (gradient checkpointing) step
# of Qwen2-7B. Nothing is downloaded: the weights are random, the tokenizers built locally.
# Expected on one H200: about 4-6 minutes; the section limits add up to at most 9 minutes and the
# script stops starting sections after DEADLINE_S (the device budget is 15 minutes in all).
#
# Every line of stdout is a JSON object; the same lines go to OUT_DIR/gpu_check.jsonl, the
# sections' logs to OUT_DIR/<section>.log. Exit status: 0 when every section ran, 1 when one
# failed (its JSON line says which), 3 without CUDA (one line on stderr), 4 without the package.
set -uo pipefail

cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-gpu_check_out}}"
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
DEADLINE_S="${DEADLINE_S:-420}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: no CUDA device visible to torch ($PYTHON); this script only runs on a GPU machine" >&2
    exit 3
fi
if ! "$PYTHON" -c "import tg_llava_eval.modeling, tg_llava_eval.training.stages" 2>/dev/null; then
    echo "gpu_check: tg_llava_eval is not importable with $PYTHON (pip install -e . in the checkout first)" >&2
    exit 4
fi
mkdir -p "$OUT_DIR"
: > "$OUT_DIR/gpu_check.jsonl"

started=$SECONDS
failed=0
# run NAME LIMIT_S ARGS...: one section; its JSON lines to stdout and the .jsonl file.
run() {
    local name=$1 limit=$2
    shift 2
    if (( SECONDS - started > DEADLINE_S )); then
        echo "{\"section\": \"$name\", \"skipped\": \"deadline of ${DEADLINE_S}s reached\"}" | tee -a "$OUT_DIR/gpu_check.jsonl"
        return
    fi
    local t0=$SECONDS
    timeout --kill-after=10 "$limit" "$PYTHON" bench/real_width_gpu.py "$@" 2> "$OUT_DIR/$name.log" \
        | tee -a "$OUT_DIR/gpu_check.jsonl"
    local status=${PIPESTATUS[0]}
    if (( status != 0 )); then
        failed=1
        echo "{\"section\": \"$name\", \"error\": \"exit status $status (124 = over ${limit}s), see $name.log\"}" \
            | tee -a "$OUT_DIR/gpu_check.jsonl"
    fi
    echo "{\"section\": \"$name\", \"wall_s\": $((SECONDS - t0))}" | tee -a "$OUT_DIR/gpu_check.jsonl"
}

run env 30 env
run generate-qwen2-7b 120 generate --llm qwen2-7b
run generate-llama3-8b 120 generate --llm llama3-8b
run generate-vicuna-13b 150 generate --llm vicuna-13b
run train-stage1-qwen2-7b 60 train --llm qwen2-7b --stage 1
run train-stage2-qwen2-7b 60 train --llm qwen2-7b --stage 2
echo "{\"section\": \"total\", \"wall_s\": $((SECONDS - started)), \"failed\": $failed}" | tee -a "$OUT_DIR/gpu_check.jsonl"
exit $failed
