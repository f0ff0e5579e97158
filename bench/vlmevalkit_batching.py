"""Benchmark: rows/s of VLMEvalKit's inference loop at batch sizes 1, 4 and 8 through ``run.py``; prints JSON.

What runs: the repository's ``run.py`` (VLMEvalKit's runner with our presets), once per batch size, as
a subprocess on a local MCQ table in a fresh ``$LMUData`` (``--config`` with the ``tg_llava`` preset
and ``CustomMCQDataset``, ``--batch-size B``, ``--mode infer``). A two-row warm-up table is inferred
first in the same process, so first-call costs stay out of the figures. Everything VLMEvalKit does
per row — picking the rows of the shard, building each prompt, dumping images, saving partial
results every 10 rows — is inside the timed loop, as in a real evaluation.

Where the numbers come from: with ``--verbose`` the wrapper logs after each row
``TG-LLaVA timing: <dataset>: ... <model> s in the model, <loop> s since the dataset began``
(``model_wrappers/vlmevalkit_batching.py``, ``LoopStats``). The last line of the benchmark table gives

* ``loop_s``: seconds from VLMEvalKit handing the dataset to the model until the last row was
  answered; ``rows_per_s = rows / loop_s``;
* ``model_s``: seconds inside the model calls (request preparation + the engine);
  ``model_rows_per_s = rows / model_s``;
* ``toolkit_overhead_s = loop_s - model_s``: VLMEvalKit's own per-row work plus the look-ahead's
  prompt building (each looked-ahead prompt is built twice, see the batching module).

The predictions of every batch size are compared with batch 1's (``differing_predictions``); the
script exits with status 1 if any differ, unless ``--allow-differences`` (bf16 on a GPU may flip a
few near-tied greedy tokens; the count is then the figure to report).

Usage::

    python bench/vlmevalkit_batching.py                              # tiny random checkpoint, CPU
    python bench/vlmevalkit_batching.py --rows 128 --batch-sizes 1,8
    python bench/vlmevalkit_batching.py --model-path ckpts/tg-qwen2 --dtype bfloat16 --allow-differences
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_common import REPO_ROOT, keep_stdout_for_json, tiny_datasets  # noqa: E402 - bench/ is the script folder

RUN_PY = REPO_ROOT / "run.py"
BENCH_NAME = "tg_bench_batching"
WARMUP_NAME = "tg_bench_batching_warmup"
MODEL = "tg_llava"
#: The wrapper's per-row DEBUG line (``LoopStats.describe``).
TIMING_LINE = re.compile(
    r"TG-LLaVA timing: (?P<dataset>\S+): (?P<asked>\d+) rows asked, (?P<batches>\d+) batches, "
    r"(?P<generated>\d+) rows generated, (?P<dropped>\d+) answers dropped; (?P<model_s>[\d.]+) s in the model, "
    r"(?P<loop_s>[\d.]+) s since the dataset began"
)


def build_parser() -> argparse.ArgumentParser:
    """Command-line options (all have defaults)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-path", default=None, help="checkpoint (default: a fresh tiny random one)")
    parser.add_argument("--variant", default="tiny", help="variant created when --model-path is not given")
    parser.add_argument("--rows", type=int, default=96, help="rows of the MCQ table (a multiple of --per-image)")
    parser.add_argument("--per-image", type=int, default=4, help="questions per image (MMBench-like reuse)")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--batch-sizes", default="1,4,8", help="comma-separated; the first is the reference")
    parser.add_argument("--dtype", default=None, help="the preset's dtype keyword (default: the checkpoint's)")
    parser.add_argument("--allow-differences", action="store_true", help="report, do not fail on, differing predictions")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per run.py run")
    return parser


def create_random_checkpoint(variant: str, directory: Path) -> str:
    """A random-init checkpoint of ``variant`` (seed 0).

    Saving it loads DeepSpeed (transformers' ``save_pretrained``), whose log lines would land on
    stdout, which carries this script's JSON: ``main`` calls ``keep_stdout_for_json`` first.
    """
    from tg_llava_eval.checkpoints.creating import create_checkpoint

    return str(create_checkpoint(variant, directory, seed=0))


def run_once(batch_size: int, config: Path, model_path: str, args: argparse.Namespace, work: Path, env: dict) -> dict:
    """One ``run.py`` run at ``batch_size``; its timing figures and predictions.

    Raises:
        RuntimeError: run.py failed or logged no timing line for the benchmark table.
    """
    command = [sys.executable, str(RUN_PY), "--config", str(config), "--model-path", model_path,
               "--batch-size", str(batch_size), "--max-tokens", str(args.max_new_tokens), "--mode", "infer",
               "--work-dir", str(work), "--verbose"]
    done = subprocess.run(command, cwd=work.parent, env=env, capture_output=True, text=True, timeout=args.timeout)
    log = done.stdout + done.stderr
    lines = [m for m in TIMING_LINE.finditer(log) if m["dataset"] == BENCH_NAME]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"run.py at batch size {batch_size} failed (exit {done.returncode}):\n{log[-4000:]}")
    last = lines[-1]
    from vlmeval.smp import load

    predictions = load(str(work / MODEL / f"{MODEL}_{BENCH_NAME}.xlsx"))
    return {
        "loop_s": float(last["loop_s"]),
        "model_s": float(last["model_s"]),
        "batches": int(last["batches"]),
        "rows": int(last["asked"]),
        "predictions": dict(zip(map(int, predictions["index"]), map(str, predictions["prediction"]))),
    }


def main(argv=None) -> int:
    """Write the tables, run ``run.py`` per batch size, print the JSON; exit 1 on differing predictions."""
    args = build_parser().parse_args(argv)
    keep_stdout_for_json()
    if args.rows % args.per_image:
        raise SystemExit(f"--rows ({args.rows}) must be a multiple of --per-image ({args.per_image})")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    tiny = tiny_datasets()
    with tempfile.TemporaryDirectory(prefix="tg_batching_bench_") as tmp:
        tmp = Path(tmp)
        lmu = tmp / "LMUData"
        lmu.mkdir()
        tiny.write_mcq(lmu, BENCH_NAME, n_images=args.rows // args.per_image, questions_per_image=args.per_image)
        tiny.write_mcq(lmu, WARMUP_NAME, n_images=2, questions_per_image=1)
        model_path = args.model_path
        if model_path is None:  # a random tiny checkpoint: the figure is about plumbing and batching, not quality
            model_path = create_random_checkpoint(args.variant, tmp / args.variant)
        entry = {} if args.dtype is None else {"dtype": args.dtype}
        config = tiny.write_config(tmp / "bench.json", {MODEL: entry},
                                   {WARMUP_NAME: "CustomMCQDataset", BENCH_NAME: "CustomMCQDataset"})
        env = {k: v for k, v in os.environ.items() if k not in ("MMEVAL_ROOT", "WORLD_SIZE", "RANK")}
        env.update(LMUData=str(lmu), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        env.setdefault("OMP_NUM_THREADS", "1")
        runs = {b: run_once(b, config, model_path, args, tmp / f"work_b{b}", env) for b in batch_sizes}

    base = runs[batch_sizes[0]]
    differing = {b: sum(run["predictions"][i] != base["predictions"][i] for i in base["predictions"]) for b, run in runs.items()}
    report = {
        "benchmark": "vlmevalkit_batching",
        "toolkit": "ms-vlmeval",
        "checkpoint": args.model_path or f"{args.variant} (random init)",
        "dtype": args.dtype or "checkpoint's",
        "omp_num_threads": env["OMP_NUM_THREADS"],
        "cpu_count": os.cpu_count(),
        "rows": base["rows"],
        "questions_per_image": args.per_image,
        "max_new_tokens": args.max_new_tokens,
        "batches": {str(b): r["batches"] for b, r in runs.items()},
        "loop_s": {str(b): round(r["loop_s"], 3) for b, r in runs.items()},
        "model_s": {str(b): round(r["model_s"], 3) for b, r in runs.items()},
        "toolkit_overhead_s": {str(b): round(r["loop_s"] - r["model_s"], 3) for b, r in runs.items()},
        "rows_per_s": {str(b): round(r["rows"] / r["loop_s"], 2) for b, r in runs.items()},
        "model_rows_per_s": {str(b): round(r["rows"] / r["model_s"], 2) for b, r in runs.items()},
        f"speedup_vs_batch_{batch_sizes[0]}": {str(b): round(base["loop_s"] / r["loop_s"], 2) for b, r in runs.items()},
        "differing_predictions": {str(b): n for b, n in differing.items()},
        "identical_predictions": not any(differing.values()),
    }
    print(json.dumps(report, indent=2))
    return 0 if report["identical_predictions"] or args.allow_differences else 1


if __name__ == "__main__":
    sys.exit(main())
