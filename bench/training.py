"""Training throughput of both stages, TG-LLaVA vs LLaVA-1.5, on the tiny config (prints JSON).

What is measured: ``run_stage`` (the real recipe: dataset, collator, processor, HF ``Trainer``)
for ``pretrain`` (projector + TG modules trained, LLM frozen) and ``finetune`` (LLM trained too),
on the synthetic dataset, ``--steps`` optimiser steps of ``--batch`` samples, for ``tiny`` and
``tiny-baseline`` (same sizes, TG switches off). Throughput = input token positions per batch (text +
image tokens, TG adds the TG-DP latents to each image; padding included, it is computed) per second of ``train_runtime``, and
samples per second. Without DeepSpeed (one CPU process); fp32; no gradient checkpointing.

Absolute numbers on a shared CPU mean little, so the result that matters is the ratio
``tg_over_baseline`` from one run (same machine, same moment). Each configuration runs
``--repeats`` times and the best run counts (the least disturbed by other processes).

Usage::

    python bench/training.py [--steps 40] [--batch 4] [--repeats 3] [--threads 1]

Output::

    {"benchmark": "training", "device": "cpu", "threads": 1, "steps": 20, "batch": 4,
     "tokens_per_second": {"pretrain": {"tiny": ..., "tiny-baseline": ...}, "finetune": {...}},
     "samples_per_second": {...}, "tg_over_baseline": {"pretrain": {"tokens": r, "samples": r}, ...}}
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shutil
import tempfile
from pathlib import Path

import torch
from bench_common import keep_stdout_for_json, stdout_to_stderr  # noqa: E402 - bench/ is the script folder

from tg_llava_eval.checkpoints.creating import create_checkpoint
from tg_llava_eval.demo.synthetic.dataset import generate_synthetic_dataset
from tg_llava_eval.modeling import TGLlavaForConditionalGeneration
from tg_llava_eval.training.checkpoints import save_stage1_adapters
from tg_llava_eval.training.trainer import StageRun, run_stage

logger = logging.getLogger("bench.training")
VARIANTS = ("tiny", "tiny-baseline")
STAGES = ("pretrain", "finetune")


def measure(stage: str, variant: str, checkpoint: Path, data, workdir: Path, steps: int, batch: int) -> dict:
    """One training run; returns tokens/s and samples/s over its ``train_runtime``."""
    output = workdir / f"{variant}-{stage}"
    shutil.rmtree(output, ignore_errors=True)
    with stdout_to_stderr():  # the Trainer prints its log dicts (``--disable_tqdm True``)
        report = run_stage(StageRun(
            stage=stage, variant=variant, model_path=checkpoint, stage1_dir=checkpoint if stage == "finetune" else None,
            data_path=data.stage1_json if stage == "pretrain" else data.stage2_json, image_dir=data.image_dir,
            output_dir=output, use_deepspeed=False,
            training_flags=("--max_steps", str(steps), "--per_device_train_batch_size", str(batch),
                            "--gradient_accumulation_steps", "1", "--bf16", "False", "--gradient_checkpointing", "False",
                            "--save_strategy", "no", "--disable_tqdm", "True", "--include_num_input_tokens_seen", "True",
                            "--dataloader_num_workers", "0"),
        ))
    runtime = report["metrics"]["train_runtime"]
    tokens = max(entry.get("num_input_tokens_seen", 0) for entry in report["log_history"])
    return {"tokens_per_second": tokens / runtime, "samples_per_second": steps * batch / runtime}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 = stable on a shared CPU)")
    args = parser.parse_args()
    keep_stdout_for_json()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        rows = args.steps * args.batch
        data = generate_synthetic_dataset(workdir / "data", seed=0, n_train_stage1=rows, n_train_stage2=rows,
                                          n_test=1, image_size=56)
        checkpoints = {}
        for variant in VARIANTS:
            checkpoints[variant] = create_checkpoint(variant, workdir / variant)
            save_stage1_adapters(TGLlavaForConditionalGeneration.from_pretrained(checkpoints[variant]), checkpoints[variant])
        tokens: dict = {stage: {} for stage in STAGES}
        samples: dict = {stage: {} for stage in STAGES}
        for stage in STAGES:
            for variant in VARIANTS:
                runs = [measure(stage, variant, checkpoints[variant], data, workdir, args.steps, args.batch)
                        for _ in range(args.repeats)]
                tokens[stage][variant] = round(max(r["tokens_per_second"] for r in runs), 1)
                samples[stage][variant] = round(max(r["samples_per_second"] for r in runs), 2)
    ratios = {
        stage: {"tokens": round(tokens[stage]["tiny"] / tokens[stage]["tiny-baseline"], 3),
                "samples": round(samples[stage]["tiny"] / samples[stage]["tiny-baseline"], 3)}
        for stage in STAGES
    }
    print(json.dumps({
        "benchmark": "training", "device": "cpu", "machine": platform.processor() or platform.machine(),
        "threads": args.threads, "steps": args.steps, "batch": args.batch, "repeats": args.repeats,
        "tokens_per_second": tokens, "samples_per_second": samples, "tg_over_baseline": ratios,
    }))


if __name__ == "__main__":
    main()
