#!/usr/bin/env bash
# The real-width GPU check: one prepared run for a lent GPU (H200 class), JSON lines out.
#
#   bash bench/gpu_check.sh [OUT_DIR]        # default: $OUT, else ./gpu_check_out
#
# What it measures (bench/real_width_gpu.py, one Python process per section, each under its own
# time limit so that one failure or OOM costs only its section), at full depth with random weights
# in bfloat16 and sdpa, nothing downloaded (random weights, tokenizers built locally), in this order:
#   1. Qwen2-7B: TG-LLaVA and its LLaVA-1.5 baseline, prefill and decode tokens/s at batch 1 and 8,
#      TG over baseline, our baseline over transformers' LlavaForConditionalGeneration at the same
#      config and weights (time, logits, answers), greedy answers at batch 1 vs 8, peak CUDA memory
#      next to an estimate;
#   2. one stage-2 step of Qwen2-7B (gradient checkpointing): loss finite, step time, peak memory;
#   3. Vicuna-13B: TG-LLaVA and baseline forward/generate at batch 1;
#   4. one stage-1 step of Qwen2-7B; 5. Llama-3-8B as in 1, without the LLaVA comparison.
# Expected on one H200: about 5 minutes. The whole run is capped at TOTAL_S (480 s, under the
# 8 minutes the device check is sized for): each section's limit is cut to what is left, and a
# section with less than MIN_SECTION_S left is skipped (its JSON line says so).
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
TOTAL_S="${TOTAL_S:-480}"
MIN_SECTION_S=20
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: no CUDA device visible to torch ($PYTHON); this script only runs on a GPU machine" >&2
    exit 3
fi
IMPORT_CHECK="import tg_llava_eval.modeling, tg_llava_eval.training.stages"
if ! "$PYTHON" -c "$IMPORT_CHECK" 2>/dev/null; then
    # Not installed (e.g. a device machine with torch and transformers but not this package, and no
    # network): import it from this checkout through setup.cfg's package_dir, as symlinks.
    site=$(mktemp -d)
    "$PYTHON" - "$site" <<'EOF_SITE'
import configparser, os, sys
from pathlib import Path

site = Path(sys.argv[1])
setup = configparser.ConfigParser()
setup.read("setup.cfg")
for line in setup["options"]["package_dir"].strip().splitlines():
    name, folder = (part.strip() for part in line.split("="))
    target = site.joinpath(*name.split("."))
    if "." in name:
        target.symlink_to(Path(folder).resolve(), target_is_directory=True)
    else:  # the top package: a real folder, so that the mapped subpackages can sit inside it
        target.mkdir()
        for child in Path(folder).iterdir():
            (target / child.name).symlink_to(child.resolve())
EOF_SITE
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! "$PYTHON" -c "$IMPORT_CHECK" 2>/dev/null; then
    echo "gpu_check: tg_llava_eval is not importable with $PYTHON (it needs torch and transformers>=5)" >&2
    exit 4
fi
mkdir -p "$OUT_DIR"
: > "$OUT_DIR/gpu_check.jsonl"

started=$SECONDS
failed=0
# run NAME LIMIT_S ARGS...: one section, under min(LIMIT_S, what is left of TOTAL_S); its JSON
# lines to stdout and the .jsonl file.
run() {
    local name=$1 limit=$2
    shift 2
    local left=$((TOTAL_S - (SECONDS - started)))
    if (( left < MIN_SECTION_S )); then
        echo "{\"section\": \"$name\", \"skipped\": \"${left}s left of TOTAL_S=${TOTAL_S}\"}" | tee -a "$OUT_DIR/gpu_check.jsonl"
        return
    fi
    (( limit > left )) && limit=$left
    local t0=$SECONDS
    timeout --kill-after=5 "$limit" "$PYTHON" bench/real_width_gpu.py "$@" 2> "$OUT_DIR/$name.log" \
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
run generate-qwen2-7b 150 generate --llm qwen2-7b --hf-llava
run train-stage2-qwen2-7b 90 train --llm qwen2-7b --stage 2
run generate-vicuna-13b 90 generate --llm vicuna-13b --batch-sizes 1 --no-batching-check
run train-stage1-qwen2-7b 60 train --llm qwen2-7b --stage 1
run generate-llama3-8b 100 generate --llm llama3-8b
echo "{\"section\": \"total\", \"wall_s\": $((SECONDS - started)), \"failed\": $failed}" | tee -a "$OUT_DIR/gpu_check.jsonl"
exit $failed
